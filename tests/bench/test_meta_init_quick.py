"""The meta-init benchmark pipeline runs end to end in its quick configuration and writes honest files."""

from __future__ import annotations

import json
import operator
from pathlib import Path

import torch

from lifelong.bench.meta_init import bayes_chunk_losses, bigram_documents, run

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def test_quick_run_writes_results_with_computed_targets(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = run(tmp_path, quick=True, quiet=True, threads=1)
    data = json.loads((tmp_path / "meta-init.json").read_text())
    assert {"config", "machine", "packages", "table", "targets", "commit"} <= set(data)
    assert len(data["targets"]) == 4
    for t in data["targets"]:
        assert set(t) >= {"name", "measured", "target", "comparison", "met"}
        # `met` is recomputed here from the measured value: it must agree with the file.
        assert t["met"] == (t["measured"] is not None and OPS[t["comparison"]](t["measured"], t["target"]))
    assert out["targets"] == data["targets"]
    md = (tmp_path / "meta-init.md").read_text()
    assert "## Targets" in md and "meta-init-loss-by-chunk.png" in md
    for plot in ("meta-init-loss-by-chunk.png", "meta-init-cost.png", "meta-init-sinusoid.png"):
        assert (tmp_path / plot).stat().st_size > 1000
    curves = data["table"]["ttt_e2e"]["curves_mean"]
    assert {"a: no update", "b: naive TTT", "c: meta-learned (TTT-E2E)"} <= set(curves)
    assert set(data["table"]["sinusoid"]["mse_mean"]) == {"maml", "fomaml", "reptile", "pretrained"}


def test_documents_follow_their_own_bigram_tables_beyond_the_window() -> None:
    docs = bigram_documents(4, 257, vocab=16, alpha=0.1, seed=0)
    full = bayes_chunk_losses(docs, 16, 0.1, 16)
    window = bayes_chunk_losses(docs, 16, 0.1, 16, window=16)
    assert full[0] == window[0]  # at the start the window holds the whole history
    assert full[-4:].mean() < window[-4:].mean() - 0.3  # later, history beyond the window matters

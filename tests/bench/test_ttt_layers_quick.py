"""The ttt-layers benchmark runs end to end in its quick configuration and writes honest files."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lifelong.bench.ttt_layers import MIXERS, build_lm, n_params, run

OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


def test_models_have_equal_parameter_counts() -> None:
    sizes = [n_params(build_lm(m, 256, 0)) for m in MIXERS]
    assert max(sizes) / min(sizes) < 1.05, sizes


def test_quick_run_writes_results_with_computed_targets(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = run(tmp_path, quick=True, quiet=True, threads=1)
    data = json.loads((tmp_path / "ttt-layers.json").read_text())
    assert {"config", "machine", "packages", "table", "targets", "commit"} <= set(data)
    assert data["targets"], "the benchmark must report its target"
    for t in data["targets"]:
        assert set(t) >= {"name", "measured", "target", "comparison", "met"}
        # `met` is recomputed here from the measured value: it must agree with the file.
        assert t["met"] == (t["measured"] is not None and OPS[t["comparison"]](t["measured"], t["target"]))
    assert out["targets"] == data["targets"]
    table = data["table"]
    assert set(table["mqar_recall"]) == set(MIXERS)
    for m in MIXERS:
        assert all(0.0 <= v <= 1.0 for v in table["mqar_recall"][m].values())
        assert len(table["text_loss_by_position"][m]) == data["config"]["text_len"]
    md = (tmp_path / "ttt-layers.md").read_text()
    assert "## Targets" in md and "softmax attention" in md
    for png in ("ttt-layers-mqar.png", "ttt-layers-loss-by-position.png", "ttt-layers-training.png"):
        assert png in md and (tmp_path / png).stat().st_size > 1000

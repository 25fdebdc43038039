"""The loop-scale benchmark runs in its quick configuration (local and Ray executors) and writes honest files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong.bench.loop_scale import EXECUTORS, run


def test_quick_run_measures_every_executor(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = run(tmp_path, quick=True, quiet=True)
    data = json.loads((tmp_path / "loop-scale.json").read_text())
    assert out["targets"] == data["targets"]
    (target,) = data["targets"]
    assert target["met"] and target["measured"] == 1.0
    table = data["table"]["executors"]
    assert list(table) == list(EXECUTORS)
    for name, row in table.items():
        for w in ("lm_rollouts", "code_checks", "tiny_tasks"):
            assert row[w]["items_per_second"] > 0, (name, w)
            assert row[w]["identical_to_serial"], (name, w)
    # One of the four candidate programs loops forever: it must time out (an error status), never pass.
    assert table["serial"]["code_checks"]["errors"] == 1
    import ray

    assert not ray.is_initialized()  # the benchmark shut its cluster down
    assert (tmp_path / "loop-scale-throughput.png").stat().st_size > 1000

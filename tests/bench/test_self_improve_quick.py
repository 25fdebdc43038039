"""The self-improve benchmark pipeline runs end to end in its quick configuration and writes honest files."""

from __future__ import annotations

import json
from pathlib import Path

from lifelong.bench.self_improve import run


def test_quick_run_writes_results_with_computed_targets(tmp_path: Path) -> None:
    out = run(tmp_path, quick=True, quiet=True)
    data = json.loads((tmp_path / "self-improve.json").read_text())
    assert len(data["targets"]) == 3
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
    for t in data["targets"]:
        assert t["met"] == ops[t["comparison"]](t["measured"], t["target"])
    assert out["targets"] == data["targets"]
    loops = data["table"]["loops"]
    assert set(loops) == {"star", "star-no-rationalization", "rest-em", "harmful-check"}
    assert loops["harmful-check"]["rounds"][-1]["harmful"] is True
    assert (tmp_path / "self-improve-rounds.png").stat().st_size > 1000

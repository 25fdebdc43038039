"""The ttt-digits benchmark pipeline runs end to end in its quick configuration and writes honest files."""

from __future__ import annotations

import json
from pathlib import Path

from lifelong.bench.ttt_digits import run


def test_quick_run_writes_results_with_computed_targets(tmp_path: Path) -> None:
    out = run(tmp_path, quick=True, quiet=True)
    data = json.loads((tmp_path / "ttt-digits.json").read_text())
    assert {"config", "machine", "packages", "table", "targets", "commit"} <= set(data)
    assert len(data["targets"]) == 3
    for t in data["targets"]:
        assert set(t) >= {"name", "measured", "target", "comparison", "met"}
        # `met` is recomputed here from the measured value: it must agree with the file.
        ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
        assert t["met"] == ops[t["comparison"]](t["measured"], t["target"])
    assert out["targets"] == data["targets"]
    md = (tmp_path / "ttt-digits.md").read_text()
    assert "## Targets" in md and "ttt-digits-severity.png" in md
    assert (tmp_path / "ttt-digits-long-stream.png").stat().st_size > 1000

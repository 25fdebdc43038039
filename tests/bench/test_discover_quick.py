"""The discover benchmark pipeline runs end to end in its quick configuration and writes honest files."""

from __future__ import annotations

import json
from pathlib import Path

from lifelong.bench.discover import run


def test_quick_run_writes_results_with_computed_targets(tmp_path: Path) -> None:
    out = run(tmp_path, quick=True, quiet=True)
    data = json.loads((tmp_path / "discover.json").read_text())
    assert {"config", "machine", "packages", "table", "targets", "commit"} <= set(data)
    assert out["targets"] == data["targets"] and len(data["targets"]) == 1
    for t in data["targets"]:
        assert t["met"] == (t["measured"] is not None and t["measured"] > t["target"])
    block = data["table"]["per_n"]["20"]
    budget = data["config"]["budget"]
    for name, row in block["methods"].items():
        assert len(row["final_per_seed"]) == len(data["config"]["seeds"]), name
        assert 0 < row["fraction_of_optimum"] <= 1.0 + 1e-12  # never better than the known optimum
        assert row["at_budget"][str(max(data["config"]["checkpoints"]))] <= row["final_mean"] + 1e-12
    assert set(block["gain_vs_best_of_n"]) == set(block["methods"]) - {"best-of-N"}
    assert budget == 384
    md = (tmp_path / "discover.md").read_text()
    assert "## Targets" in md and "discover-best-vs-budget.png" in md
    assert (tmp_path / "discover-best-vs-budget.png").stat().st_size > 1000

"""The arc benchmark runs end to end in its quick configuration and writes honest files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong.bench.arc import run


def test_quick_run_writes_results_with_computed_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFELONG_CACHE", str(tmp_path / "cache"))  # a fresh pre-training cache, not the user's
    out = run(tmp_path / "results", quick=True, quiet=True, threads=1)
    data = json.loads((tmp_path / "results" / "arc.json").read_text())
    assert {"config", "machine", "packages", "table", "targets", "commit"} <= set(data)
    assert data["config"]["arc_version"] == "arcagi" and data["config"]["evaluation_tasks"] == 6
    table = data["table"]
    assert set(table["methods"]) == {"init", "ttt-demos", "ttt-loo-aug", "ttt-loo-aug-vote"}
    assert table["errors"] == []
    assert {"ttt-demos", "ttt-loo-aug", "ttt-loo-aug-vote"} <= set(table["curves"])
    assert len(data["targets"]) == 4
    assert all({"name", "measured", "target", "comparison", "met"} <= set(t) for t in data["targets"])
    assert data["config"]["subsample_rule"].startswith("every 67th evaluation task by sorted id")
    assert data["config"]["subsample_reason"] and data["config"]["cpu_budget"]["budget"]
    assert table["job_seconds"]["jobs"] == 6 and table["job_seconds"]["wall_total"] > 0
    assert table["parameters"] > 0 and table["run_wall_minutes"] > 0
    assert {"effect_points", "ci_points", "p_value"} <= set(table["comparisons"]["init -> ttt-loo-aug-vote"])
    ops = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    for t in data["targets"]:
        assert t["met"] == ops[t["comparison"]](t["measured"], t["target"])  # computed, never typed in
    assert out["targets"] == data["targets"]
    md = (tmp_path / "results" / "arc.md").read_text()
    assert "## Targets" in md and "53%" in md and "arc-steps.png" in md
    assert "**Subsample rule:**" in md and "**Why:**" in md and "trained in this run in" in md  # pre-training time
    assert (tmp_path / "results" / "arc-steps.png").stat().st_size > 1000
    assert list((tmp_path / "cache" / "arc").glob("init-*.safetensors"))  # the init is cached as safetensors

"""The rule-drift benchmark runs end to end in its quick configuration and writes honest files; its
reader and recovery metric behave as documented."""

from __future__ import annotations

import json
from pathlib import Path

from lifelong.bench.rule_drift import Drift, Task, make_stream, read, recovery, run


def test_stream_drifts_and_noise() -> None:
    tasks, drifts = make_stream(3, steps=300, drifts=(100, 200), noise=0.1)
    assert len(drifts) == 6 and len({(d.family, d.key) for d in drifts}) == 6
    for d in drifts:
        before = [t.truth for t in tasks if t.key == d.key and t.family == d.family and t.t < d.t]
        after = [t.truth for t in tasks if t.key == d.key and t.family == d.family and d.t <= t.t]
        assert d.old != d.new and (not before or before[-1] == d.old) and (not after or after[0] == d.new)
    assert 0 < sum(t.revealed != t.truth for t in tasks) < 60
    assert make_stream(3, steps=300, drifts=(100, 200), noise=0.1) == (tasks, drifts)  # seeded


def test_reader_policies_and_exact_keys() -> None:
    ctx = "\n".join(["step 1: api /orders -> a", "step 2: api /orders -> a", "step 3: api /orders/v2 -> z",
                     "step 4: api /orders -> b"])
    assert read("api", "/orders", ctx)[0] == "a"
    assert read("api", "/orders", ctx, policy="latest")[0] == "b"
    assert read("api", "/orders/v2", ctx)[0] == "z" and read("api", "/users", ctx) == (None, ())


def test_recovery_is_censored_when_never_stable() -> None:
    ts = [Task(t, "api", "/a", "x", "x", False) for t in range(6)]
    assert recovery(ts, [0, 1, 0, 1, 1, 0], Drift(0, "api", "/a", "y", "x"), 6) == (6, False)


def test_quick_run_writes_results_with_computed_targets(tmp_path: Path) -> None:
    out = run(tmp_path, quick=True, quiet=True)
    data = json.loads((tmp_path / "rule-drift.json").read_text())
    assert {"config", "machine", "packages", "table", "targets", "commit"} <= set(data)
    s = data["table"]["summary"]
    assert {"no memory", "full history", "playbook"} <= set(s)
    assert s["playbook"]["accuracy"] > s["no memory"]["accuracy"]
    assert s["playbook"]["tokens_last50"] < s["full history"]["tokens_last50"]
    ops = {"<": lambda a, b: a < b}
    for t in data["targets"]:
        assert t["met"] == (t["measured"] is not None and ops[t["comparison"]](t["measured"], t["target"]))
    assert out["targets"] == data["targets"]
    md = (tmp_path / "rule-drift.md").read_text()
    assert "## Targets" in md and "rule-drift.png" in md and "fair" in md
    assert (tmp_path / "rule-drift.png").stat().st_size > 1000

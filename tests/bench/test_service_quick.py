"""The service benchmark runs end to end in its quick configuration (5 clients, 3 s, the service in its
own process) and writes honest files: latencies are measured, never asserted here; the lost-feedback
check is computed from the ledger file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from lifelong.bench.service import ROUTES, run  # noqa: E402

pytestmark = pytest.mark.slow  # a service process and 3 s of load


def test_quick_run_writes_results_and_loses_no_feedback(tmp_path: Path) -> None:
    out = run(tmp_path, quick=True, quiet=True)
    data = json.loads((tmp_path / "service.json").read_text())
    assert {"config", "machine", "packages", "table", "targets", "commit"} <= set(data)
    assert data["config"]["clients"] == 5 and data["config"]["seconds"] == 3.0
    summary, durability = data["table"]["summary"], data["table"]["durability"]
    for route in ROUTES:
        r = summary["routes"][route]
        assert r["requests"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"]
    assert summary["requests_per_s"] > 0 and summary["series"]
    assert durability["acknowledged"] > 0 and durability["corrections_acknowledged"] > 0
    for t in data["targets"]:
        assert t["comparison"] == "<=" and t["met"] == (t["measured"] is not None and t["measured"] <= t["target"])
    lost = next(t for t in data["targets"] if "feedback events" in t["name"])
    assert lost["measured"] == durability["lost"] == 0 and lost["met"]
    assert out["targets"] == data["targets"]
    md = (tmp_path / "service.md").read_text()
    assert "## Targets" in md and "service.png" in md and "no latency" in md
    assert (tmp_path / "service.png").stat().st_size > 1000

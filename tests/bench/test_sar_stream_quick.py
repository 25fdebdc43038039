"""The sar-stream diagnostic runs end to end in its quick configuration and its readings are consistent."""

from __future__ import annotations

import json
from pathlib import Path

from lifelong.bench.sar_stream import CountingReset, run
from lifelong.control.resets import Periodic


def test_quick_run_writes_consistent_readings(tmp_path: Path) -> None:
    out = run(tmp_path, quick=True, quiet=True)
    data = json.loads((tmp_path / "sar-stream.json").read_text())
    rows = data["table"]["variants"]
    assert rows["source-gn"]["minus_source_points"] == 0.0  # the reference against itself
    assert rows["source-gn"]["resets_per_seed"] == [0]
    # 640 images = 10 batches: a reset every 30 batches never fires, one with no reset never either.
    assert rows["sar lr=0.001, reset every 30"]["resets_per_seed"] == [0]
    assert rows["sar lr=0.001, no reset"]["resets_per_seed"] == [0]
    for row in rows.values():
        assert 0.0 <= row["kept_share"] <= 1.0 and 0.0 <= row["accuracy"] <= 1.0
    (t,) = data["targets"]
    assert t["met"] == (t["measured"] >= t["target"])
    assert out["targets"] == data["targets"]
    assert "## What it shows" in (tmp_path / "sar-stream.md").read_text()
    assert (tmp_path / "sar-stream-gap.png").stat().st_size > 1000


def test_counting_reset_records_the_batches_it_fired_at() -> None:
    policy = CountingReset(Periodic(3))
    fired = [step for step in range(1, 10) if policy.should_reset(step)]
    assert fired == policy.fired == [3, 6, 9]

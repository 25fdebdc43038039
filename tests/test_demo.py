"""The main job end to end on a short stream: triggers fire, the gate decides, the ledger records."""

from __future__ import annotations

from pathlib import Path

from lifelong.control.ledger import Ledger
from lifelong.demo import DemoConfig, run_demo


def test_quick_demo_detects_the_shift_gates_and_records(tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "demo", DemoConfig.quick(), quiet=True)
    assert summary["triggers"], "the shift to gaussian noise should fire the drift trigger"
    assert summary["triggers"][0] >= 12  # not before the shift at batch 12
    assert len(summary["promotions"]) == 1
    with Ledger.open(summary["ledger"], create=False) as ledger:
        assert ledger.verify() == []
        types = [e.type for e in ledger.log("digits/global")]
        assert types[-1] == "commit"  # the registered source model
        assert "trigger" in types and ("commit" in types[:-1] or "reject" in types)
        verdict_events = [e for e in ledger.log("digits/global") if e.verdict_id]
        verdict = ledger.verdict(verdict_events[0].verdict_id)
        assert verdict.target is not None and verdict.target.n > 50
        assert verdict.canaries and verdict.canaries[0].name == "clean-canary"
    report = Path(summary["report"]).read_text()
    assert "data:image/png;base64" in report and "clean-canary" in report
    # Adaptation helps on the shifted part of this stream.
    acc = summary["accuracy_on_shifted_segments"]
    assert acc["governed"] > acc["no_adaptation"]

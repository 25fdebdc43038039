"""The governor: guards test-time steps, refuses protected targets, gates promotions, rolls back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lifelong.control.budgets import Budget
from lifelong.control.gate import Gate, Suite
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger
from lifelong.control.resets import OnDrift, Periodic
from lifelong.control.triggers import ScheduleTrigger
from lifelong.core import Change
from lifelong.weights.scope import WeightScope


@pytest.fixture()
def ledger(tmp_path: Path) -> Ledger:
    with Ledger.open(tmp_path / "ledger.db") as led:
        yield led


def suite(n: int = 60) -> Suite:
    return Suite("target", tuple(f"i{k}" for k in range(n)), lambda system: system(n), content_hash="fixed")


def scores(correct: int, n: int = 60):  # noqa: ANN201
    return lambda n_items: [1.0] * correct + [0.0] * (n_items - correct)


def test_non_finite_step_is_dropped_scope_reset_and_nothing_committed(ledger: Ledger) -> None:
    model = torch.nn.Linear(2, 2)
    gov = Governor(ledger, "m/global")
    base = gov.register(model.state_dict())
    scope = WeightScope(model, dict(model.named_parameters()))
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.fill_(float("inf"))
    assert gov.guard(scope, "tent") is False
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k])
    (event,) = ledger.log(types=["reset"])
    assert "NaN/Inf" in event.message and event.data["reason"] == "non-finite"
    assert ledger.head("m/global").id == base.id and ledger.stats()["versions"] == 1


def test_guard_enforces_trust_region(ledger: Ledger) -> None:
    model = torch.nn.Linear(4, 1, bias=False)
    gov = Governor(ledger, "m", budget=Budget(max_distance=0.1))
    scope = WeightScope(model, dict(model.named_parameters()))
    with torch.no_grad():
        model.weight.add_(10.0)
    assert gov.guard(scope, "x")
    assert scope.distance() == pytest.approx(0.1, rel=1e-6)


def test_reset_policies_run_through_the_governor_and_are_recorded(ledger: Ledger) -> None:
    model = torch.nn.Linear(2, 2)
    gov = Governor(ledger, "m", trigger=ScheduleTrigger(3), reset=OnDrift())
    scope = WeightScope(model, dict(model.named_parameters()))
    resets = []
    for step in range(1, 7):
        with torch.no_grad():
            model.weight.add_(1.0)
        drift = gov.observe(0.5)
        resets.append(gov.after_step(scope, "tent", step, drift=drift))
    assert resets == [False, False, True, False, False, True]
    assert len(ledger.log(types=["trigger"])) == 2 and len(ledger.log(types=["reset"])) == 2
    assert gov.after_step(scope, "tent", 4, policy=Periodic(4))


def test_promotion_accepts_a_real_gain_and_rejects_noise(ledger: Ledger) -> None:
    gov = Governor(ledger, "m", gate=Gate(n_resamples=200))
    base = gov.register({"w": torch.zeros(3)})
    good = Change("weights", "session", "tent", tensors={"w": torch.ones(3)})
    r = gov.promote(good, champion=scores(30), candidate=scores(45), target=suite())
    assert r.accepted and gov.champion().id == r.version.id
    same = Change("weights", "session", "tent", tensors={"w": torch.full((3,), 2.0)})
    r2 = gov.promote(same, champion=scores(45), candidate=scores(46), target=suite())
    assert not r2.accepted and gov.champion().id == r.version.id
    assert same.base_version == r.version.id  # filled in from the live champion
    assert base.id != r.version.id


def test_changes_touching_verifiers_logs_or_eval_data_are_rejected(ledger: Ledger) -> None:
    gov = Governor(ledger, "m", gate=Gate(n_resamples=100))
    gov.register({"w": torch.zeros(1)})
    for name in ("verifier.hash", "eval/items", "logging/config", "monitor.threshold"):
        evil = Change("scaffold", "global", "agent", records={name: "rewritten"})
        r = gov.promote(evil, champion=scores(0), candidate=scores(60), target=suite())
        assert not r.accepted
        verdict = ledger.verdict(r.verdict_id)
        assert "protected targets" in verdict.reasons[0] and verdict.target is None


def test_non_finite_change_is_rejected_before_evaluation(ledger: Ledger) -> None:
    gov = Governor(ledger, "m", gate=Gate(n_resamples=100))
    base = gov.register({"w": torch.zeros(2)})
    bad = Change("weights", "session", "tent", tensors={"w": torch.tensor([1.0, float("nan")])})
    called = []
    r = gov.promote(bad, champion=lambda n: called.append(1) or [0.0] * n, candidate=scores(60), target=suite())
    assert not r.accepted and not called
    assert gov.champion().id == base.id


def test_monitor_rolls_back_a_live_regression(ledger: Ledger) -> None:
    gov = Governor(ledger, "m", gate=Gate(n_resamples=100), monitor_tolerance=0.05, monitor_window=50,
                   monitor_min_samples=30)
    base = gov.register({"w": torch.zeros(2)})
    r = gov.promote(Change("weights", "session", "x", tensors={"w": torch.ones(2)}),
                    champion=scores(30), candidate=scores(54), target=suite())
    assert r.accepted
    rolled = None
    for i in range(200):  # live accuracy 50% against a gated 90%
        rolled = gov.watch(float(i % 2)) or rolled
    assert rolled is not None and rolled.id == base.id
    assert gov.champion().id == base.id
    types = [e.type for e in ledger.log("m")]
    assert types[:2] == ["rollback", "alarm"]
    assert "regression monitor" in ledger.log("m")[0].message

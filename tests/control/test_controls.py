"""Triggers, budgets, reset policies, monitors and weight scopes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lifelong.control.budgets import Budget, parameter_distance, select_by_glob
from lifelong.control.monitors import RegressionMonitor
from lifelong.control.resets import EntropyFloor, Episodic, Never, OnDrift, Periodic, parse_reset
from lifelong.control.triggers import (
    AlwaysTrigger,
    DriftTrigger,
    NeverTrigger,
    ScheduleTrigger,
    ThresholdTrigger,
    detection_delays,
)
from lifelong.core import BudgetError
from lifelong.weights.scope import WeightScope


def shifting_stream(seed: int = 0) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    before = rng.normal(0.2, 0.05, 300)
    after = rng.normal(0.8, 0.05, 300)
    return np.concatenate([before, after]), 300


@pytest.mark.parametrize("kind, params", [("adwin", {"clock": 1}), ("page-hinkley", {"threshold": 5.0}), ("kswin", {"seed": 0})])
def test_drift_triggers_fire_after_a_shift_and_not_before(kind: str, params: dict) -> None:
    stream, change = shifting_stream()
    trigger = DriftTrigger(kind, **params)
    fired = [trigger.update(v) for v in stream]
    assert not any(fired[: change - 1]), f"{kind} false alarm at {trigger.fired_at}"
    (delay,) = detection_delays([change], trigger.fired_at, horizon=100)
    assert delay is not None and delay < 60, (kind, trigger.fired_at)


def test_unknown_drift_detector_is_named() -> None:
    with pytest.raises(ValueError, match="unknown drift detector 'ddm'"):
        DriftTrigger("ddm")


def test_simple_triggers() -> None:
    schedule = ScheduleTrigger(2)
    assert [schedule.update(0) for _ in range(4)] == [False, True, False, True]
    t = ThresholdTrigger(0.5, above=True)
    assert [t.update(v) for v in (0.1, 0.9)] == [False, True] and t.fired_at == [1]
    assert AlwaysTrigger().update(0) and not NeverTrigger().update(0)


def test_budget_glob_selects_and_fails_loudly() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Linear(2, 2))
    assert sorted(Budget(params=("1.*",)).select(model)) == ["1.bias", "1.weight"]
    assert sorted(Budget(params=("*weight",), exclude=("0.*",)).select(model)) == ["1.weight", "2.weight"]
    with pytest.raises(BudgetError, match=r"glob '\*norm\.weight' matches no parameter.*named like: 0.weight"):
        Budget(params=("*norm.weight",)).select(model)
    with pytest.raises(BudgetError, match="removes every parameter"):
        select_by_glob(dict(model.named_parameters()), ("1.*",), ("1.*",))
    with pytest.raises(BudgetError, match="lr must be > 0"):
        Budget(lr=0)


def test_budget_trust_region_projects_onto_the_ball() -> None:
    ref = {"w": torch.zeros(4)}
    cur = {"w": torch.tensor([3.0, 4.0, 0.0, 0.0])}
    before = Budget(max_distance=1.0).project(cur, ref)
    assert before == pytest.approx(5.0)
    assert parameter_distance(cur, ref) == pytest.approx(1.0)
    assert torch.allclose(cur["w"], torch.tensor([0.6, 0.8, 0.0, 0.0]))


def test_reset_policies() -> None:
    assert Episodic().should_reset(1) and not Never().should_reset(10**6, drift=True)
    assert [Periodic(2).should_reset(s) for s in (1, 2, 3, 4)] == [False, True, False, True]
    assert OnDrift().should_reset(3, drift=True) and not OnDrift().should_reset(3)
    floor = EntropyFloor(floor=0.2, momentum=0.9)
    assert not floor.should_reset(1, stat=1.0)
    # The EMA falls slowly from 1.0 towards 0: SAR's recovery fires only after a sustained collapse.
    fired = [floor.should_reset(i, stat=0.0) for i in range(2, 40)]
    assert fired.index(True) == 15  # 0.9^16 < 0.2 <= 0.9^15
    assert parse_reset("periodic:7").name == "periodic:7"
    with pytest.raises(ValueError, match="unknown reset policy"):
        parse_reset("sometimes")


def test_regression_monitor_needs_evidence_before_alarming() -> None:
    m = RegressionMonitor(baseline=0.9, tolerance=0.05, window=100, min_samples=30)
    assert not any(m.update(0.0) for _ in range(29))  # too few samples to be sure of anything
    assert m.update(0.0)
    m.reset(baseline=0.5)
    rng = np.random.default_rng(0)
    assert not any(m.update(float(rng.random() < 0.5)) for _ in range(500))


def test_weight_scope_reset_is_bit_exact_and_covers_buffers() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    scope = WeightScope(model, dict(model.named_parameters()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model(torch.randn(8, 3) * 5)  # moves the running statistics
    with torch.no_grad():
        model[0].weight.mul_(3.3)
    assert scope.distance() > 0
    change = scope.to_change("test")
    assert "0.weight" in change.tensors and "1.running_mean" in change.tensors and "0.bias" not in change.tensors
    scope.reset()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    assert scope.non_finite() == ["0.weight"]

"""Tent in a session weight scope: isolated per session, reset on leaving, promoted only through the gate."""

from __future__ import annotations

import pytest
import torch

from lifelong.control.gate import Suite
from lifelong.core.errors import DataInputError
from lifelong.system import Input

POLICY = """
[system]
name = "w"
memory = ":memory:"
ledger = "ledger.db"
[learners.tent]
type = "tent"
trigger = "{trigger}"
[learners.tent.budget]
lr = 0.05
[learners.tent.gate]
target = "{target}"
n_resamples = 200
[learners.tent.promote]
to = "{to}"
when = "manual"
"""


def _policy(trigger="always", target="moved", to="user"):
    return POLICY.format(trigger=trigger, target=target, to=to)


def _batches(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 4, generator=g) * 3 + 2 for _ in range(n)]  # shifted inputs


def _moved_suite(model):
    """A plumbing suite: item i scores 1 when the model's norm.weight[i] moved away from the base model's."""
    base = model.norm.weight.detach().clone()
    ids = tuple(str(i) for i in range(base.numel()))
    return Suite("moved", ids, lambda m: [float(abs(float(m.norm.weight.detach()[i]) - float(base[i])) > 1e-6)
                                          for i in range(base.numel())], content_hash="moved-v1")


def _flat_suite(n=8):
    return Suite("flat", tuple(map(str, range(n))), lambda m: [1.0] * n, content_hash="flat-v1")


def _norm(model):
    return model.norm.weight.detach().clone()


def test_updates_stay_in_the_session_and_are_reset_on_leaving(make_system, tiny_model):
    system = make_system(_policy(to="none"), model=tiny_model, chat=None)
    base = _norm(tiny_model)
    with system.session(user="alice") as s:
        for x in _batches():
            logits = s.predict(x)
            assert logits.shape == (16, 3)
        adapted = _norm(s.state["tent"].adapter.model)
        assert not torch.equal(adapted, base)
        with system.session(user="bob") as other:  # a concurrent session starts from the global weights
            assert torch.equal(_norm(other.state["tent"].adapter.model), base)
        assert torch.equal(_norm(tiny_model), base)  # the system's model is never touched
    assert len(s.adapted["tent"]) == 6
    resets = [e for e in system.ledger.log("w/global/weights/tent", types=["reset"])
              if e.data.get("reason") == "session end"]
    assert {e.data["session"] for e in resets} == {s.id, other.id}
    assert [e.data["user"] for e in resets if e.data["session"] == s.id] == ["alice"]
    assert torch.equal(_norm(system.model_for("alice")), base)  # nothing was promoted


def test_trigger_gates_adaptation(make_system, tiny_model):
    system = make_system(_policy(trigger="above:100", to="none"), model=tiny_model, chat=None)
    with system.session(user="alice") as s:
        for x in _batches(3):
            s.predict(x)
        assert torch.equal(_norm(s.state["tent"].adapter.model), _norm(tiny_model))
    assert len(s.routed["tent"]) == 3 and s.adapted["tent"] == []


def test_promotion_to_the_user_version_is_gated_and_credited(make_system, tiny_model):
    system = make_system(_policy(), model=tiny_model, chat=None, suites={"moved": _moved_suite(tiny_model)})
    with system.session(user="alice") as s:
        for x in _batches():
            s.predict(x)
        adapted = _norm(s.state["tent"].adapter.model)
        result = s.promote()["tent"]
    assert result.accepted and result.ref == "w/user/alice/weights/tent"
    assert torch.allclose(_norm(system.model_for("alice")), adapted)
    assert torch.equal(_norm(system.model_for("bob")), _norm(tiny_model))  # bob still gets the global version
    inputs = [e.id for e in s.events.values() if e.kind == "input"]
    why = system.explain(result.version)
    assert sorted(sig["id"] for sig in why.signals) == sorted(inputs)
    assert all(sig["content"]["shape"] == [16, 4] for sig in why.signals)  # tensors are summarised, not stored
    assert why.helped is True and why.changes[0].kind == "weights" and why.changes[0].scope == "user"
    # alice's next session starts from her promoted version
    with system.session(user="alice") as again:
        assert torch.allclose(_norm(again.state["tent"].adapter.model), adapted)


def test_a_promotion_that_shows_no_gain_is_rejected(make_system, tiny_model):
    system = make_system(_policy(target="flat"), model=tiny_model, chat=None, suites={"flat": _flat_suite()})
    with system.session(user="alice") as s:
        for x in _batches(2):
            s.predict(x)
        result = s.promote()["tent"]
    assert not result.accepted and "not significant" in result.verdict
    assert system.ledger.log("w/user/alice/weights/tent", types=["reject"])[0].change_id == result.change_id
    assert torch.equal(_norm(system.model_for("alice")), _norm(tiny_model))


def test_weight_learner_needs_a_model_tensors_and_a_suite(make_system, tiny_model):
    from lifelong.system import PolicyError

    with pytest.raises(PolicyError, match="pass model=<torch.nn.Module>"):
        make_system(_policy(to="none"), chat=None)
    with pytest.raises(PolicyError, match=r"learners.tent.gate.target: unknown suite 'moved'"):
        make_system(_policy(), model=tiny_model, chat=None)
    with pytest.raises(PolicyError, match=r"learners.tent.budget.params: .*glob '\*nrm\*'"):
        make_system(_policy(to="none").replace("lr = 0.05", 'lr = 0.05\nparams = ["*nrm*"]'), model=tiny_model)
    system = make_system(_policy(to="none"), model=tiny_model, chat=None)
    with system.session(user="alice") as s:
        s.emit(Input(content="text is not routed to tent"))
        assert s.routed["tent"] == []
        with pytest.raises(DataInputError, match="no chat backend"):
            s.chat("hello")


def test_the_trust_region_bounds_the_session_scope(make_system, tiny_model):
    system = make_system(_policy(to="none").replace("lr = 0.05", "lr = 0.5\nmax_distance = 0.01"), model=tiny_model,
                         chat=None)
    with system.session(user="alice") as s:
        for x in _batches(5):
            s.predict(x)
        scope = s.state["tent"].adapter.scope
        assert 0 < scope.distance() <= 0.01 + 1e-6


def test_periodic_reset_within_a_session_is_recorded(make_system, tiny_model):
    system = make_system(_policy(to="none") + '[learners.tent.reset]\npolicy = "periodic:3"\n', model=tiny_model,
                         chat=None)
    with system.session(user="alice") as s:
        for x in _batches(3):
            s.predict(x)
        assert s.state["tent"].adapter.scope.distance() == 0.0  # reset after the third batch
    policies = [e.data.get("policy") for e in system.ledger.log("w/global/weights/tent", types=["reset"])]
    assert "periodic:3" in policies

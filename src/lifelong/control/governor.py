"""The governor: the one place where it is decided whether a change may stick.

Learners propose, the governor decides, the ledger records. For a test-time learner working in an
``input`` or ``session`` scope, the governor watches every step (non-finite values reset the scope and
are never committed; the trust region is enforced), listens to the drift trigger, and applies the reset
policy. For a change that would reach a ``user`` or the ``global`` version, it refuses changes that
touch protected targets, runs the gate, records the verdict, and then monitors the live version,
rolling back on a regression.

>>> import os, tempfile, torch
>>> from lifelong.control.ledger import Ledger
>>> from lifelong.control.gate import Gate, Suite
>>> ledger = Ledger.open(os.path.join(tempfile.mkdtemp(), "ledger.db"))
>>> gov = Governor(ledger, "toy/global", gate=Gate(n_resamples=200))
>>> base = gov.register({"w": torch.zeros(2)}, message="base")
>>> suite = Suite("toy", tuple(map(str, range(40))), lambda sys: sys(), content_hash="v1")
>>> change = Change("weights", "session", "demo", tensors={"w": torch.ones(2)}, base_version=base.id)
>>> result = gov.promote(change, champion=lambda: [0.0] * 40, candidate=lambda: [1.0] * 40, target=suite)
>>> result.accepted, gov.champion().id == result.version.id
(True, True)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lifelong.control.budgets import Budget
from lifelong.control.gate import Gate, Suite
from lifelong.control.ledger import CommitResult, Ledger
from lifelong.control.monitors import RegressionMonitor
from lifelong.control.resets import Never, ResetPolicy
from lifelong.control.triggers import Trigger
from lifelong.core.change import Change
from lifelong.core.scopes import Scope
from lifelong.core.tensors import non_finite_names
from lifelong.core.verdict import Verdict
from lifelong.core.version import Version

if TYPE_CHECKING:
    import torch

    from lifelong.weights.scope import WeightScope

# What no learner may change: the things that judge it. A self-modifying agent once deleted its own
# hallucination detector's logs to score perfectly (Darwin Godel Machine); these globs are matched
# against every artifact name a change touches.
# Each glob also appears in a nested form, since scaffold changes name files anywhere in a tree
# ("*/log*" matches "agent/logging.py" and "agent/logs/x", not "agent/dialog").
_PROTECTED_WORDS = ("verifier*", "verifiers/*", "eval*", "evaluation/*", "ledger*", "log*", "logging/*", "monitor*")
DEFAULT_PROTECTED = _PROTECTED_WORDS + tuple(f"*/{g}" for g in _PROTECTED_WORDS)


class Governor:
    """Triggers, budget, reset policy, gate and monitor over one ledger ref.

    ``ref`` names the live version this governor guards (``"digits/global"``). ``monitor_tolerance``
    and ``monitor_window`` configure the regression monitor started after each accepted promotion.
    """

    def __init__(
        self,
        ledger: Ledger,
        ref: str,
        *,
        gate: Gate | None = None,
        budget: Budget | None = None,
        trigger: Trigger | None = None,
        reset: ResetPolicy | None = None,
        protected: Sequence[str] = DEFAULT_PROTECTED,
        monitor_tolerance: float = 0.05,
        monitor_window: int = 100,
        monitor_min_samples: int = 30,
        actor: str = "governor",
        record_steps: bool = False,
    ) -> None:
        self.ledger = ledger
        self.ref = ref
        self.gate = gate or Gate()
        self.budget = budget or Budget()
        self.trigger = trigger
        self.reset_policy: ResetPolicy = reset or Never()
        self.protected = tuple(protected)
        self.monitor_tolerance = monitor_tolerance
        self.monitor_window = monitor_window
        self.monitor_min_samples = monitor_min_samples
        self.monitor: RegressionMonitor | None = None
        self.actor = actor
        self.record_steps = record_steps
        self.steps = 0
        self.rejected_steps = 0

    # ------------------------------------------------------------------ versions
    def register(
        self, tensors: Mapping[str, torch.Tensor], *, message: str = "register", records: Mapping[str, Any] | None = None
    ) -> Version:
        """Commit the starting version of ``ref`` (the base model) if the ref is new; otherwise return
        its live version untouched."""
        if self.ref in self.ledger.refs():
            return self.ledger.head(self.ref)
        return self.ledger.commit(self.ref, tensors, records, message=message, actor=self.actor, replace=True)

    def champion(self) -> Version:
        """The live version."""
        return self.ledger.head(self.ref)

    # ------------------------------------------------------------------ test-time steps
    def observe(self, value: float, *, what: str = "signal") -> bool:
        """Feed the drift trigger; record an event when it fires."""
        if self.trigger is None:
            return False
        fired = self.trigger.update(value)
        if fired:
            self.ledger.record_event(
                "trigger",
                f"{self.trigger.name} fired on {what}={value:.4g}",
                ref=self.ref,
                actor=self.actor,
                data={"trigger": self.trigger.name, "value": value, "what": what},
            )
        return fired

    def guard(self, scope: WeightScope, learner: str) -> bool:
        """Check a scope after one adaptation step. Non-finite values reset it (the update is dropped
        and never committed); the trust region pulls parameters back. Returns False when the step was
        dropped."""
        self.steps += 1
        bad = scope.non_finite()
        if bad:
            scope.reset()
            self.rejected_steps += 1
            self.ledger.record_event(
                "reset",
                f"{learner}: update produced NaN/Inf in {bad[:3]}{'...' if len(bad) > 3 else ''}; "
                f"dropped and {scope.scope.value} scope reset",
                ref=self.ref,
                actor=self.actor,
                data={"learner": learner, "reason": "non-finite", "tensors": bad},
            )
            return False
        self.budget.project(scope.params, scope.reference)
        return True

    def guard_loss(self, scope: WeightScope, learner: str, loss: float) -> None:
        """A step whose loss is already NaN or Inf is never taken: reset the scope and record it."""
        scope.reset()
        self.rejected_steps += 1
        self.ledger.record_event(
            "reset",
            f"{learner}: loss was {loss}; update dropped and {scope.scope.value} scope reset",
            ref=self.ref,
            actor=self.actor,
            data={"learner": learner, "reason": "non-finite loss"},
        )

    def dropped(self, learner: str, reason: str, **data: Any) -> None:
        """Record updates a learner dropped on its own (e.g. per-input scopes that went non-finite)."""
        self.rejected_steps += int(data.get("count", 1))
        self.ledger.record_event(
            "reset", f"{learner}: {reason}", ref=self.ref, actor=self.actor, data={"learner": learner, **data}
        )

    def after_step(
        self,
        scope: WeightScope,
        learner: str,
        step: int,
        *,
        drift: bool = False,
        stat: float | None = None,
        policy: ResetPolicy | None = None,
    ) -> bool:
        """Apply a reset policy (the learner's own, else the governor's) after a step; returns True when
        the scope was reset. Episodic resets are the policy working as designed and are not written to
        the ledger; all others are."""
        policy = policy or self.reset_policy
        if not policy.should_reset(step, drift=drift, stat=stat):
            return False
        scope.reset()
        if not policy.episodic:
            self.ledger.record_event(
                "reset",
                f"{learner}: {policy.name} reset at step {step}",
                ref=self.ref,
                actor=self.actor,
                data={"learner": learner, "policy": policy.name, "step": step, "stat": stat},
            )
        return True

    # ------------------------------------------------------------------ promotions
    def review(self, change: Change) -> list[str]:
        """Reasons a change may not even be evaluated: protected targets, non-finite tensors."""
        problems = []
        touched = [t.split(":", 1)[1] for t in change.targets]
        hits = [name for name in touched if any(fnmatch.fnmatchcase(name, p) for p in self.protected)]
        if hits:
            problems.append(
                f"touches protected targets {hits}: verifiers, evaluation data, logs and monitors lie outside "
                "every change scope"
            )
        bad = non_finite_names(change.tensors)
        if bad:
            problems.append(f"tensors {bad} contain NaN or Inf")
        if not change.targets:
            problems.append("the change touches nothing")
        return problems

    def promote(
        self,
        change: Change,
        *,
        champion: Any,
        candidate: Any,
        target: Suite,
        canaries: Sequence[Suite] = (),
        to_scope: Scope | str = Scope.GLOBAL,
    ) -> CommitResult:
        """Gate a change against the live champion and record the verdict; on acceptance the ref moves
        and the regression monitor starts from the candidate's gated score."""
        to_scope = Scope.parse(to_scope)
        if change.base_version is None and self.ref in self.ledger.refs():
            change.base_version = self.champion().id
        problems = self.review(change)
        if problems:
            verdict = Verdict.rejected("; ".join(problems), **self.gate.thresholds)
            bad = non_finite_names(change.tensors)
            if bad:  # the record keeps the change, never its NaN/Inf payload
                change.tensors = {k: v for k, v in change.tensors.items() if k not in bad}
                change.provenance["non_finite_tensors_not_stored"] = bad
        else:
            verdict = self.gate.evaluate(champion, candidate, target, canaries)
        change.provenance.setdefault("promotion", {"to_scope": to_scope.value})
        result = self.ledger.record_change(self.ref, change, verdict, actor=self.actor)
        if result.accepted and verdict.target is not None:
            self.monitor = RegressionMonitor(
                baseline=verdict.target.candidate_mean,
                tolerance=self.monitor_tolerance,
                window=self.monitor_window,
                min_samples=self.monitor_min_samples,
            )
        return result

    # ------------------------------------------------------------------ monitoring
    def watch(self, score: float) -> Version | None:
        """Feed one live score of the current champion. On a regression alarm, record it and roll back
        to the previous version; returns the version rolled back to, else None."""
        if self.monitor is None:
            return None
        if not self.monitor.update(score):
            return None
        live = self.monitor.live_mean or 0.0
        message = (
            f"live score {live:.3f} over {len(self.monitor.scores)} items is below the gated "
            f"{self.monitor.baseline:.3f} - {self.monitor.tolerance} (upper bound {self.monitor.upper_bound():.3f})"
        )
        self.ledger.record_event("alarm", message, ref=self.ref, actor="monitor", data={"live_mean": live})
        version = self.ledger.rollback(self.ref, reason=f"regression monitor: {message}", actor="monitor")
        self.monitor = None
        return version

"""The common shape of test-time adaptation: choose parameters, a loss, some steps, a reset policy.

Every method in :mod:`lifelong.weights` is a :class:`TestTimeAdapter`: calling it on a batch returns
predictions for that batch and, on the way, takes the method's optimisation steps inside a
:class:`~lifelong.weights.scope.WeightScope` that the governor watches. The governor drops any step that
produces NaN or Inf (and resets the scope), enforces the budget's trust region, feeds the drift trigger
with the batch's mean prediction entropy, and applies the reset policy. Nothing here writes to a
user's or the global version: that takes :meth:`lifelong.control.governor.Governor.promote`.

>>> import torch, tempfile, os
>>> from lifelong.control.governor import Governor
>>> from lifelong.control.ledger import Ledger
>>> from lifelong.models.vision import DigitsCNN
>>> gov = Governor(Ledger.open(os.path.join(tempfile.mkdtemp(), "l.db")), "digits/global")
>>> source = Source(DigitsCNN(norm="batch", width=8), gov)
>>> source(torch.rand(4, 8, 8)).shape
torch.Size([4, 10])
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lifelong.control.budgets import Budget
from lifelong.control.resets import Never, ResetPolicy
from lifelong.core.change import Change, Cost
from lifelong.core.scopes import Scope
from lifelong.weights.scope import WeightScope

if TYPE_CHECKING:
    from lifelong.control.governor import Governor


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy of softmax(logits), in nats.

    >>> softmax_entropy(torch.zeros(1, 4)).item() == torch.log(torch.tensor(4.0)).item()
    True
    """
    log_p = logits.log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def configure_norm_for_adaptation(model: nn.Module) -> None:
    """Tent's configuration: train mode; BatchNorm layers normalise with the test batch's statistics
    (running statistics dropped); every other module keeps its eval behaviour."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
        elif isinstance(m, nn.Dropout):
            m.eval()


class TestTimeAdapter:
    """Base class: the source model, untouched (``Source``), and the hooks methods override.

    Subclasses set ``name``, ``default_budget`` and ``default_reset``, and implement
    :meth:`forward_and_adapt`, which returns the batch's logits and the statistic the reset policy
    watches (e.g. the adaptation loss).
    """

    __test__ = False  # not a pytest test class, despite the name
    name = "source"
    default_budget = Budget(steps=0, params=("*",))
    default_reset: type[ResetPolicy] | ResetPolicy = Never
    scope_kind = Scope.SESSION

    def __init__(
        self,
        model: nn.Module,
        governor: Governor,
        *,
        budget: Budget | None = None,
        reset: ResetPolicy | None = None,
        seed: int = 0,
        copy_model: bool = True,
    ) -> None:
        self.model = copy.deepcopy(model) if copy_model else model
        self.governor = governor
        self.budget = budget or self.default_budget
        default = self.default_reset
        self.reset_policy: ResetPolicy = reset or (default() if isinstance(default, type) else copy.deepcopy(default))
        self.generator = torch.Generator().manual_seed(seed)
        self.configure_model()
        self.params = self.collect_params()
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.params.values():
            p.requires_grad_(True)
        self.scope = WeightScope(self.model, self.params, self.scope_kind)
        self.optimizer = self.make_optimizer() if self.params and self.budget.steps > 0 else None
        self._optimizer_state = copy.deepcopy(self.optimizer.state_dict()) if self.optimizer else None
        self.steps_taken = 0
        self.batches = 0
        self.seconds = 0.0
        self.last_entropy: float | None = None
        self.last_drift = False

    # ------------------------------------------------------------------ hooks
    def configure_model(self) -> None:
        """Put the model in the mode the method adapts in (default: eval, nothing adapts)."""
        self.model.eval()

    def collect_params(self) -> dict[str, nn.Parameter]:
        """The parameters the budget allows this method to change."""
        if self.budget.steps == 0:
            return {}
        return self.budget.select(self.model)  # type: ignore[return-value]

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam at the budget's learning rate, Tent's default (subclasses follow their references)."""
        return torch.optim.Adam(self.params.values(), lr=self.budget.lr, betas=(0.9, 0.999))

    def forward_and_adapt(self, x: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        """Predict a batch (and adapt); returns logits and the statistic for the reset policy."""
        with torch.no_grad():
            return self.model(x), None

    # ------------------------------------------------------------------ the loop around every method
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Predict a batch under the governor: adapt, guard, observe, maybe reset."""
        start = time.perf_counter()
        logits, stat = self.forward_and_adapt(x)
        with torch.no_grad():
            self.last_entropy = float(softmax_entropy(logits).mean())
        drift = self.governor.observe(self.last_entropy, what=f"{self.name}.entropy")
        self.last_drift = drift
        self.batches += 1
        if self.governor.after_step(self.scope, self.name, self.batches, drift=drift, stat=stat, policy=self.reset_policy):
            self.reset_optimizer()
        self.seconds += time.perf_counter() - start
        return logits.detach()

    def step(self, loss: torch.Tensor) -> bool:
        """One optimiser step on ``loss``, then the governor's guard. Returns False if it was dropped."""
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.governor.guard_loss(self.scope, self.name, float(loss))
            self.reset_optimizer()
            return False
        loss.backward()
        if self.budget.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(self.params.values()), self.budget.max_grad_norm)
        self.optimizer.step()
        self.steps_taken += 1
        if not self.governor.guard(self.scope, self.name):
            self.reset_optimizer()
            return False
        return True

    def reset(self) -> None:
        """Back to the reference weights and a fresh optimiser."""
        self.scope.reset()
        self.reset_optimizer()

    def reset_optimizer(self) -> None:
        """Forget optimiser state (momenta), as Tent's episodic reset does."""
        if self.optimizer is not None and self._optimizer_state is not None:
            self.optimizer.load_state_dict(self._optimizer_state)

    def proposal(self, provenance: dict[str, Any] | None = None) -> Change:
        """The scope's current state as a change the governor can be asked to promote."""
        return self.scope.to_change(
            self.name,
            provenance={"method": self.name, "batches": self.batches, **(provenance or {})},
            cost=Cost(steps=self.steps_taken, seconds=self.seconds),
        )


class Source(TestTimeAdapter):
    """No adaptation: the source model in eval mode, the baseline every method must beat."""

    name = "source"

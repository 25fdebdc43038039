"""Weight scopes: the sandbox a test-time learner owns.

A scope remembers the reference values of the tensors a learner may change (its budget's parameters,
plus the module buffers such as normalisation statistics), so it can always be reset bit-exactly, and
it packages the current values as a :class:`~lifelong.core.Change` when the governor is asked to
promote them.

>>> import torch
>>> model = torch.nn.Linear(2, 1)
>>> scope = WeightScope(model, dict(model.named_parameters()))
>>> with torch.no_grad():
...     _ = model.weight.add_(1.0)
>>> scope.distance() > 0
True
>>> scope.reset(); scope.distance()
0.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lifelong.control.budgets import parameter_distance
from lifelong.core.change import Change, ChangeKind, Cost
from lifelong.core.scopes import Scope
from lifelong.core.tensors import non_finite_names


class WeightScope:
    """Reference copies of a model's adaptable tensors, with reset, distance and packaging.

    ``params`` are the tensors the learner may change; ``include_buffers`` also snapshots every buffer
    of the model (running statistics), so a reset undoes statistics updates too.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        params: Mapping[str, torch.Tensor],
        scope: Scope | str = Scope.SESSION,
        include_buffers: bool = True,
    ) -> None:
        self.model = model
        self.params = dict(params)
        self.scope = Scope.parse(scope)
        self.buffers = dict(model.named_buffers()) if include_buffers else {}
        self.reference: dict[str, torch.Tensor] = {}
        self.resets = 0
        self.rebase()

    def rebase(self) -> None:
        """Make the current values the new reference (after a promotion, or a checkout)."""
        self.reference = {n: t.detach().clone() for n, t in self._tracked().items()}

    def _tracked(self) -> dict[str, torch.Tensor]:
        out = {n: p for n, p in self.params.items()}
        out.update({n: b for n, b in self.buffers.items() if b is not None})
        return out

    def reset(self) -> None:
        """Restore every tracked tensor to its reference value, bit-exactly."""
        with torch.no_grad():
            for name, t in self._tracked().items():
                t.copy_(self.reference[name])
        self.resets += 1

    def distance(self) -> float:
        """L2 distance of the adaptable parameters from the reference."""
        return parameter_distance(self.params, self.reference)

    def non_finite(self) -> list[str]:
        """Names of tracked tensors holding NaN or Inf."""
        return non_finite_names(self._tracked())

    def current(self) -> dict[str, torch.Tensor]:
        """Detached copies of the current values of every tracked tensor."""
        return {n: t.detach().clone() for n, t in self._tracked().items()}

    def load(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Overwrite tracked tensors with given values (e.g. a version checked out from the ledger)."""
        tracked = self._tracked()
        unknown = sorted(set(tensors) - set(tracked))
        if unknown:
            raise KeyError(f"tensors {unknown[:5]} are not tracked by this scope; check the budget's globs")
        with torch.no_grad():
            for name, t in tensors.items():
                tracked[name].copy_(t)

    def to_change(
        self,
        learner: str,
        *,
        base_version: str | None = None,
        provenance: dict[str, Any] | None = None,
        cost: Cost | None = None,
        scope: Scope | str | None = None,
        only_changed: bool = True,
    ) -> Change:
        """Package the current values as a change proposal (by default only tensors that moved)."""
        values = self.current()
        if only_changed:
            values = {n: t for n, t in values.items() if not torch.equal(t, self.reference[n])}
        return Change(
            kind=ChangeKind.WEIGHTS,
            scope=scope or self.scope,
            learner=learner,
            tensors=values,
            provenance=dict(provenance or {}),
            cost=cost or Cost(),
            base_version=base_version,
        )

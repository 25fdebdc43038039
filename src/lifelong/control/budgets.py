"""Budgets: how much a learner may change. Steps, learning rate, which parameters (by glob, as
TTT-E2E's ``spec_inner`` does), gradient clipping, and a bound on the distance from the reference.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
>>> sorted(Budget(params=("1.*",)).select(model))
['1.bias', '1.weight']
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lifelong.core.errors import BudgetError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Budget:
    """What a learner may spend and touch.

    ``params`` are glob patterns over dotted parameter names (``"encoder.*"``, ``"*.norm.weight"``); each
    pattern must match at least one parameter, so a typo fails loudly instead of freezing everything.
    ``max_distance`` bounds the L2 distance of the selected parameters from the reference (a trust
    region): updates that go further are projected back onto the ball.
    """

    steps: int = 1
    lr: float = 1e-3
    params: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    max_grad_norm: float | None = None
    max_distance: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise BudgetError(f"Budget.steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise BudgetError(f"Budget.lr must be > 0, got {self.lr}")
        if isinstance(self.params, str):
            object.__setattr__(self, "params", (self.params,))
        if isinstance(self.exclude, str):
            object.__setattr__(self, "exclude", (self.exclude,))
        if self.max_distance is not None and self.max_distance < 0:
            raise BudgetError(f"Budget.max_distance must be >= 0, got {self.max_distance}")

    def select(self, model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        """The parameters this budget allows to change, by name."""
        named = dict(model.named_parameters())
        return select_by_glob(named, self.params, self.exclude)

    def project(self, current: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]) -> float:
        """Pull ``current`` back into the trust region around ``reference`` in place; return the distance
        before projection."""
        import torch

        dist = parameter_distance(current, reference)
        if self.max_distance is not None and dist > self.max_distance:
            scale = self.max_distance / dist
            with torch.no_grad():
                for name, p in current.items():
                    ref = reference[name]
                    p.copy_(ref + (p - ref) * scale)
        return dist


def select_by_glob(
    named: Mapping[str, torch.Tensor], patterns: tuple[str, ...], exclude: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Select named tensors by glob patterns; every pattern must match something.

    >>> import torch
    >>> select_by_glob({"a.w": torch.ones(1), "b.w": torch.ones(1)}, ("a.*",)).keys()
    dict_keys(['a.w'])
    """
    if not patterns:
        raise BudgetError("the budget selects no parameters: give at least one glob in Budget.params")
    chosen: dict[str, torch.Tensor] = {}
    for pattern in patterns:
        hits = [n for n in named if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            sample = ", ".join(list(named)[:8]) + (" ..." if len(named) > 8 else "")
            raise BudgetError(
                f"the budget's glob {pattern!r} matches no parameter of the model; "
                f"its parameters are named like: {sample or '(the model has no parameters)'}"
            )
        for n in hits:
            chosen[n] = named[n]
    for pattern in exclude:
        for n in [n for n in chosen if fnmatch.fnmatchcase(n, pattern)]:
            del chosen[n]
    if not chosen:
        raise BudgetError(f"Budget.exclude {exclude} removes every parameter selected by {patterns}")
    return chosen


def parameter_distance(current: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]) -> float:
    """L2 distance between two parameter sets over the names of ``current``.

    >>> import torch
    >>> parameter_distance({"w": torch.tensor([3.0, 4.0])}, {"w": torch.zeros(2)})
    5.0
    """
    total = 0.0
    for name, p in current.items():
        total += float((p.detach().double() - reference[name].detach().double()).pow(2).sum())
    return total**0.5

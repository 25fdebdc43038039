"""Changes: what a learner proposes. Nothing a learner does sticks until a change is accepted.

>>> import torch
>>> c = Change(kind="weights", scope="session", learner="tent",
...            tensors={"bn.weight": torch.ones(3)}, cost=Cost(steps=1))
>>> c.kind, c.scope.value, c.targets
(<ChangeKind.WEIGHTS: 'weights'>, 'session', ('tensor:bn.weight',))
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from lifelong.core.scopes import Scope

if TYPE_CHECKING:
    import torch


class ChangeKind(str, Enum):
    """What a change modifies: model weights, the context a model is given, or the scaffold around it."""

    WEIGHTS = "weights"
    CONTEXT = "context"
    SCAFFOLD = "scaffold"


@dataclass(frozen=True)
class Cost:
    """What producing a change cost: optimiser steps, tokens, examples and wall-clock seconds."""

    steps: int = 0
    tokens: int = 0
    examples: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """Plain-JSON form."""
        return {"steps": self.steps, "tokens": self.tokens, "examples": self.examples, "seconds": self.seconds}

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.steps + other.steps,
            self.tokens + other.tokens,
            self.examples + other.examples,
            self.seconds + other.seconds,
        )


@dataclass
class Change:
    """A proposed update.

    ``tensors`` are the new values of the tensors the change touches (not deltas, so a change applies
    bit-exactly); ``records`` are typed JSON records for context and scaffold changes (memory
    operations, prompts, configuration). ``provenance`` says which signals and episodes produced it.
    """

    kind: ChangeKind | str
    scope: Scope | str
    learner: str
    tensors: Mapping[str, torch.Tensor] = field(default_factory=dict)
    records: Mapping[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    base_version: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        try:
            self.kind = ChangeKind(self.kind)
        except ValueError:
            kinds = ", ".join(k.value for k in ChangeKind)
            raise ValueError(f"Change.kind {self.kind!r} is not one of: {kinds}") from None
        self.scope = Scope.parse(self.scope)
        if not self.learner:
            raise ValueError("Change.learner is empty; name the learner that proposed the change")

    @property
    def targets(self) -> tuple[str, ...]:
        """Everything the change would modify, as ``tensor:NAME`` and ``record:NAME`` paths."""
        return tuple(f"tensor:{n}" for n in self.tensors) + tuple(f"record:{n}" for n in self.records)

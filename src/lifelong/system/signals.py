"""Learning signals from use, as typed events.

Everything a deployed system sees that a learner could learn from arrives as one of these events:
what went in and came out (:class:`Input`, :class:`Output`), the tool calls made on the way
(:class:`ToolCall`) and how they ended (:class:`ToolOutcome`), what a person said about an answer
(:class:`Feedback`: a rating, a correction, a human edit), and what their behaviour said without words
(:class:`Implicit`: a retry, an abandoned session, a latency). Every event has an ``id``; a change a
learner proposes records the ids of the events that caused it, so the ledger can say which feedback
made which change.

A learner declares the event types it learns from (``signals = (Feedback,)``); the system routes each
event only to the learners that declared its type.

>>> fb = Feedback(type="correction", text="Invoices are due in 30 days", question="When are invoices due?")
>>> fb.kind, fb.value(), fb.id.startswith("ev-")
('feedback', 1.0, True)
>>> Feedback(type="rating", score=-1.0).value()
-1.0
>>> signal_type("tool_outcome") is ToolOutcome
True
>>> Feedback(type="rating")
Traceback (most recent call last):
...
lifelong.core.errors.DataInputError: Feedback(type='rating') needs score, a number from -1 (bad) to 1 (good)
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from lifelong.core.errors import DataInputError
from lifelong.core.hashing import sha256_hex

TEXT_LIMIT = 4000  # characters of text content kept in the ledger's copy of an event
FEEDBACK_TYPES = ("rating", "correction", "edit")
IMPLICIT_TYPES = ("retry", "abandonment", "latency")


def _new_id() -> str:
    return "ev-" + uuid.uuid4().hex[:20]


def summarize(value: Any) -> Any:
    """A JSON-safe summary of an event's payload: tensors and arrays become shape, dtype and hash;
    long text is cut to ``TEXT_LIMIT`` characters; mappings and sequences are summarised item by item.

    >>> import torch
    >>> s = summarize(torch.zeros(2, 3))
    >>> s["shape"], s["dtype"], len(s["sha256"])
    ([2, 3], 'torch.float32', 64)
    >>> summarize({"a": (1, 2.5, None)})
    {'a': [1, 2.5, None]}
    """
    if value is None or isinstance(value, bool | int | str):
        return value if not isinstance(value, str) or len(value) <= TEXT_LIMIT else value[:TEXT_LIMIT] + "..."
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): summarize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [summarize(v) for v in value]
    shape = getattr(value, "shape", None)
    if shape is not None:  # torch tensors and numpy arrays
        try:
            import numpy as np

            arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            digest = sha256_hex(np.ascontiguousarray(arr).tobytes())
        except Exception:  # an exotic array type: describe it without hashing
            digest = ""
        return {"shape": [int(s) for s in shape], "dtype": str(getattr(value, "dtype", "")), "sha256": digest}
    return repr(value)[:TEXT_LIMIT]


@dataclass(frozen=True, kw_only=True)
class Signal:
    """Fields every event carries: its ``id``, when it happened (``at``), and the ``user`` and ``session``
    it belongs to (a session fills these in when the event is emitted through it)."""

    kind: ClassVar[str] = "signal"
    id: str = field(default_factory=_new_id)
    at: float = field(default_factory=time.time)
    user: str | None = None
    session: str | None = None

    def value(self) -> float:
        """The number a learner's trigger sees for this event (1.0 unless the type says otherwise)."""
        return 1.0

    def to_dict(self) -> dict[str, Any]:
        """The ledger's JSON copy of the event (payloads summarised, see :func:`summarize`)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            out[f.name] = summarize(getattr(self, f.name))
        return out


INPUT_ROLES = ("message", "batch", "document")


@dataclass(frozen=True, kw_only=True)
class Input(Signal):
    """What the system was given. ``role`` says what it is: ``"message"`` (a chat turn), ``"batch"`` (a
    tensor batch to predict) or ``"document"`` (text to read and learn from).

    >>> Input(content="hello").kind, Input(content="a long manual", role="document").role
    ('input', 'document')
    """

    kind: ClassVar[str] = "input"
    content: Any = None
    role: str = "message"

    def __post_init__(self) -> None:
        if self.role not in INPUT_ROLES:
            raise DataInputError(f"Input.role {self.role!r} is not one of {', '.join(INPUT_ROLES)}")


@dataclass(frozen=True, kw_only=True)
class Output(Signal):
    """What the system answered. ``input_id`` names the :class:`Input` it answers; ``context_ids`` the
    memory items that were in its context (so a rating of this output can be credited to them).

    >>> Output(content="hi", input_id="ev-1", context_ids=("fb-1",)).context_ids
    ('fb-1',)
    """

    kind: ClassVar[str] = "output"
    content: Any = None
    input_id: str | None = None
    context_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ToolCall(Signal):
    """One step of a trace: a tool the system called, with its arguments and what it returned.

    >>> ToolCall(name="search", arguments={"q": "weather"}, result="sunny").name
    'search'
    """

    kind: ClassVar[str] = "tool_call"
    name: str = ""
    arguments: Mapping[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    input_id: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise DataInputError("ToolCall.name is empty; give the name of the tool that was called")


@dataclass(frozen=True, kw_only=True)
class ToolOutcome(Signal):
    """Whether a tool call achieved what it was for (a test passed, a payment went through). Its value
    for a trigger is 1.0 on success and 0.0 on failure.

    >>> ToolOutcome(tool="pytest", success=False).value()
    0.0
    """

    kind: ClassVar[str] = "tool_outcome"
    tool: str = ""
    success: bool = True
    detail: str = ""
    call_id: str | None = None

    def value(self) -> float:
        """1.0 on success, 0.0 on failure."""
        return 1.0 if self.success else 0.0


@dataclass(frozen=True, kw_only=True)
class Feedback(Signal):
    """What a person said about an answer.

    ``type`` is ``"rating"`` (``score`` from -1, bad, to 1, good), ``"correction"`` (``text`` is the right
    fact) or ``"edit"`` (``text`` is the answer as the person rewrote it). ``question`` is what was asked
    and ``target_id`` the :class:`Output` judged; a session fills both in when it can. For a trigger, a
    rating's value is its score and any other feedback's value is 1.0.
    """

    kind: ClassVar[str] = "feedback"
    type: str = "rating"
    score: float | None = None
    text: str | None = None
    question: str | None = None
    target_id: str | None = None
    comment: str = ""

    def __post_init__(self) -> None:
        if self.type not in FEEDBACK_TYPES:
            raise DataInputError(f"Feedback.type {self.type!r} is not one of {', '.join(FEEDBACK_TYPES)}")
        if self.type == "rating":
            if not isinstance(self.score, int | float) or not -1.0 <= float(self.score) <= 1.0:
                raise DataInputError(
                    "Feedback(type='rating') needs score, a number from -1 (bad) to 1 (good)"
                    + ("" if self.score is None else f"; got {self.score!r}")
                )
        elif not (self.text or "").strip():
            what = "the correct fact" if self.type == "correction" else "the edited answer"
            raise DataInputError(f"Feedback(type={self.type!r}) needs text: {what}")

    def value(self) -> float:
        """The score of a rating, else 1.0."""
        return float(self.score) if self.type == "rating" and self.score is not None else 1.0


@dataclass(frozen=True, kw_only=True)
class Implicit(Signal):
    """What behaviour said: ``"retry"`` (the person asked again), ``"abandonment"`` (they left without an
    answer they accepted) or ``"latency"`` (``amount`` seconds, e.g. until the next message). The value
    for a trigger is ``amount``.

    >>> Implicit(type="latency", amount=2.5).value()
    2.5
    """

    kind: ClassVar[str] = "implicit"
    type: str = "retry"
    amount: float = 1.0
    target_id: str | None = None

    def __post_init__(self) -> None:
        if self.type not in IMPLICIT_TYPES:
            raise DataInputError(f"Implicit.type {self.type!r} is not one of {', '.join(IMPLICIT_TYPES)}")
        if not isinstance(self.amount, int | float) or not math.isfinite(self.amount):
            raise DataInputError(f"Implicit.amount must be a finite number, got {self.amount!r}")

    def value(self) -> float:
        """The amount (1.0 for a plain retry or abandonment)."""
        return float(self.amount)


SIGNALS: dict[str, type[Signal]] = {
    cls.kind: cls for cls in (Input, Output, ToolCall, ToolOutcome, Feedback, Implicit)
}


def signal_type(name: str) -> type[Signal]:
    """The event class for a name used in configuration files (``"feedback"``, ``"input"``...)."""
    try:
        return SIGNALS[name]
    except KeyError:
        raise DataInputError(f"unknown signal type {name!r}; use one of {', '.join(SIGNALS)}") from None

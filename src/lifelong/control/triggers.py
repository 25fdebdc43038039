"""Triggers: when to adapt. A trigger watches a stream of numbers and says when something happened.

Drift detection is river's (ADWIN, Page-Hinkley, KSWIN), wrapped so that every trigger has the same
two-line interface: ``fired = trigger.update(value)``, and a record of when it fired.

>>> t = DriftTrigger("page-hinkley", threshold=5.0, min_instances=10)
>>> fired = [t.update(0.1) for _ in range(50)] + [t.update(2.0) for _ in range(20)]
>>> any(fired[:50]), any(fired[50:]), t.fired_at[0] >= 50
(False, True, True)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Trigger(Protocol):
    """Anything with ``update(value) -> bool`` and a ``name``."""

    name: str

    def update(self, value: float) -> bool: ...


@dataclass
class _History:
    count: int = 0
    fired_at: list[int] = field(default_factory=list)

    def note(self, fired: bool) -> bool:
        if fired:
            self.fired_at.append(self.count)
        self.count += 1
        return fired


_DETECTORS = {"adwin": "ADWIN", "page-hinkley": "PageHinkley", "kswin": "KSWIN"}


class DriftTrigger:
    """A river drift detector as a trigger.

    ``kind`` is ``"adwin"`` (river defaults: delta 0.002, clock 32), ``"page-hinkley"`` (min_instances
    30, delta 0.005, threshold 50; ``mode="both"`` catches rises and falls) or ``"kswin"`` (alpha
    0.005, window 100, stat 30). Extra keyword arguments go to the detector. Feed it a statistic that
    moves when the data moves: mean prediction entropy or confidence per batch, a self-supervised loss,
    an error rate when labels exist.
    """

    def __init__(self, kind: str = "adwin", **params: Any) -> None:
        if kind not in _DETECTORS:
            raise ValueError(f"unknown drift detector {kind!r}; use one of {sorted(_DETECTORS)}")
        import river.drift

        self.kind = kind
        self.params = params
        self.name = f"drift:{kind}"
        self._detector = getattr(river.drift, _DETECTORS[kind])(**params)
        self._history = _History()

    def update(self, value: float) -> bool:
        """Feed one value; True when the detector signals a change at this value."""
        self._detector.update(float(value))
        return self._history.note(bool(self._detector.drift_detected))

    @property
    def fired_at(self) -> list[int]:
        """Positions (0-based update counts) where the trigger fired."""
        return self._history.fired_at


class ScheduleTrigger:
    """Fires every ``every`` updates: the periodic baseline every detector must beat.

    >>> t = ScheduleTrigger(3)
    >>> [t.update(0) for _ in range(7)]
    [False, False, True, False, False, True, False]
    """

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError(f"ScheduleTrigger.every must be >= 1, got {every}")
        self.every = every
        self.name = f"schedule:{every}"
        self._history = _History()

    def update(self, value: float) -> bool:
        """Count one update."""
        return self._history.note((self._history.count + 1) % self.every == 0)

    @property
    def fired_at(self) -> list[int]:
        """Positions where the trigger fired."""
        return self._history.fired_at


class ThresholdTrigger:
    """Fires when a value crosses a threshold: low confidence, high loss, negative feedback.

    TTT's optional gate (adapt only when the self-supervised head's confidence is below a threshold)
    is ``ThresholdTrigger(threshold, above=False)`` on that confidence.

    >>> t = ThresholdTrigger(0.5, above=False)
    >>> t.update(0.9), t.update(0.3)
    (False, True)
    """

    def __init__(self, threshold: float, above: bool = True) -> None:
        self.threshold = threshold
        self.above = above
        self.name = f"threshold:{'>' if above else '<'}{threshold}"
        self._history = _History()

    def update(self, value: float) -> bool:
        """True when ``value`` is beyond the threshold."""
        fired = value > self.threshold if self.above else value < self.threshold
        return self._history.note(bool(fired))

    @property
    def fired_at(self) -> list[int]:
        """Positions where the trigger fired."""
        return self._history.fired_at


class AlwaysTrigger:
    """Fires on every update (adapt on everything).

    >>> AlwaysTrigger().update(0.0)
    True
    """

    name = "always"

    def __init__(self) -> None:
        self._history = _History()

    def update(self, value: float) -> bool:
        """Always True."""
        return self._history.note(True)

    @property
    def fired_at(self) -> list[int]:
        """Every position."""
        return self._history.fired_at


class NeverTrigger:
    """Never fires (never adapt).

    >>> NeverTrigger().update(1e9)
    False
    """

    name = "never"

    def __init__(self) -> None:
        self._history = _History()

    def update(self, value: float) -> bool:
        """Always False."""
        return self._history.note(False)

    @property
    def fired_at(self) -> list[int]:
        """Empty."""
        return self._history.fired_at


def detection_delays(change_points: Iterable[int], fired_at: Iterable[int], horizon: int) -> list[int | None]:
    """For each true change point, the delay until the first firing within ``horizon`` (None if missed).

    >>> detection_delays([10, 50], [3, 14, 90], horizon=20)
    [4, None]
    """
    fired = sorted(fired_at)
    out: list[int | None] = []
    for cp in change_points:
        hits = [f - cp for f in fired if cp <= f < cp + horizon]
        out.append(hits[0] if hits else None)
    return out

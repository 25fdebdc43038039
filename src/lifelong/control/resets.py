"""Reset policies: when a test-time scope goes back to its reference weights.

Most failed reproductions of test-time adaptation trace to the reset protocol (tent #7, cotta #4), so
the policy is a first-class, named object rather than a flag:

- :class:`Episodic`: reset before every input (standard TTT, episodic Tent);
- :class:`Never`: carry the state across the stream (TTT-Online, online Tent);
- :class:`Periodic`: reset every ``every`` steps (RDumb, Press et al. 2023: a baseline most continual
  methods fail to beat on long streams);
- :class:`OnDrift`: reset when a drift trigger fires;
- :class:`EntropyFloor`: reset when an exponential moving average of the adaptation loss falls below a
  floor (SAR's model recovery: EMA momentum 0.9, floor 0.2), the signature of collapse to one class.

>>> p = Periodic(every=3)
>>> [p.should_reset(step=s) for s in range(1, 7)]
[False, False, True, False, False, True]
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ResetPolicy(Protocol):
    """``should_reset`` is asked after each adaptation step (``step`` counts from 1)."""

    name: str
    episodic: bool

    def should_reset(self, step: int, *, drift: bool = False, stat: float | None = None) -> bool: ...


class Episodic:
    """Reset before every input: nothing carries over.

    >>> Episodic().should_reset(step=1)
    True
    """

    name = "episodic"
    episodic = True

    def should_reset(self, step: int, *, drift: bool = False, stat: float | None = None) -> bool:
        """Always."""
        return True


class Never:
    """Never reset: the adapted state carries across the whole stream.

    >>> Never().should_reset(step=10_000, drift=True)
    False
    """

    name = "never"
    episodic = False

    def should_reset(self, step: int, *, drift: bool = False, stat: float | None = None) -> bool:
        """Never."""
        return False


class Periodic:
    """Reset every ``every`` adaptation steps (RDumb resets every 1,000 steps on ImageNet-C streams)."""

    episodic = False

    def __init__(self, every: int = 1000) -> None:
        if every < 1:
            raise ValueError(f"Periodic.every must be >= 1, got {every}")
        self.every = every
        self.name = f"periodic:{every}"

    def should_reset(self, step: int, *, drift: bool = False, stat: float | None = None) -> bool:
        """True on every ``every``-th step."""
        return step % self.every == 0


class OnDrift:
    """Reset when the governor's drift trigger fired on this step.

    >>> OnDrift().should_reset(step=5, drift=True)
    True
    """

    name = "on-drift"
    episodic = False

    def should_reset(self, step: int, *, drift: bool = False, stat: float | None = None) -> bool:
        """True exactly when a drift was detected."""
        return drift


class EntropyFloor:
    """SAR-style recovery: EMA of the adaptation loss (entropy); reset when it drops below ``floor``.

    >>> p = EntropyFloor(floor=0.2, momentum=0.5)
    >>> [p.should_reset(step=i, stat=s) for i, s in enumerate([1.0, 0.1, 0.1, 0.1, 0.1])]
    [False, False, False, False, True]
    >>> p.ema is None  # cleared, so the next reset needs a fresh run of low entropy
    True
    """

    episodic = False

    def __init__(self, floor: float = 0.2, momentum: float = 0.9) -> None:
        self.floor = floor
        self.momentum = momentum
        self.name = f"entropy-floor:{floor}"
        self.ema: float | None = None

    def should_reset(self, step: int, *, drift: bool = False, stat: float | None = None) -> bool:
        """Update the EMA with ``stat``; True (and the EMA cleared) when it falls below the floor."""
        if stat is None:
            return False
        self.ema = stat if self.ema is None else self.momentum * self.ema + (1 - self.momentum) * stat
        if self.ema < self.floor:
            self.ema = None
            return True
        return False


def parse_reset(spec: str) -> ResetPolicy:
    """Build a policy from a short name: ``episodic``, ``never``, ``periodic:N``, ``on-drift``,
    ``entropy-floor[:X]``.

    >>> parse_reset("periodic:50").name
    'periodic:50'
    """
    kind, _, arg = spec.partition(":")
    if kind == "episodic":
        return Episodic()
    if kind == "never":
        return Never()
    if kind == "periodic":
        return Periodic(int(arg or 1000))
    if kind == "on-drift":
        return OnDrift()
    if kind == "entropy-floor":
        return EntropyFloor(float(arg or 0.2))
    raise ValueError(
        f"unknown reset policy {spec!r}; use episodic, never, periodic:N, on-drift or entropy-floor[:X]"
    )

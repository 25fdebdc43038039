"""Evaluator cascades: cheap checks first, expensive ones only for candidates that pass a threshold.

A :class:`Cascade` runs its :class:`Stage` functions in order on ``(genome, seed)``; a candidate advances
past a stage only when that stage's score reaches its ``threshold`` (OpenEvolve's defaults are
0.5 / 0.75 / 0.9). Whatever a stage returns goes through :func:`safe_score`: an exception, a timeout, a
``None``, a non-finite number, a boolean or a result flagged ``timeout``/``error`` scores **zero**.
OpenEvolve PR #446 is the cautionary tale: a result ``{"score": 0.0, "timeout": True}`` was averaged
over its values with ``True`` counted as 1.0, so a timed-out program got positive fitness.

>>> c = Cascade([Stage(lambda g, s: float(len(g) > 2), threshold=1.0, name="syntax"),
...              Stage(lambda g, s: len(g) / 10, name="full")])
>>> c.evaluate("abcd").score, c.evaluate("ab").stage_scores
(0.4, (0.0,))
>>> safe_score({"score": 0.0, "timeout": True})
(0.0, 'timeout', 'the result is flagged timeout')
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lifelong.loop.errors import SearchInputError
from lifelong.loop.timeouts import call_with_timeout

__all__ = ["Cascade", "Evaluation", "Stage", "safe_score"]

_FLAGS_TIMEOUT = ("timeout", "timed_out")
_FLAGS_ERROR = ("error", "failed", "exception")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def safe_score(raw: Any) -> tuple[float, str, str]:
    """``(score, status, reason)`` from whatever an evaluation returned; status ``ok``, ``error`` or
    ``timeout``, and anything not ``ok`` scores 0.0.

    Accepted: a finite number; a mapping with ``score`` or ``combined_score`` (else the mean of its
    *numeric, non-boolean* values), checked first for truthy ``timeout``/``timed_out``/``error``/``failed``
    flags; an object with ``value`` and ``status`` (a verifier :class:`~lifelong.loop.verifiers.Score`).

    >>> safe_score(0.7), safe_score(True)[1], safe_score(float("nan"))[1]
    ((0.7, 'ok', ''), 'error', 'error')
    >>> safe_score({"accuracy": 0.5, "passed": True, "speed": 1.0})    # booleans never enter the mean
    (0.75, 'ok', '')
    """
    if raw is None:
        return 0.0, "error", "the evaluation returned nothing"
    if isinstance(raw, bool):
        return 0.0, "error", "the evaluation returned a boolean, not a score"
    if hasattr(raw, "value") and hasattr(raw, "status") and not isinstance(raw, Mapping):
        v = _number(raw.value)
        if raw.status in ("pass", "fail") and v is not None:
            return v, "ok", ""
        status = "timeout" if raw.status == "timeout" else "error"
        return 0.0, status, f"verifier status {raw.status}: {getattr(raw, 'reason', '')}"
    if isinstance(raw, Mapping):
        for flag in _FLAGS_TIMEOUT:
            if raw.get(flag):
                return 0.0, "timeout", f"the result is flagged {flag}"
        for flag in _FLAGS_ERROR:
            if raw.get(flag):
                return 0.0, "error", f"the result is flagged {flag}: {str(raw.get(flag))[:200]}"
        for key in ("combined_score", "score"):
            if key in raw:
                v = _number(raw[key])
                return (v, "ok", "") if v is not None else (0.0, "error", f"{key}={raw[key]!r} is not a finite number")
        values = [_number(v) for v in raw.values() if not isinstance(v, bool)]
        nums = [v for v in values if v is not None]
        if not nums:
            return 0.0, "error", "the result has no numeric metric"
        return sum(nums) / len(nums), "ok", ""
    v = _number(raw)
    if v is None:
        return 0.0, "error", f"the evaluation returned {type(raw).__name__} {str(raw)[:80]!r}, not a finite number"
    return v, "ok", ""


@dataclass(frozen=True)
class Stage:
    """One cascade stage: ``fn(genome, seed)``; a candidate advances when its score is >= ``threshold``
    (None: always). ``timeout_s`` runs the stage in a killable child process (see
    :func:`~lifelong.loop.timeouts.call_with_timeout`).

    >>> Stage(lambda genome, seed: 1.0, threshold=0.5, name="smoke").threshold
    0.5
    """

    fn: Callable[[Any, int], Any]
    threshold: float | None = None
    name: str = ""
    timeout_s: float | None = None


@dataclass(frozen=True)
class Evaluation:
    """What a cascade concluded: the score (of the last stage run), the status (``ok``, ``error``,
    ``timeout``, or ``rejected`` when a threshold stopped it), per-stage scores and timing.

    >>> Evaluation(0.8, "ok", (1.0, 0.8)).completed
    True
    """

    score: float
    status: str
    stage_scores: tuple[float, ...]
    reason: str = ""
    seconds: float = 0.0
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        """Every stage ran and passed its threshold."""
        return self.status == "ok"


class Cascade:
    """Stages in order, stopping at the first one below its threshold or that fails. A bare function
    ``fn(genome, seed)`` is a one-stage cascade.

    >>> Cascade(lambda g, s: {"score": 0.5, "error": "Traceback..."}).evaluate("g").status
    'error'
    """

    def __init__(self, stages: Sequence[Stage] | Stage | Callable[[Any, int], Any]) -> None:
        if callable(stages) and not isinstance(stages, Stage):
            stages = [Stage(stages, name="evaluate")]
        self.stages = [stages] if isinstance(stages, Stage) else list(stages)
        if not self.stages:
            raise SearchInputError("a cascade needs at least one stage")

    def evaluate(self, genome: Any, seed: int = 0) -> Evaluation:
        """Run the stages on ``genome`` with ``seed``; never raises for a failing candidate."""
        t0 = time.perf_counter()
        scores: list[float] = []
        for i, stage in enumerate(self.stages):
            label = stage.name or f"stage {i}"
            try:
                raw = (call_with_timeout(stage.fn, (genome, seed), timeout_s=stage.timeout_s) if stage.timeout_s
                       else stage.fn(genome, seed))
                score, status, reason = safe_score(raw)
            except TimeoutError as err:
                score, status, reason = 0.0, "timeout", f"{label}: {err}"
            except Exception as err:  # noqa: BLE001 - a failing candidate scores zero, never crashes the loop
                score, status, reason = 0.0, "error", f"{label} raised {type(err).__name__}: {err}"[:500]
            scores.append(score)
            if status != "ok":
                return Evaluation(0.0, status, tuple(scores), reason or label, time.perf_counter() - t0)
            if stage.threshold is not None and score < stage.threshold and i < len(self.stages) - 1:
                return Evaluation(score, "rejected", tuple(scores), f"{label}: {score:.4g} < {stage.threshold}",
                                  time.perf_counter() - t0)
        return Evaluation(scores[-1], "ok", tuple(scores), "", time.perf_counter() - t0)


@dataclass(frozen=True)
class CascadeTask:
    """A picklable ``(genome, seed) -> Evaluation`` for executors (the stages must be picklable).

    >>> CascadeTask(Cascade(lambda g, s: len(g) / 10))(("abc", 0)).score
    0.3
    """

    cascade: Cascade

    def __call__(self, pair: tuple[Any, int]) -> Evaluation:
        return self.cascade.evaluate(*pair)

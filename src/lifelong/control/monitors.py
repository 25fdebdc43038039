"""Monitors: after a version goes live, watch it, and raise an alarm when it regresses.

:class:`RegressionMonitor` compares the live per-item scores of the promoted version against the level
the gate measured when it accepted it. It alarms only when the *upper* confidence bound of the recent
live mean falls below that level minus a tolerance, so a noisy window does not cause a rollback by
itself; each alarm is meant to be acted upon by the governor (rollback) and written to the ledger.

>>> m = RegressionMonitor(baseline=0.9, tolerance=0.05, window=50, min_samples=30)
>>> any(m.update(1.0 if i % 10 else 0.0) for i in range(100))      # 90% live: fine
False
>>> any(m.update(1.0 if i % 2 else 0.0) for i in range(100))       # 50% live: alarm
True
"""

from __future__ import annotations

import math
from collections import deque


class RegressionMonitor:
    """Windowed one-sided check of live scores against a baseline.

    ``baseline`` is the expected mean score (e.g. the candidate's mean on the gate's target suite);
    ``z`` sets the confidence of the alarm (1.645 = one-sided 95%).
    """

    def __init__(
        self, baseline: float, tolerance: float = 0.05, window: int = 100, min_samples: int = 30, z: float = 1.645
    ) -> None:
        if window < min_samples:
            raise ValueError(f"window ({window}) must be >= min_samples ({min_samples})")
        self.baseline = baseline
        self.tolerance = tolerance
        self.window = window
        self.min_samples = min_samples
        self.z = z
        self.scores: deque[float] = deque(maxlen=window)
        self.alarmed = False

    def reset(self, baseline: float | None = None) -> None:
        """Start watching afresh (after a promotion or a rollback)."""
        if baseline is not None:
            self.baseline = baseline
        self.scores.clear()
        self.alarmed = False

    @property
    def live_mean(self) -> float | None:
        """Mean of the current window, None before any score."""
        return sum(self.scores) / len(self.scores) if self.scores else None

    def upper_bound(self) -> float | None:
        """Upper one-sided confidence bound of the live mean (normal approximation)."""
        n = len(self.scores)
        if n < self.min_samples:
            return None
        mean = sum(self.scores) / n
        var = sum((s - mean) ** 2 for s in self.scores) / max(n - 1, 1)
        # A floor on the variance keeps a window of identical scores from claiming certainty.
        se = math.sqrt(max(var, 0.25 / n) / n)
        return mean + self.z * se

    def update(self, score: float) -> bool:
        """Add one live score; True on the update where the alarm is raised."""
        self.scores.append(float(score))
        ub = self.upper_bound()
        if not self.alarmed and ub is not None and ub < self.baseline - self.tolerance:
            self.alarmed = True
            return True
        return False

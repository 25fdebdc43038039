"""Paired statistics for the gate, as pure functions.

Everything here compares two systems on the *same* items. Pairing is what makes a small improvement
detectable: two versions of one model agree on most items, and only the items where they disagree
carry information (McNemar), or the per-item differences do (paired bootstrap, sign-flip test).

References: McNemar (1947); the mid-p variant (Fagerland, Lydersen & Laake 2013); paired bootstrap
for system comparison (Koehn 2004); approximate randomisation (Noreen 1989), as in sacreBLEU.

>>> mcnemar_exact(b=2, c=10)            # candidate fixed 10 items and broke 2
0.019287109375
>>> round(mcnemar_exact(b=2, c=10, mid_p=True), 6)
0.01123
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lifelong.core.errors import GateInputError


def as_paired_arrays(champion: Sequence[float], candidate: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Validate two score lists as a pairing and return them as float arrays.

    >>> a, b = as_paired_arrays([1, 0], [1, 1])
    >>> b - a
    array([0., 1.])
    """
    a = np.asarray(champion, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.ndim != 1 or b.ndim != 1:
        raise GateInputError("scores must be flat lists, one number per item")
    if a.shape != b.shape:
        raise GateInputError(
            f"champion has {a.size} scores and candidate has {b.size}; score both on the same items in the same order"
        )
    if a.size == 0:
        raise GateInputError("no items to compare; give the gate a suite with at least one item")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise GateInputError("scores contain NaN or Inf; a verifier error should score 0, not NaN")
    return a, b


def is_binary(*arrays: np.ndarray) -> bool:
    """Whether every score is exactly 0 or 1 (pass/fail outcomes).

    >>> is_binary(np.array([0.0, 1.0]), np.array([1.0, 1.0])), is_binary(np.array([0.5]))
    (True, False)
    """
    return all(bool(np.isin(a, (0.0, 1.0)).all()) for a in arrays)


def discordant_counts(champion: np.ndarray, candidate: np.ndarray) -> tuple[int, int]:
    """(b, c): items only the champion gets right, items only the candidate gets right.

    >>> discordant_counts(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 1]))
    (1, 2)
    """
    b = int(np.sum((champion == 1) & (candidate == 0)))
    c = int(np.sum((champion == 0) & (candidate == 1)))
    return b, c


def mcnemar_exact(b: int, c: int, alternative: str = "greater", mid_p: bool = False) -> float:
    """Exact McNemar test on the discordant counts.

    Under the null hypothesis each discordant item is equally likely to favour either side, so
    ``c ~ Binomial(b + c, 1/2)``. ``alternative="greater"`` asks whether the candidate is better
    (``c`` large); ``"two-sided"`` doubles the smaller tail. The mid-p variant counts half the
    probability of the observed value, which is less conservative while staying close to nominal.

    >>> mcnemar_exact(0, 0)
    1.0
    >>> mcnemar_exact(5, 5, alternative="two-sided")
    1.0
    """
    if b < 0 or c < 0:
        raise GateInputError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    # Exact binomial tails in integer arithmetic: no rounding for any n a suite can have.
    total = 2**n

    def upper(k: int) -> float:  # P(X >= k)
        return sum(math.comb(n, i) for i in range(k, n + 1)) / total

    def point(k: int) -> float:
        return math.comb(n, k) / total

    if alternative == "greater":
        p = upper(c) - 0.5 * point(c) if mid_p else upper(c)
    elif alternative == "two-sided":
        k = min(b, c)
        lower = sum(math.comb(n, i) for i in range(0, k + 1)) / total  # P(X <= k), no cancellation
        p = 2.0 * (lower - 0.5 * point(k)) if mid_p else 2.0 * lower
    else:
        raise GateInputError(f"alternative must be 'greater' or 'two-sided', got {alternative!r}")
    return float(min(1.0, max(0.0, p)))


def paired_bootstrap_ci(
    diff: np.ndarray, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of per-item differences.

    Items are resampled with replacement and the *difference* is recomputed on each resample, so the
    interval respects the pairing (Koehn 2004).

    >>> lo, hi = paired_bootstrap_ci(np.array([0.1, 0.2, 0.15, 0.12]), seed=0)
    >>> 0.1 <= lo <= hi <= 0.2
    True
    """
    if not 0 < confidence < 1:
        raise GateInputError(f"confidence must lie in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    n = diff.size
    means = np.empty(n_resamples)
    # Chunked so that 1e4 resamples of 1e5 items do not allocate gigabytes at once.
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def sign_flip_test(diff: np.ndarray, n_resamples: int = 2000, seed: int = 0, alternative: str = "greater") -> float:
    """Paired randomisation test: under the null, each item's difference is equally likely to have
    either sign. The p-value counts the observed statistic itself (+1 in numerator and denominator),
    so it is never zero and the test is valid at any number of resamples.

    >>> sign_flip_test(np.zeros(10))
    1.0
    """
    rng = np.random.default_rng(seed)
    observed = diff.mean()
    n = diff.size
    hits = 0
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        signs = rng.choice((-1.0, 1.0), size=(stop - start, n))
        null = (signs * diff).mean(axis=1)
        if alternative == "greater":
            hits += int(np.sum(null >= observed - 1e-12))
        elif alternative == "two-sided":
            hits += int(np.sum(np.abs(null) >= abs(observed) - 1e-12))
        else:
            raise GateInputError(f"alternative must be 'greater' or 'two-sided', got {alternative!r}")
    return float((hits + 1) / (n_resamples + 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control across suites).

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return [round(float(x), 12) for x in adjusted]


@dataclass(frozen=True)
class PairedTestResult:
    """Effect (candidate minus champion), its interval, and a one-sided p-value for "candidate better"."""

    effect: float
    ci: tuple[float, float]
    p_value: float
    test: str
    negative_flips: np.ndarray  # indices
    positive_flips: np.ndarray


def paired_test(
    champion: Sequence[float],
    candidate: Sequence[float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    mid_p: bool = False,
) -> PairedTestResult:
    """The gate's test: exact McNemar for pass/fail scores, sign-flip randomisation otherwise; a
    paired bootstrap interval on the mean difference either way.

    Flips are defined for binary scores (right -> wrong is negative); for continuous scores an item
    counts as a negative flip when the candidate scores strictly lower.

    >>> r = paired_test([1, 1, 0, 0] * 25, [1, 1, 1, 0] * 25)
    >>> r.test, round(r.effect, 2), r.p_value < 0.001
    ('mcnemar-exact', 0.25, True)
    """
    a, b = as_paired_arrays(champion, candidate)
    diff = b - a
    ci = paired_bootstrap_ci(diff, n_resamples, confidence, seed)
    negative = np.flatnonzero(diff < 0)
    positive = np.flatnonzero(diff > 0)
    if is_binary(a, b):
        nb, nc = discordant_counts(a, b)
        p = mcnemar_exact(nb, nc, "greater", mid_p=mid_p)
        name = "mcnemar-midp" if mid_p else "mcnemar-exact"
    else:
        p = sign_flip_test(diff, n_resamples, seed, "greater")
        name = "sign-flip"
    return PairedTestResult(float(diff.mean()), ci, p, name, negative, positive)

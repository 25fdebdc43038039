"""Optimisation problems with exact evaluators and known optima, for search loops and their benchmarks.

**Low-autocorrelation binary sequences (LABS).** For s in {-1, +1}^N, the aperiodic autocorrelations
are ``C_k = sum_i s_i s_{i+k}`` (k = 1..N-1), the energy is ``E = sum_k C_k^2`` and the merit factor is
``F = N^2 / (2E)`` (Golay). Minimising E is a classic hard problem (the ground states are known only
from exhaustive branch-and-bound search). The exact optima below are from Packebusch & Mertens,
"Low autocorrelation binary sequences", J. Phys. A 49 (2016) 165001; those for N <= 24 were re-checked
here by enumerating all 2^(N-1) sequences (the test suite re-checks N <= 14).

>>> s = np.array([1, 1, 1, 1, 1, -1, -1, 1, 1, -1, 1, -1, 1])   # the Barker sequence of length 13
>>> int(labs_energy(s)), round(float(merit_factor(s)), 2), LABS_OPTIMAL_ENERGY[13]
(6, 14.08, 6)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lifelong.loop.errors import SearchInputError

__all__ = ["LABS_OPTIMAL_ENERGY", "flip_mutation", "labs_energy", "merit_factor", "optimal_merit_factor",
           "random_sequences"]

LABS_OPTIMAL_ENERGY: dict[int, int] = {
    3: 1, 4: 2, 5: 2, 6: 7, 7: 3, 8: 8, 9: 12, 10: 13, 11: 5, 12: 10, 13: 6, 14: 19, 15: 15, 16: 24, 17: 32,
    18: 25, 19: 29, 20: 26, 21: 26, 22: 39, 23: 47, 24: 36, 25: 36, 26: 45, 27: 37, 28: 50, 29: 62, 30: 59,
    31: 67, 32: 64, 33: 64, 34: 65, 35: 73, 36: 82, 37: 86, 38: 87, 39: 99, 40: 108,
}


def _as_pm1(s: Sequence[int] | np.ndarray) -> np.ndarray:
    a = np.asarray(s)
    if a.ndim not in (1, 2) or a.shape[-1] < 2:
        raise SearchInputError(f"a sequence batch must have shape (N,) or (B, N) with N >= 2, got {a.shape}")
    if not (np.abs(a) == 1).all():
        raise SearchInputError("LABS sequences must contain only -1 and +1")
    return a.astype(np.int64)


def labs_energy(s: Sequence[int] | np.ndarray) -> np.ndarray:
    """``E = sum_k C_k^2`` for one sequence ``(N,)`` or a batch ``(B, N)``.

    >>> labs_energy(np.array([[1, 1, -1], [1, 1, 1]])).tolist()
    [1, 5]
    """
    a = _as_pm1(s)
    return _energy(a)


def _energy(a: np.ndarray) -> np.ndarray:
    n = a.shape[-1]
    if a.ndim == 1:  # one C call: the full autocorrelation, lags 1..n-1
        c = np.correlate(a, a, mode="full")[n:]
        return np.int64((c * c).sum())
    e = np.zeros(a.shape[:-1], dtype=np.int64)
    for k in range(1, n):
        c = (a[..., : n - k] * a[..., k:]).sum(-1)
        e += c * c
    return e


def merit_factor(s: Sequence[int] | np.ndarray) -> np.ndarray:
    """``F = N^2 / (2E)``: higher is better (the reward the loops maximise).

    >>> float(merit_factor([1, 1, -1]))
    4.5
    """
    a = _as_pm1(s)
    return a.shape[-1] ** 2 / (2.0 * _energy(a))


def optimal_merit_factor(n: int) -> float:
    """The best merit factor at length ``n`` (from :data:`LABS_OPTIMAL_ENERGY`).

    >>> round(optimal_merit_factor(27), 3)
    9.851
    """
    if n not in LABS_OPTIMAL_ENERGY:
        raise SearchInputError(f"no known optimum for N={n}; known: {min(LABS_OPTIMAL_ENERGY)}..{max(LABS_OPTIMAL_ENERGY)}")
    return n * n / (2.0 * LABS_OPTIMAL_ENERGY[n])


def random_sequences(rng: np.random.Generator, count: int, n: int) -> np.ndarray:
    """``count`` uniform random ±1 sequences of length ``n`` (best-of-N sampling draws these).

    >>> random_sequences(np.random.default_rng(0), 2, 5).shape
    (2, 5)
    """
    return (rng.integers(0, 2, size=(count, n)) * 2 - 1).astype(np.int64)


def flip_mutation(s: np.ndarray, rng: np.random.Generator, *, mean_flips: float = 1.5) -> np.ndarray:
    """Flip 1 + Poisson(mean_flips - 1) distinct random positions: the plain operator evolution uses.

    >>> child = flip_mutation(np.ones(8, dtype=int), np.random.default_rng(0))
    >>> int((child == -1).sum()) >= 1
    True
    """
    k = min(len(s), 1 + int(rng.poisson(max(mean_flips - 1.0, 0.0))))
    out = np.array(s, copy=True)
    idx = rng.choice(len(s), size=k, replace=False)
    out[idx] *= -1
    return out

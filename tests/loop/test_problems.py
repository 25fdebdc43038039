"""LABS: the exact evaluator and the known optima (re-checked by enumeration for small N)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lifelong.loop.errors import SearchInputError
from lifelong.loop.problems import (
    LABS_OPTIMAL_ENERGY,
    flip_mutation,
    labs_energy,
    merit_factor,
    optimal_merit_factor,
)


def _brute_min_energy(n: int) -> int:
    bits = np.array(list(itertools.product((-1, 1), repeat=n - 1)), dtype=np.int64)
    seqs = np.concatenate([np.ones((len(bits), 1), dtype=np.int64), bits], axis=1)  # s_0 = +1 by symmetry
    return int(labs_energy(seqs).min())


@pytest.mark.parametrize("n", range(3, 15))
def test_known_optima_match_enumeration(n: int) -> None:
    assert _brute_min_energy(n) == LABS_OPTIMAL_ENERGY[n]


def test_energy_definition_and_symmetries() -> None:
    rng = np.random.default_rng(0)
    s = rng.choice([-1, 1], size=17)
    c = [int(np.dot(s[: 17 - k], s[k:])) for k in range(1, 17)]
    assert int(labs_energy(s)) == sum(x * x for x in c)
    alt = s * np.array([(-1) ** i for i in range(17)])
    for t in (-s, s[::-1], alt):  # negation, reversal, alternating negation keep E
        assert int(labs_energy(t)) == int(labs_energy(s))
    batch = np.stack([s, -s])
    assert labs_energy(batch).tolist() == [int(labs_energy(s))] * 2
    assert float(merit_factor(s)) == pytest.approx(17**2 / (2 * int(labs_energy(s))))


def test_bad_input_and_mutation() -> None:
    with pytest.raises(SearchInputError):
        labs_energy(np.array([1, 0, 1]))
    with pytest.raises(SearchInputError):
        optimal_merit_factor(1000)
    s = np.ones(20, dtype=np.int64)
    child = flip_mutation(s, np.random.default_rng(0), mean_flips=3.0)
    assert 1 <= int((child != s).sum()) <= 20 and np.array_equal(s, np.ones(20))  # parent untouched

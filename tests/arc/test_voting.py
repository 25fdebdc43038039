"""Voting is pure and deterministic: it depends only on the multiset of (category, grid) candidates."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.arc.voting import category_shortlist, vote


def _grid(v: int, shape: tuple[int, int] = (2, 2)) -> np.ndarray:
    return np.full(shape, v, dtype=np.int8)


def test_most_voted_grid_wins_and_at_most_two_are_returned() -> None:
    cands = [("identity", _grid(1))] * 3 + [("rot90", _grid(1)), ("rot90", _grid(2)), ("flip0", _grid(3))]
    top = vote(cands)
    assert len(top) == 2 and top[0].tolist() == _grid(1).tolist()
    assert vote([("identity", _grid(5))])[0].tolist() == _grid(5).tolist()
    assert vote([]) == []


def test_a_grid_agreed_on_across_categories_beats_one_repeated_in_a_single_category() -> None:
    # 4 votes from one category vs. 1 vote in each of 3 categories: breadth wins (hierarchical voting)
    cands = [("identity", _grid(7))] * 4 + [("rot90", _grid(8)), ("flip0", _grid(8)), ("flip1", _grid(8))]
    assert vote(cands, top=1)[0].tolist() == _grid(8).tolist()


def test_shortlists_are_topped_up_with_majority_grids() -> None:
    a = np.array([[1], [9]], dtype=np.int8)
    b = np.array([[5], [2]], dtype=np.int8)
    keys = category_shortlist([a, b], size=3)
    assert len(keys) == 3  # two voted grids, then their row-wise majority, a grid nobody predicted
    assert keys[2] == bytes([2, 1, 1, 2])
    c = np.array([[7], [7]], dtype=np.int8)
    assert len(category_shortlist([a, b, c, c], size=3)) == 3  # three distinct: no top-up needed


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["identity", "rot90", "flip0", "transpose"]), st.integers(0, 3),
                          st.sampled_from([(1, 1), (2, 2), (1, 2)])), min_size=1, max_size=25),
       st.randoms(use_true_random=False))
def test_vote_ignores_candidate_order(raw: list, shuffler) -> None:  # type: ignore[no-untyped-def]
    cands = [(c, _grid(v, s)) for c, v, s in raw]
    first = [g.tobytes() + bytes(g.shape) for g in vote(cands)]
    shuffled = list(cands)
    shuffler.shuffle(shuffled)
    assert [g.tobytes() + bytes(g.shape) for g in vote(shuffled)] == first
    assert 1 <= len(first) <= 2


def test_inputs_are_not_modified() -> None:
    g = _grid(3)
    vote([("identity", g), ("rot90", g)])
    assert g.tolist() == _grid(3).tolist() and g.flags.writeable

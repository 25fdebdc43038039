"""Leave-one-out and leave-two-out construction: counts, deduplication, cap order, single-demo fallback."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from lifelong.arc.augment import ColourPermutation, Dihedral
from lifelong.arc.grids import ArcTask
from lifelong.arc.leave_out import (
    SingleDemonstrationWarning,
    demonstration_items,
    leave_out_items,
    leave_out_splits,
)


def _task(n: int, seed: int = 0, size: int = 3) -> ArcTask:
    rng = np.random.default_rng(seed)
    pairs = [(rng.integers(0, 10, (size, size)), rng.integers(0, 10, (size, size))) for _ in range(n)]
    return ArcTask.from_pairs(pairs, [rng.integers(0, 10, (size, size))], f"n{n}")


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_counts_match_the_combinatorics(n: int) -> None:
    items, info = leave_out_items(_task(n), leave=(1, 2), cap=10_000)
    assert info["leave_1"] == n
    assert info["leave_2"] == (math.comb(n, 2) if n > 2 else 0)  # leave-two-out needs a non-empty context
    for item in items:
        assert len(item.context) == n - item.left_out and len(item.queries) == item.left_out
        ctx = {e.key() for e in item.context}
        assert not ctx & {e.key() for e in item.queries}  # a query is never in its own context


def test_splits_never_leave_an_empty_context() -> None:
    assert all(ctx for ctx, _ in leave_out_splits(4, 3))
    assert leave_out_splits(3, 3) == []
    with pytest.raises(ValueError):
        leave_out_splits(3, 0)


def test_duplicates_are_removed() -> None:
    t = _task(3)
    dup = ArcTask(t.id, (t.train[0], t.train[0], t.train[1]), t.test)  # a repeated demonstration
    items, info = leave_out_items(dup, leave=(1,))
    assert info["duplicates"] == 1 and len(items) == 2
    # a symmetric grid pair: rot180 of an all-zero task is the same task
    zeros = ArcTask.from_pairs([(np.zeros((2, 2)), np.zeros((2, 2))), (np.ones((2, 2)), np.ones((2, 2)))],
                               [np.zeros((2, 2))], "sym")
    items, info = leave_out_items(zeros, [Dihedral.named("rot180"), Dihedral.named("flip0")], leave=(1,))
    assert len(items) == 2 and info["duplicates"] == 4


def test_cap_fills_from_leave_one_out_first_and_is_seeded() -> None:
    t = _task(5)
    augs = [*Dihedral.all()[1:], ColourPermutation.random(np.random.default_rng(0))]
    items, info = leave_out_items(t, augs, leave=(1, 2), cap=30, seed=3)  # 9 variants x 5 = 45 LOO items
    assert len(items) == 30 and info["leave_1"] == 30 and info.get("leave_2") is None
    items2, _ = leave_out_items(t, augs, leave=(1, 2), cap=50, seed=3)
    assert [i.left_out for i in items2].count(1) == 45 and [i.left_out for i in items2].count(2) == 5
    again, _ = leave_out_items(t, augs, leave=(1, 2), cap=50, seed=3)
    assert [i.key() for i in again] == [i.key() for i in items2]


def test_a_single_demonstration_falls_back_and_says_so() -> None:
    t = _task(1)
    with pytest.warns(SingleDemonstrationWarning, match="leave-one-out is impossible"):
        items, info = leave_out_items(t, [Dihedral.named("rot90")])
    assert info["fallback"] and len(items) == 2
    assert all(len(i.context) == 0 and i.left_out == 0 for i in items)


def test_oversized_augmenters_are_skipped_and_reported() -> None:
    from lifelong.arc.augment import Upscale

    t = _task(2, size=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = leave_out_items(t, [Upscale(2, 2)], leave=(1,))
    assert info["skipped_for_size"] == ["upscale2x2"]


def test_demonstration_items_have_no_context() -> None:
    items = demonstration_items(_task(3))
    assert len(items) == 3 and all(not i.context for i in items)

"""Task streams from the bundled digits: permuted (domain-incremental) and split (task / class)."""

from __future__ import annotations

import numpy as np
import pytest

from lifelong.core.errors import DataInputError
from lifelong.data.continual import make_stream, permuted_digits, pixel_permutations, split_digits


def test_permutations_are_seeded_and_distinct() -> None:
    a, b = pixel_permutations(5, seed=3), pixel_permutations(5, seed=3)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert all(sorted(p.tolist()) == list(range(64)) for p in a)
    assert len({tuple(p) for p in a}) == 5
    assert not np.array_equal(a[0], pixel_permutations(5, seed=4)[0])


def test_permuted_tasks_share_images_and_labels_under_their_permutation() -> None:
    s = permuted_digits(n_tasks=3, seed=0)
    assert s.scenario == "domain" and len(s) == 3 and s.class_mask(2) is None
    base = s.tasks[0].train.x[:, np.argsort(s.tasks[0].permutation)]
    for task in s.tasks:
        assert np.array_equal(task.train.x, base[:, list(task.permutation)])
        assert np.array_equal(task.train.y, s.tasks[0].train.y)
        assert task.train.x.dtype == np.float32 and task.train.x.shape[1] == 64
    ids = [set(getattr(s.tasks[0], part).ids.tolist()) for part in ("train", "val", "test")]
    assert ids[0].isdisjoint(ids[1]) and ids[0].isdisjoint(ids[2]) and ids[1].isdisjoint(ids[2])
    assert sum(len(i) for i in ids) == 1797


def test_split_tasks_partition_the_classes_with_masks_for_task_incremental() -> None:
    task_il, class_il = split_digits(seed=1, scenario="task"), split_digits(seed=1, scenario="class")
    assert [t.classes for t in task_il.tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for t, task in enumerate(task_il.tasks):
        for part in (task.train, task.val, task.test):
            assert set(np.unique(part.y).tolist()) == set(task.classes)
        assert task_il.class_mask(t).nonzero()[0].tolist() == list(task.classes)
        assert class_il.class_mask(t) is None
    assert sum(len(t.test) for t in task_il.tasks) == len(permuted_digits(1, seed=1).tasks[0].test)


def test_stream_errors_say_what_is_allowed() -> None:
    with pytest.raises(DataInputError, match="'task' or 'class'"):
        split_digits(scenario="domain")
    with pytest.raises(DataInputError, match="at most once"):
        split_digits(pairs=((0, 1), (1, 2)))
    with pytest.raises(DataInputError, match="unknown scenario"):
        make_stream("online")
    with pytest.raises(DataInputError, match="at most 5 tasks"):
        make_stream("class", n_tasks=6)
    with pytest.raises(DataInputError, match="out of range"):
        make_stream("task", n_tasks=2).class_mask(2)

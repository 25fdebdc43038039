"""Test-time training data from a task's own demonstrations: leave-one-out and leave-two-out tasks.

After MARC's ``ttt/preprocess.py``: with N demonstrations, each one in turn becomes the query and the
other N-1 the context (leave-one-out, ``n=1``); leave-two-out holds out every pair (the context has N-2
demonstrations, both held-out pairs are queries). Every augmenter that keeps the task within 30x30 is
applied to the whole task first (MARC drops the others), identical constructed tasks are removed, and the
set is capped at ``cap`` items (MARC's ``Nmax`` = 250), filled from leave-one-out first, then leave-two-out.

A task with a single demonstration has no leave-one-out split (the context would be empty). We fall back
to the demonstration itself as a query with an empty context (MARC's plain input/output format), warn with
:class:`SingleDemonstrationWarning`, and record ``fallback`` in the returned info.

>>> from lifelong.arc.grids import ArcTask
>>> t = ArcTask.from_pairs([([[1]], [[2]]), ([[3]], [[4]]), ([[5]], [[6]])], [[[7]]])
>>> items, info = leave_out_items(t, leave=(1, 2))
>>> info["leave_1"], info["leave_2"], [len(i.context) for i in items]
(3, 3, [2, 2, 2, 1, 1, 1])
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lifelong.arc.augment import IDENTITY, Augmenter
from lifelong.arc.grids import ArcInputError, ArcTask, Example

MARC_NMAX = 250  # MARC's cap on test-time training examples per task


class SingleDemonstrationWarning(UserWarning):
    """A task has one demonstration, so leave-one-out is impossible; the fallback is announced here.

    >>> issubclass(SingleDemonstrationWarning, UserWarning)
    True
    """


@dataclass(frozen=True, eq=False)
class TrainingItem:
    """A constructed task: predict each query's output from its input, given the context demonstrations.

    >>> from lifelong.arc.grids import as_grid
    >>> e = Example(as_grid([[1]]), as_grid([[2]]))
    >>> TrainingItem((e,), (e,)).key() == TrainingItem((), (e, e)).key()
    False
    """

    context: tuple[Example, ...]
    queries: tuple[Example, ...]
    augmenter: str = "identity"
    left_out: int = 1

    def key(self) -> bytes:
        """Canonical content bytes (context in order, then queries): equal keys are duplicates."""
        return b"C" + b";".join(e.key() for e in self.context) + b"Q" + b";".join(e.key() for e in self.queries)


def leave_out_splits(n: int, k: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``(context indices, held-out indices)`` for every way to hold out ``k`` of ``n`` demonstrations,
    keeping at least one in the context.

    >>> leave_out_splits(3, 1)
    [((1, 2), (0,)), ((0, 2), (1,)), ((0, 1), (2,))]
    >>> leave_out_splits(2, 2)
    []
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    out = []
    for held in itertools.combinations(range(n), k):
        ctx = tuple(i for i in range(n) if i not in held)
        if ctx:
            out.append((ctx, held))
    return out


def demonstration_items(task: ArcTask) -> list[TrainingItem]:
    """Each demonstration as a query with an empty context (the plain input/output format; MARC's
    "no leave-one-out" ablation, and our method (b)).

    >>> t = ArcTask.from_pairs([([[1]], [[2]]), ([[3]], [[4]])], [[[7]]])
    >>> [len(i.context) for i in demonstration_items(t)]
    [0, 0]
    """
    return [TrainingItem((), (e,), "identity", 0) for e in task.train]


def leave_out_items(
    task: ArcTask,
    augmenters: Sequence[Augmenter] = (),
    *,
    leave: Sequence[int] = (1, 2),
    cap: int = MARC_NMAX,
    seed: int = 0,
) -> tuple[list[TrainingItem], dict[str, Any]]:
    """Leave-k-out items for every ``k`` in ``leave``, over the identity and every fitting augmenter,
    deduplicated and capped at ``cap`` (leave-one-out first, the rest drawn at random with ``seed``).

    Returns the items and an info dict (counts per k, duplicates dropped, augmenters skipped for size,
    and ``fallback`` when the task has a single demonstration).

    >>> from lifelong.arc.augment import Dihedral
    >>> t = ArcTask.from_pairs([([[1, 2]], [[2, 1]]), ([[3, 4]], [[4, 3]])], [[[5, 6]]])
    >>> items, info = leave_out_items(t, [Dihedral.named("rot90")], cap=3)
    >>> len(items), info["leave_1"], info["duplicates"]
    (3, 3, 0)
    """
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    n = len(task.train)
    if n == 0:
        raise ArcInputError(f"task {task.id!r} has no demonstrations to learn from")
    info: dict[str, Any] = {"demonstrations": n, "duplicates": 0, "skipped_for_size": [], "fallback": None}
    augs = [IDENTITY, *[a for a in augmenters if a.name != "identity"]]
    variants: list[tuple[str, ArcTask]] = []
    for a in augs:
        if a.fits(task):
            variants.append((a.name, a.apply_to_task(task)))
        else:
            info["skipped_for_size"].append(a.name)
    by_k: dict[int, list[TrainingItem]] = {}
    seen: set[bytes] = set()
    if n == 1:
        msg = (f"task {task.id!r} has a single demonstration, so leave-one-out is impossible; "
               "training on the demonstration with an empty context instead")
        warnings.warn(msg, SingleDemonstrationWarning, stacklevel=2)
        info["fallback"] = msg
        by_k[0] = []
        for name, t in variants:
            item = TrainingItem((), (t.train[0],), name, 0)
            if item.key() in seen:
                info["duplicates"] += 1
                continue
            seen.add(item.key())
            by_k[0].append(item)
    else:
        for k in leave:
            by_k[k] = []
            for name, t in variants:
                for ctx, held in leave_out_splits(n, k):
                    item = TrainingItem(tuple(t.train[i] for i in ctx), tuple(t.train[i] for i in held), name, k)
                    if item.key() in seen:
                        info["duplicates"] += 1
                        continue
                    seen.add(item.key())
                    by_k[k].append(item)
    rng = np.random.default_rng(seed)
    items: list[TrainingItem] = []
    for k in sorted(by_k):  # leave-one-out first, then leave-two-out (MARC tops up in this order)
        pool = by_k[k]
        room = cap - len(items)
        if room <= 0:
            break
        if len(pool) > room:
            pick = sorted(rng.choice(len(pool), size=room, replace=False).tolist())
            pool = [pool[i] for i in pick]
        items.extend(pool)
        info[f"leave_{k}"] = len(pool)
    info["items"] = len(items)
    return items, info

"""Task streams for continual learning, built from scikit-learn's bundled digits (offline).

Two classic protocols, scaled down from MNIST to the 1,797 real 8x8 digits:

* **Permuted digits** (domain-incremental; the digits analogue of Permuted MNIST, Goodfellow et al.
  2013, used by Kirkpatrick et al. 2017 for EWC and by Avalanche's ``PermutedMNIST``): every task is
  the full 10-class problem with the 64 pixels shuffled by a fixed, seeded permutation. Labels keep
  their meaning, the input distribution changes. As in Avalanche, every task (the first included) is
  permuted; an MLP does not care whether one of the permutations is the identity.
* **Split digits** (the analogue of Split MNIST, Zenke et al. 2017): five two-class tasks
  {0,1}, {2,3}, {4,5}, {6,7}, {8,9}. It is evaluated two ways (van de Ven & Tolias 2019, "Three
  scenarios for continual learning"): **task-incremental**, where the task id is known and the
  prediction is restricted to the task's two classes by a head mask, and **class-incremental**, where
  one 10-way head must tell every class seen so far apart with no task id.

Each task carries its own train / val / test split, cut from :func:`~lifelong.data.digits.load_digits_splits`
with the same seed, so validation (for choosing hyper-parameters) never touches test items.

>>> s = permuted_digits(n_tasks=3, seed=0)
>>> s.scenario, len(s), s.tasks[0].train.x.shape[1], s.class_mask(0) is None
('domain', 3, 64, True)
>>> c = split_digits(seed=0, scenario="task")
>>> c.tasks[1].classes, c.class_mask(1).nonzero()[0].tolist()
((2, 3), [2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lifelong.core.errors import DataInputError
from lifelong.data.digits import DigitsSplits, Split, load_digits_splits

N_PIXELS = 64
N_CLASSES = 10
SCENARIOS = ("domain", "task", "class")

# Split MNIST's class pairs (Zenke et al. 2017; Avalanche SplitMNIST with fixed_class_order=range(10)).
SPLIT_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


@dataclass(frozen=True)
class TaskData:
    """Flattened inputs (N, 64) in [0, 1], integer labels, and item ids (indices into ``load_digits``).

    >>> t = TaskData(np.zeros((2, 64), np.float32), np.array([0, 1]), np.array([5, 9]))
    >>> len(t)
    2
    """

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(self.y.size)


@dataclass(frozen=True)
class Task:
    """One task of a stream: its name, the classes it contains, and its three splits.

    >>> permuted_digits(n_tasks=2).tasks[1].name
    'permuted-1'
    """

    name: str
    classes: tuple[int, ...]
    train: TaskData
    val: TaskData
    test: TaskData
    permutation: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TaskStream:
    """An ordered list of tasks and how they are evaluated (``scenario``: domain, task or class).

    >>> split_digits(scenario="class").class_mask(0) is None
    True
    """

    name: str
    scenario: str
    tasks: tuple[Task, ...]
    n_classes: int = N_CLASSES

    def __len__(self) -> int:
        return len(self.tasks)

    def class_mask(self, task_id: int) -> np.ndarray | None:
        """Boolean mask over the head's outputs for task-incremental evaluation, else None.

        In the task-incremental scenario the task id is given and the logits of every class outside the
        task are ignored (a "multi-headed" evaluation on a shared 10-way layer). Domain- and
        class-incremental evaluation use the whole head.

        >>> split_digits(scenario="task").class_mask(4).nonzero()[0].tolist()
        [8, 9]
        """
        if not 0 <= task_id < len(self.tasks):
            raise DataInputError(f"task_id {task_id} out of range; this stream has {len(self.tasks)} tasks")
        if self.scenario != "task":
            return None
        mask = np.zeros(self.n_classes, dtype=bool)
        mask[list(self.tasks[task_id].classes)] = True
        return mask


def _flat(split: Split) -> TaskData:
    return TaskData(split.x.reshape(len(split), -1).astype(np.float32), split.y.astype(np.int64), split.ids)


def pixel_permutations(n_tasks: int, seed: int = 0, n_pixels: int = N_PIXELS) -> list[np.ndarray]:
    """``n_tasks`` fixed random permutations of the pixels, deterministic in ``seed``.

    >>> p = pixel_permutations(2, seed=0)
    >>> sorted(p[0].tolist()) == list(range(64)), bool((p[0] != p[1]).any())
    (True, True)
    """
    if n_tasks < 1:
        raise DataInputError(f"n_tasks must be at least 1, got {n_tasks}")
    rng = np.random.default_rng([seed, 0x9E3779B9])  # a stream of its own, apart from the split's seed
    return [rng.permutation(n_pixels) for _ in range(n_tasks)]


def permuted_digits(
    n_tasks: int = 5, seed: int = 0, *, splits: DigitsSplits | None = None
) -> TaskStream:
    """Domain-incremental stream: the whole digits problem under ``n_tasks`` pixel permutations.

    ``seed`` fixes both the train/val/test split and the permutations (pass ``splits`` to reuse a split).

    >>> s = permuted_digits(n_tasks=2, seed=1)
    >>> p = np.array(s.tasks[1].permutation)
    >>> bool(np.allclose(s.tasks[1].test.x, s.tasks[0].test.x[:, np.argsort(s.tasks[0].permutation)][:, p]))
    True
    """
    splits = splits or load_digits_splits(seed=seed)
    base = {name: _flat(getattr(splits, name)) for name in ("train", "val", "test")}
    tasks = []
    for t, perm in enumerate(pixel_permutations(n_tasks, seed)):
        parts = {name: TaskData(d.x[:, perm], d.y, d.ids) for name, d in base.items()}
        tasks.append(Task(f"permuted-{t}", tuple(range(N_CLASSES)), permutation=tuple(int(i) for i in perm), **parts))
    return TaskStream("permuted-digits", "domain", tuple(tasks))


def split_digits(
    seed: int = 0,
    *,
    scenario: str = "class",
    pairs: Sequence[Sequence[int]] = SPLIT_PAIRS,
    splits: DigitsSplits | None = None,
) -> TaskStream:
    """Five two-class tasks, evaluated task-incrementally (``scenario="task"``, head mask) or
    class-incrementally (``"class"``, one 10-way head).

    ``seed`` fixes the train/val/test split; the class order is ``pairs`` (Split MNIST's by default).

    >>> s = split_digits(seed=0)
    >>> [t.classes for t in s.tasks][:2], sorted(set(s.tasks[4].test.y.tolist()))
    ([(0, 1), (2, 3)], [8, 9])
    """
    if scenario not in ("task", "class"):
        raise DataInputError(f"split_digits scenario must be 'task' or 'class', got {scenario!r}")
    flat = [c for p in pairs for c in p]
    if len(set(flat)) != len(flat) or not set(flat) <= set(range(N_CLASSES)):
        raise DataInputError(f"pairs must use each class 0..9 at most once, got {pairs!r}")
    splits = splits or load_digits_splits(seed=seed)
    base = {name: _flat(getattr(splits, name)) for name in ("train", "val", "test")}
    tasks = []
    for t, classes in enumerate(pairs):
        parts = {}
        for name, d in base.items():
            keep = np.isin(d.y, list(classes))
            parts[name] = TaskData(d.x[keep], d.y[keep], d.ids[keep])
        tasks.append(Task(f"split-{t}", tuple(int(c) for c in classes), **parts))
    return TaskStream(f"split-digits-{scenario}", scenario, tuple(tasks))


def make_stream(scenario: str, seed: int = 0, n_tasks: int = 5) -> TaskStream:
    """A stream by scenario name: ``"domain"`` (permuted digits), ``"task"`` or ``"class"`` (split digits).

    >>> make_stream("task", n_tasks=3).name, len(make_stream("task", n_tasks=3))
    ('split-digits-task', 3)
    """
    if scenario == "domain":
        return permuted_digits(n_tasks, seed)
    if scenario in ("task", "class"):
        if not 1 <= n_tasks <= len(SPLIT_PAIRS):
            raise DataInputError(f"split digits has at most {len(SPLIT_PAIRS)} tasks, got n_tasks={n_tasks}")
        return split_digits(seed, scenario=scenario, pairs=SPLIT_PAIRS[:n_tasks])
    raise DataInputError(f"unknown scenario {scenario!r}; use one of {SCENARIOS}")

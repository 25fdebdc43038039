"""Continual-learning metrics as pure functions of the accuracy matrix.

``R`` is a T x T array with ``R[i, j]`` = accuracy on task j after training on tasks 0..i (GEM's
convention, Lopez-Paz & Ranzato 2017); ``b[j]`` is the accuracy on task j of the randomly initialised
model. Indices below are 0-based, while the formulas in docstrings use the papers' 1-based ones.

The frameworks disagree on what "forgetting" means, so every function here names its formula and no
function is just called ``forgetting`` (the controls reference insists on explicit metric names):

=========================  =====================================================  ====================
name                       formula (1-based, final step k = T)                    used by
=========================  =====================================================  ====================
``forgetting_max``         mean_{j<T} [ max_{l<T} R[l,j] - R[T,j] ]               Chaudhry et al. 2018
``forgetting_first``       mean_{j<T} [ R[j,j] - R[T,j] ]  (= -BWT)               Avalanche
``forgetting_max_all``     mean_{j<T} [ max_{l<=T} R[l,j] - R[T,j] ]  (>= 0)      Mammoth
=========================  =====================================================  ====================

They coincide while accuracy on a task only falls after the task is learnt. They part when accuracy
on task j *peaks after* j (backward transfer: a later task helps an earlier one, then later still it
is forgotten): "first - last" misses the lost peak, "max - last" counts it. Mammoth's variant also
includes the final row in the max, so it is never negative, while Chaudhry's is negative when the
last row is the best one. Always store R: every one of these can be recomputed from it.

>>> R = np.array([[0.9, 0.1, 0.1],
...               [0.8, 0.9, 0.2],
...               [0.7, 0.8, 0.9]])
>>> round(average_accuracy(R), 4), round(backward_transfer(R), 4), round(forgetting_max(R), 4)
(0.8, -0.15, 0.15)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lifelong.core.errors import DataInputError

ArrayLike = np.ndarray | Sequence[Sequence[float]]


def as_accuracy_matrix(R: ArrayLike, *, min_tasks: int = 1) -> np.ndarray:
    """Validate ``R`` as a finite square matrix with at least ``min_tasks`` rows.

    >>> as_accuracy_matrix([[1.0]]).shape
    (1, 1)
    """
    m = np.asarray(R, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise DataInputError(
            f"accuracy matrix R must be square (T x T, R[i, j] = accuracy on task j after task i), got shape {m.shape}"
        )
    if m.shape[0] < min_tasks:
        raise DataInputError(f"this metric needs at least {min_tasks} tasks, R has {m.shape[0]}")
    if not np.isfinite(m).all():
        raise DataInputError("accuracy matrix R contains NaN or Inf; evaluate every task after every training step")
    return m


def average_accuracy(R: ArrayLike) -> float:
    """ACC = (1/T) sum_{j=1..T} R[T, j]: mean accuracy over all tasks after the last one (GEM).

    Avalanche's ``StreamAccuracy`` at the end of the stream, Mammoth's final mean accuracy and GEM's
    ACC agree on this one, provided every task's test set is weighted equally (Avalanche pools items,
    so unequal test sets weigh differently there).

    >>> average_accuracy([[0.9, 0.0], [0.5, 0.8]])
    0.65
    """
    m = as_accuracy_matrix(R)
    return float(m[-1].mean())


def backward_transfer(R: ArrayLike) -> float:
    """BWT = (1/(T-1)) sum_{j=1..T-1} (R[T, j] - R[j, j]) (Lopez-Paz & Ranzato 2017); negative = forgetting.

    Avalanche's ``BWT`` is the same number (minus its first-minus-last forgetting); Mammoth's
    ``backward_transfer`` is this formula too.

    >>> round(backward_transfer([[0.9, 0.0], [0.5, 0.8]]), 4)
    -0.4
    """
    m = as_accuracy_matrix(R, min_tasks=2)
    t = m.shape[0]
    return float(np.mean([m[-1, j] - m[j, j] for j in range(t - 1)]))


def forward_transfer(R: ArrayLike, b: Sequence[float] | np.ndarray) -> float:
    """FWT = (1/(T-1)) sum_{j=2..T} (R[j-1, j] - b[j]) (Lopez-Paz & Ranzato 2017).

    ``b[j]`` is task j's accuracy at random initialisation (``fwt_random_init``). Avalanche's
    ``ForwardTransfer`` and Mammoth's ``forward_transfer`` compute the same quantity; note that in a
    class-incremental stream R[j-1, j] is ~0 by construction (task j's classes were never trained), so
    FWT is negative there whatever the method.

    >>> round(forward_transfer([[0.9, 0.3], [0.5, 0.8]], [0.1, 0.1]), 4)
    0.2
    """
    m = as_accuracy_matrix(R, min_tasks=2)
    base = np.asarray(b, dtype=float)
    if base.shape != (m.shape[0],):
        raise DataInputError(f"b must hold one random-init accuracy per task ({m.shape[0]}), got shape {base.shape}")
    return float(np.mean([m[j - 1, j] - base[j] for j in range(1, m.shape[0])]))


def forgetting_per_task(R: ArrayLike, k: int | None = None) -> np.ndarray:
    """Chaudhry's f_j^k = max_{l in 1..k-1} R[l, j] - R[k, j] for each j < k (default k = T).

    >>> forgetting_per_task([[0.9, 0.1], [0.4, 0.8]]).tolist()
    [0.5]
    """
    m = as_accuracy_matrix(R, min_tasks=2)
    k = m.shape[0] if k is None else k
    if not 2 <= k <= m.shape[0]:
        raise DataInputError(f"k must lie in 2..{m.shape[0]} (1-based step), got {k}")
    rows = m[: k - 1]
    return np.array([rows[:, j].max() - m[k - 1, j] for j in range(k - 1)])


def forgetting_max(R: ArrayLike) -> float:
    """Forgetting (Chaudhry et al. 2018, RWalk): F_T = (1/(T-1)) sum_{j<T} [max_{l in 1..T-1} R[l, j] - R[T, j]].

    The max runs over every *earlier* row, so a peak reached after task j (positive backward
    transfer, then lost) counts as forgotten. This is the definition the benchmark reports as
    "forgetting". Avalanche instead reports first - last (:func:`forgetting_first`); Mammoth includes
    the final row in the max (:func:`forgetting_max_all`); PyCIL reports accuracy curves rather than a
    forgetting number, and its users often compare last-step with average incremental accuracy.

    >>> R = [[0.9, 0.2, 0.1], [0.95, 0.9, 0.1], [0.5, 0.8, 0.9]]   # task 0 peaks after task 1
    >>> round(forgetting_max(R), 4), round(forgetting_first(R), 4)
    (0.275, 0.25)
    """
    return float(forgetting_per_task(R).mean())


def forgetting_first(R: ArrayLike) -> float:
    """Avalanche's forgetting: (1/(T-1)) sum_{j<T} (R[j, j] - R[T, j]), "first value minus last" = -BWT.

    >>> forgetting_first([[0.9, 0.0], [0.5, 0.8]])
    0.4
    """
    m = as_accuracy_matrix(R, min_tasks=2)
    return float(np.mean([m[j, j] - m[-1, j] for j in range(m.shape[0] - 1)]))


def forgetting_max_all(R: ArrayLike) -> float:
    """Mammoth's ``forgetting``: (1/(T-1)) sum_{j<T} (max_{l in 1..T} R[l, j] - R[T, j]), final row included.

    Never negative: when the last row holds a task's best accuracy its term is 0, where Chaudhry's
    is negative.

    >>> forgetting_max_all([[0.5, 0.0], [0.7, 0.8]]), round(forgetting_max([[0.5, 0.0], [0.7, 0.8]]), 4)
    (0.0, -0.2)
    """
    m = as_accuracy_matrix(R, min_tasks=2)
    top = m.max(axis=0)
    return float(np.mean([top[j] - m[-1, j] for j in range(m.shape[0] - 1)]))


def average_incremental_accuracy(R: ArrayLike) -> float:
    """Average incremental accuracy (iCaRL / PyCIL): (1/T) sum_k A_k, A_k = (1/k) sum_{j<=k} R[k, j].

    PyCIL computes A_k over all test items of the classes seen so far; that equals this task-average
    when every task has the same number of test items, and differs slightly otherwise.

    >>> average_incremental_accuracy([[0.9, 0.0], [0.5, 0.8]])
    0.775
    """
    m = as_accuracy_matrix(R)
    return float(np.mean([m[k, : k + 1].mean() for k in range(m.shape[0])]))


def intransigence(R: ArrayLike, joint: Sequence[float] | np.ndarray) -> float:
    """Mean intransigence (Chaudhry et al. 2018): (1/T) sum_k (a*_k - R[k, k]), a* a jointly trained reference.

    >>> round(intransigence([[0.9, 0.0], [0.5, 0.8]], [0.95, 0.9]), 4)
    0.075
    """
    m = as_accuracy_matrix(R)
    ref = np.asarray(joint, dtype=float)
    if ref.shape != (m.shape[0],):
        raise DataInputError(f"joint must hold one reference accuracy per task ({m.shape[0]}), got shape {ref.shape}")
    return float(np.mean(ref - np.diag(m)))


def summarize(R: ArrayLike, b: Sequence[float] | np.ndarray | None = None) -> dict[str, float]:
    """Every metric above from one R, under its explicit name.

    >>> sorted(summarize([[0.9, 0.1], [0.5, 0.8]], [0.1, 0.1]))  # doctest: +NORMALIZE_WHITESPACE
    ['acc', 'avg_incremental_acc', 'bwt', 'forgetting_first', 'forgetting_max', 'forgetting_max_all',
     'fwt_random_init']
    """
    m = as_accuracy_matrix(R)
    out = {"acc": average_accuracy(m), "avg_incremental_acc": average_incremental_accuracy(m)}
    if m.shape[0] >= 2:
        out.update(
            bwt=backward_transfer(m),
            forgetting_max=forgetting_max(m),
            forgetting_first=forgetting_first(m),
            forgetting_max_all=forgetting_max_all(m),
        )
        if b is not None:
            out["fwt_random_init"] = forward_transfer(m, b)
    return out


# Formula strings the benchmark prints next to every number, so a reader never has to guess.
FORMULAS: dict[str, str] = {
    "acc": "ACC = (1/T) sum_j R[T,j] (GEM)",
    "bwt": "BWT = (1/(T-1)) sum_{j<T} (R[T,j] - R[j,j]) (Lopez-Paz & Ranzato 2017)",
    "fwt_random_init": "FWT = (1/(T-1)) sum_{j>=2} (R[j-1,j] - b_j), b_j random-init accuracy (GEM)",
    "forgetting_max": "F = (1/(T-1)) sum_{j<T} (max_{l<T} R[l,j] - R[T,j]) (Chaudhry et al. 2018)",
    "forgetting_first": "(1/(T-1)) sum_{j<T} (R[j,j] - R[T,j]) (Avalanche; = -BWT)",
    "forgetting_max_all": "(1/(T-1)) sum_{j<T} (max_{l<=T} R[l,j] - R[T,j]) (Mammoth)",
    "avg_incremental_acc": "(1/T) sum_k mean_{j<=k} R[k,j] (iCaRL / PyCIL)",
}

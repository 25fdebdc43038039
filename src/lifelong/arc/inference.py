"""Prediction: plain (one greedy grid per test input) and augmented (transform, predict, map back).

Augmented inference follows MARC's ``inference/preprocess.py``: for each invertible transform the whole
task (demonstrations and test input) is transformed, the model predicts greedily, and the prediction is
mapped back with the transform's exact inverse. MARC also varies the context (all demonstrations, or
leave-one-out subsets: ``include_n`` in {0, 1}) and the demonstration order; our model ignores order
(it averages its context), so we vary the context only. The candidates go to :func:`lifelong.arc.voting.vote`.

>>> import numpy as np
>>> from lifelong.arc.grids import ArcTask
>>> from lifelong.arc.model import CellNet
>>> t = ArcTask.from_pairs([([[1, 0]], [[1, 0]]), ([[0, 2]], [[0, 2]])], [[[3, 0]]])
>>> net = CellNet(width=8, depth=1, dilations=(1,), ctx_width=8, task_dim=8, seed=0)
>>> [g.tolist() for g in predict(net, t)]          # untrained: copies the input
[[[3, 0]]]
>>> cands = augmented_candidates(net, t)
>>> len(cands[0]), sorted({c for c, _ in cands[0]})[:3]
(21, ['flip0', 'flip1', 'identity'])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lifelong.arc.augment import Dihedral, inference_transforms
from lifelong.arc.batching import Prepared, collate, prepare
from lifelong.arc.grids import ArcTask
from lifelong.arc.leave_out import leave_out_splits
from lifelong.arc.model import CellNet
from lifelong.arc.shapes import infer_shape_rule

Candidate = tuple[str, np.ndarray]  # (category, grid)


@torch.no_grad()
def _run(model: CellNet, entries: Sequence[Prepared], device: torch.device | str, chunk: int) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    model.eval()
    for start in range(0, len(entries), chunk):
        out.extend(model.predict(collate(entries[start : start + chunk]).to(device)))
    return out


def predict(model: CellNet, task: ArcTask, *, context: str = "full", device: torch.device | str = "cpu",
            chunk: int = 32) -> list[np.ndarray | None]:
    """One greedy prediction per test input, untransformed; ``context`` is ``"full"`` (every
    demonstration) or ``"none"`` (the plain input/output format). None where the task follows no shape
    rule, or the predicted output would exceed 30x30.

    >>> t = ArcTask.from_pairs([([[1, 1]], [[1]])], [[[2, 2]]])     # a crop: no shape rule
    >>> predict(CellNet(width=4, depth=1, dilations=(1,), ctx_width=4, task_dim=4), t)
    [None]
    """
    if context not in ("full", "none"):
        raise ValueError(f"context must be 'full' or 'none', got {context!r}")
    rule = infer_shape_rule(task.train)
    if rule is None:
        return [None] * len(task.test)
    ctx = task.train if context == "full" else ()
    cache: dict = {}
    idx = [i for i, e in enumerate(task.test) if rule.fits(e.input)]
    preds = _run(model, [prepare(ctx, task.test[i].input, None, rule, cache) for i in idx], device, chunk)
    out: list[np.ndarray | None] = [None] * len(task.test)
    for i, p in zip(idx, preds, strict=True):
        out[i] = p
    return out


def augmented_candidates(
    model: CellNet,
    task: ArcTask,
    transforms: Sequence[Dihedral] | None = None,
    *,
    loo_contexts: bool = True,
    device: torch.device | str = "cpu",
    chunk: int = 32,
) -> list[list[Candidate]]:
    """For every test input, the (category, grid) candidates of every transform (default: MARC's
    inference set, :func:`~lifelong.arc.augment.inference_transforms`) and context (all demonstrations,
    and each leave-one-out subset when ``loo_contexts``), mapped back to the task's own frame.

    >>> t = ArcTask.from_pairs([([[1, 2]], [[1, 2]])], [[[3, 4]]])
    >>> net = CellNet(width=4, depth=1, dilations=(1,), ctx_width=4, task_dim=4)
    >>> [(c, g.tolist()) for c, g in augmented_candidates(net, t, [Dihedral.named("rot90")])[0]]
    [('rot90', [[3, 4]])]
    """
    transforms = list(transforms) if transforms is not None else inference_transforms()
    entries: list[Prepared] = []
    owners: list[tuple[int, Dihedral]] = []
    for t in transforms:
        variant = t.apply_to_task(task)
        rule = infer_shape_rule(variant.train)
        if rule is None:
            continue
        contexts = [variant.train]
        if loo_contexts and len(variant.train) > 1:
            contexts += [tuple(variant.train[i] for i in ctx) for ctx, _ in leave_out_splits(len(variant.train), 1)]
        cache: dict = {}
        for ctx in contexts:
            for i, e in enumerate(variant.test):
                if rule.fits(e.input):
                    entries.append(prepare(ctx, e.input, None, rule, cache))
                    owners.append((i, t))
    preds = _run(model, entries, device, chunk)
    out: list[list[Candidate]] = [[] for _ in task.test]
    for (i, t), p in zip(owners, preds, strict=True):
        out[i].append((t.name, t.inverse()(p)))
    return out

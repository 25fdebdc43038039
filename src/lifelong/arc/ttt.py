"""Test-time training of the per-cell model on one task, inside a task scope that is reset afterwards.

The loop follows MARC's per-task recipe (``configs/ttt/8B_lora_single_device.yaml``) scaled to our model:
AdamW with weight decay 0.01, a cosine schedule with 10% warm-up, the loss on every query output given its
context. MARC trains a fresh LoRA adapter per task on an 8B model (rank 64, lr 1e-4, 2 epochs of <= 250
examples at batch 2); our model has ~80k parameters, so every parameter adapts (the budget glob ``"*"``)
and the learning rate and step count are our own, calibrated on held-out *training* tasks
(see :mod:`lifelong.bench.arc`).

Each training step takes whole augmented variants of the task (all of a variant's constructed tasks
together), so the variant's demonstrations are encoded once and shared by its queries.

:func:`task_scope` wraps the model in a :class:`~lifelong.weights.scope.WeightScope` of scope ``input``:
whatever happens inside, the model leaves bit-identical to how it entered.

>>> import numpy as np
>>> from lifelong.arc.grids import ArcTask
>>> from lifelong.arc.model import CellNet
>>> t = ArcTask.from_pairs([([[1, 0]], [[2, 0]]), ([[0, 1]], [[0, 2]])], [[[1, 1]]])
>>> net = CellNet(width=8, depth=1, dilations=(1,), ctx_width=8, task_dim=8, seed=0)
>>> groups = group_entries(demonstration_items(t))
>>> before = net.to_bytes()
>>> with task_scope(net):
...     hist = train(net, groups, TTTConfig(steps=30, lr=0.03, batch_queries=2), seed=0)
>>> hist["loss"][-1] < hist["loss"][0], net.to_bytes() == before
(True, True)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from lifelong.arc.batching import Prepared, collate, prepare
from lifelong.arc.leave_out import TrainingItem, demonstration_items
from lifelong.arc.model import CellNet
from lifelong.arc.shapes import infer_shape_rule
from lifelong.control.budgets import Budget
from lifelong.core.scopes import Scope
from lifelong.weights.scope import WeightScope

__all__ = ["TTTConfig", "demonstration_items", "group_entries", "task_scope", "train"]


@dataclass(frozen=True)
class TTTConfig:
    """How one task is learned at test time.

    ``weight_decay`` 0.01, ``warmup`` 10% and the cosine schedule are MARC's; ``lr``, ``steps`` and
    ``batch_queries`` are ours (a from-scratch-sized model, not a LoRA on 8B parameters).

    >>> TTTConfig().weight_decay, TTTConfig(steps=8).to_dict()["steps"]
    (0.01, 8)
    """

    steps: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: float = 0.1
    batch_queries: int = 12
    max_grad_norm: float = 1.0
    colour_lr_scale: float = 10.0
    params: tuple[str, ...] = ("*",)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


@dataclass
class Groups:
    """Prepared entries grouped by augmented variant (the unit a training step takes whole).

    >>> Groups().n_queries
    0
    """

    groups: list[list[Prepared]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    @property
    def n_queries(self) -> int:
        """Total number of training queries."""
        return sum(len(g) for g in self.groups)


def group_entries(items: Sequence[TrainingItem]) -> Groups:
    """Prepare constructed tasks for training, one group per augmenter; items whose demonstrations follow
    no shape rule are dropped (the model cannot express them).

    >>> from lifelong.arc.grids import ArcTask
    >>> t = ArcTask.from_pairs([([[1]], [[2]]), ([[3]], [[4]])], [[[5]]])
    >>> group_entries(demonstration_items(t)).n_queries
    2
    """
    out = Groups()
    by_name: dict[str, list[Prepared]] = {}
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for item in items:
        rule = infer_shape_rule((*item.context, *item.queries))
        if rule is None:
            continue
        entries = by_name.setdefault(item.augmenter, [])
        for q in item.queries:
            entries.append(prepare(item.context, q.input, q.output, rule, cache))
    for name, entries in by_name.items():
        out.groups.append(entries)
        out.names.append(name)
    return out


@contextlib.contextmanager
def task_scope(model: torch.nn.Module, params: Sequence[str] = ("*",)) -> Iterator[WeightScope]:
    """A reset-on-exit ``input`` scope over the parameters the budget glob selects.

    >>> net = torch.nn.Linear(1, 1)
    >>> with task_scope(net) as scope:
    ...     _ = net.weight.data.add_(1.0)
    ...     moved = scope.distance() > 0
    >>> moved, scope.distance()
    (True, 0.0)
    """
    scope = WeightScope(model, Budget(params=tuple(params)).select(model), scope=Scope.INPUT)
    try:
        yield scope
    finally:
        scope.reset()


def _schedule(step: int, total: int, warmup: float) -> float:
    """Linear warm-up then cosine decay to zero (MARC's cosine schedule with warm-up)."""
    w = max(1, int(round(warmup * total)))
    if step < w:
        return (step + 1) / w
    progress = (step - w) / max(1, total - w)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _batches(groups: Groups, batch_queries: int, rng: np.random.Generator) -> Iterator[list[list[Prepared]]]:
    """Endless steps: variants in a reshuffled cycle, each contributing its (shuffled) queries as one
    sub-batch, until a step holds ``batch_queries`` queries."""
    while True:
        order = rng.permutation(len(groups.groups))
        step: list[list[Prepared]] = []
        n = 0
        for g in order:
            entries = groups.groups[int(g)]
            take = rng.permutation(len(entries))[: batch_queries - n]
            step.append([entries[int(i)] for i in take])
            n += len(take)
            if n >= batch_queries:
                yield step
                step, n = [], 0
        if step:
            yield step


def train(
    model: CellNet,
    groups: Groups,
    config: TTTConfig = TTTConfig(),
    *,
    seed: int = 0,
    checkpoints: Sequence[int] = (),
    on_checkpoint: Callable[[int], None] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, list[float]]:
    """``config.steps`` AdamW steps on the grouped queries; ``on_checkpoint(s)`` runs after ``s`` steps
    for each ``s`` in ``checkpoints`` (0 means before any step). The model is trained in place: wrap the
    call in :func:`task_scope` to get it back unchanged. Returns the per-step losses.

    >>> net = CellNet(width=4, depth=1, dilations=(1,), ctx_width=4, task_dim=4, seed=0)
    >>> len(train(net, Groups(), TTTConfig(steps=3))["loss"])     # nothing to learn from: no steps taken
    0
    """
    history: dict[str, list[float]] = {"loss": []}
    marks = set(checkpoints)
    if on_checkpoint is not None and 0 in marks:
        on_checkpoint(0)
    if config.steps == 0 or groups.n_queries == 0:
        if on_checkpoint is not None:
            for s in sorted(marks - {0}):
                on_checkpoint(s)
        return history
    named = Budget(params=config.params).select(model)
    params = list(named.values())
    opt = torch.optim.AdamW(CellNet.optimizer_groups(named, config.lr, config.colour_lr_scale),
                            weight_decay=config.weight_decay)
    rng = np.random.default_rng(seed)
    batches = _batches(groups, config.batch_queries, rng)
    model.train()
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * _schedule(step, config.steps, config.warmup)
        loss = model.loss_many([collate(sub).to(device) for sub in next(batches)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        history["loss"].append(float(loss.detach()))
        if on_checkpoint is not None and step + 1 in marks:
            model.eval()
            on_checkpoint(step + 1)
            model.train()
    model.eval()
    return history

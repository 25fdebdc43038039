"""One ARC task, four ways: the methods (a)-(d) of the benchmark, as one function a worker can run.

* ``init`` (a): the shared initialisation reads the demonstrations (in context); no weight update.
* ``ttt-demos`` (b): test-time training on the demonstrations alone, in the plain input/output format
  (each demonstration a query with no context; MARC's "no leave-one-out" ablation); predicts the same way.
* ``ttt-loo-aug`` (c): test-time training on leave-one-out and leave-two-out tasks over augmented
  variants (dihedral transforms, colour permutations), deduplicated and capped; predicts once, in context.
* ``ttt-loo-aug-vote`` (d): the model of (c), with augmented inference and hierarchical voting (top 2).

Each training run happens in a task scope that is reset afterwards, so (b) and (c) both start from the
shared initialisation. The worker sees the task *without* its test answers (the caller strips them and
scores the returned attempts), so no answer can leak into training or selection.

>>> from lifelong.arc.grids import ArcTask
>>> from lifelong.arc.model import CellNet
>>> t = ArcTask.from_pairs([([[1, 0]], [[2, 0]]), ([[0, 1]], [[0, 2]])], [[[1, 1]]], "toy")
>>> init = CellNet(width=8, depth=1, dilations=(1,), ctx_width=8, task_dim=8, seed=0).to_bytes()
>>> cfg = SolverConfig(ttt=TTTConfig(steps=4, batch_queries=4), checkpoints=(0, 4), colour_perms=0)
>>> r = solve_task(t, init, cfg, seed=0)
>>> sorted(r["attempts"]), len(r["attempts"]["ttt-loo-aug-vote"][0]) <= 2
(['init', 'ttt-demos', 'ttt-loo-aug', 'ttt-loo-aug-vote'], True)
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from lifelong.arc.augment import Augmenter, Chain, ColourPermutation, Dihedral, marc_augmenters
from lifelong.arc.grids import ArcTask
from lifelong.arc.inference import augmented_candidates, predict
from lifelong.arc.leave_out import MARC_NMAX, SingleDemonstrationWarning, demonstration_items, leave_out_items
from lifelong.arc.model import CellNet
from lifelong.arc.shapes import infer_shape_rule
from lifelong.arc.ttt import TTTConfig, group_entries, task_scope, train
from lifelong.arc.voting import vote

METHODS = ("init", "ttt-demos", "ttt-loo-aug", "ttt-loo-aug-vote")
MARC_INFERENCE = ("identity", "transpose", "flip0", "flip1", "rot90", "rot180")  # inference/preprocess.py


@dataclass(frozen=True)
class SolverConfig:
    """Everything (b)-(d) need. ``leave`` (1, 2) and ``cap`` 250 are MARC's; ``geometric`` adds the 7
    non-identity dihedral elements (MARC's basic augmenters), ``colour_perms`` that many colour-permuted
    copies of every geometric variant (MARC's ``PermuteColors``), ``size_augmenters`` MARC's upscaling,
    chained and repeat augmenters. ``inference`` names the transforms of augmented inference.

    >>> SolverConfig().leave, SolverConfig().cap, SolverConfig().to_dict()["ttt"]["weight_decay"]
    ((1, 2), 250, 0.01)
    """

    ttt: TTTConfig = TTTConfig()
    demo_steps: int | None = None  # steps for (b); None: the same as ttt.steps
    leave: tuple[int, ...] = (1, 2)
    cap: int = MARC_NMAX
    geometric: bool = True
    colour_perms: int = 1
    size_augmenters: bool = False
    inference: tuple[str, ...] = MARC_INFERENCE
    loo_contexts: bool = True
    checkpoints: tuple[int, ...] = (0, 8, 16, 32, 64)
    methods: tuple[str, ...] = METHODS
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        d = asdict(self)
        d["ttt"] = self.ttt.to_dict()
        return d


def task_seed(seed: int, task_id: str) -> int:
    """A per-task seed that depends only on the run seed and the task id (not on scheduling).

    >>> task_seed(0, "abc") == task_seed(0, "abc") != task_seed(1, "abc")
    True
    """
    return int.from_bytes(hashlib.sha256(f"{seed}:{task_id}".encode()).digest()[:4], "little")


def ttt_augmenters(config: SolverConfig, rng: np.random.Generator) -> list[Augmenter]:
    """The augmenters of method (c): geometric (and size) ones, each also in ``colour_perms`` randomly
    colour-permuted copies; the identity gets its colour-permuted copies too.

    >>> len(ttt_augmenters(SolverConfig(colour_perms=1), np.random.default_rng(0)))   # 7 + 8 colour copies
    15
    """
    base: list[Augmenter] = [Dihedral()]
    if config.geometric:
        base += [d for d in Dihedral.all() if d.name != "identity"]
    if config.size_augmenters:
        base += [a for a in marc_augmenters(basic=False)]
    out: list[Augmenter] = list(base[1:])
    for a in base:
        for _ in range(config.colour_perms):
            out.append(Chain((a, ColourPermutation.random(rng))))
    return out


def _attempts(preds: list[np.ndarray | None]) -> list[list[list[list[int]]]]:
    """One attempt per test input (none where the model made no prediction), as nested lists."""
    return [[] if p is None else [p.tolist()] for p in preds]


def solve_task(
    task: ArcTask,
    init: bytes,
    config: SolverConfig = SolverConfig(),
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Run the configured methods on one task (answers already removed); returns attempts per method
    (per test input, at most 2 grids), attempts at every checkpoint (for the steps curve), seconds per
    method and the training-set counts.

    >>> t = ArcTask.from_pairs([([[1, 1]], [[1]])], [[[2, 2]]], "crop")
    >>> init = CellNet(width=4, depth=1, dilations=(1,), ctx_width=4, task_dim=4).to_bytes()
    >>> solve_task(t, init)["expressible"]
    False
    """
    if any(e.output is not None for e in task.test):
        task = task.without_test_outputs()  # the solver never sees answers, even when handed them
    seed_t = task_seed(seed, task.id)
    torch.manual_seed(seed_t)
    model = CellNet.from_bytes(init, device=device)
    rule = infer_shape_rule(task.train)
    result: dict[str, Any] = {
        "id": task.id, "expressible": rule is not None, "rule": None if rule is None else [rule.kind, rule.fy, rule.fx],
        "attempts": {m: [[] for _ in task.test] for m in config.methods},
        "curves": {}, "seconds": {}, "info": {}, "notes": [],
    }
    if rule is None:
        result["notes"].append("no shape rule: the per-cell model cannot express this task; no attempt made")
        return result
    steps = config.ttt.steps
    demo_cfg = TTTConfig(**{**config.ttt.to_dict(), "steps": config.demo_steps if config.demo_steps is not None else steps})

    if "init" in config.methods:
        t0 = time.perf_counter()
        result["attempts"]["init"] = _attempts(predict(model, task, context="full", device=device))
        result["seconds"]["init"] = time.perf_counter() - t0

    if "ttt-demos" in config.methods:
        curve: dict[int, Any] = {}
        spent = {"total": 0.0, "last": 0.0}

        def at_demo_checkpoint(step: int) -> None:
            t = time.perf_counter()
            curve[step] = _attempts(predict(model, task, context="none", device=device))
            spent["last"] = time.perf_counter() - t
            spent["total"] += spent["last"]

        t0 = time.perf_counter()
        with task_scope(model, config.ttt.params):
            groups = group_entries(demonstration_items(task))
            train(model, groups, demo_cfg, seed=seed_t, device=device,
                  checkpoints=sorted({*(c for c in config.checkpoints if c <= demo_cfg.steps), demo_cfg.steps}),
                  on_checkpoint=at_demo_checkpoint)
        result["attempts"]["ttt-demos"] = curve[demo_cfg.steps]
        result["curves"]["ttt-demos"] = curve
        # wall time of the method itself: training plus one final prediction (not the curve's evaluations)
        result["seconds"]["ttt-demos"] = time.perf_counter() - t0 - spent["total"] + spent["last"]
        result["info"]["ttt-demos"] = {"queries": groups.n_queries}

    if "ttt-loo-aug" in config.methods or "ttt-loo-aug-vote" in config.methods:
        rng = np.random.default_rng(seed_t)
        with warnings.catch_warnings():
            # the fallback is reported in the result's notes instead of a warning from a worker process
            warnings.simplefilter("ignore", SingleDemonstrationWarning)
            items, info = leave_out_items(task, ttt_augmenters(config, rng), leave=config.leave, cap=config.cap,
                                          seed=seed_t)
        if info.get("fallback"):
            result["notes"].append(info["fallback"])
        curve_c: dict[int, Any] = {}
        curve_d: dict[int, Any] = {}
        times = {"c": 0.0, "d": 0.0, "total": 0.0}
        vote_on = "ttt-loo-aug-vote" in config.methods

        def at_checkpoint(step: int) -> None:
            t = time.perf_counter()
            curve_c[step] = _attempts(predict(model, task, context="full", device=device))
            times["c"] = time.perf_counter() - t
            times["total"] += times["c"]
            if vote_on:
                t = time.perf_counter()
                cands = augmented_candidates(model, task, [Dihedral.named(n) for n in config.inference],
                                             loo_contexts=config.loo_contexts, device=device)
                curve_d[step] = [[g.tolist() for g in vote(c)] for c in cands]
                times["d"] = time.perf_counter() - t
                times["total"] += times["d"]

        t0 = time.perf_counter()
        with task_scope(model, config.ttt.params):
            groups = group_entries(items)
            hist = train(model, groups, config.ttt, seed=seed_t, device=device,
                         checkpoints=sorted({*(c for c in config.checkpoints if c <= steps), steps}),
                         on_checkpoint=at_checkpoint)
        # Data construction and training, without the curve's evaluations; each method's own final
        # prediction (the last checkpoint's) is added back below.
        train_only = time.perf_counter() - t0 - times["total"]
        if "ttt-loo-aug" in config.methods:
            result["attempts"]["ttt-loo-aug"] = curve_c[steps]
            result["curves"]["ttt-loo-aug"] = curve_c
            result["seconds"]["ttt-loo-aug"] = train_only + times["c"]
        if vote_on:
            result["attempts"]["ttt-loo-aug-vote"] = curve_d[steps]
            result["curves"]["ttt-loo-aug-vote"] = curve_d
            result["seconds"]["ttt-loo-aug-vote"] = train_only + times["d"]
        result["info"]["ttt-loo-aug"] = {**{k: v for k, v in info.items() if k != "fallback"},
                                         "queries": groups.n_queries, "variants": len(groups.groups),
                                         "final_loss": float(np.mean(hist["loss"][-5:])) if hist["loss"] else None}
    return result

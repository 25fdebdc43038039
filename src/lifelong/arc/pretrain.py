"""The shared initialisation: the per-cell model pre-trained on ARC-AGI-1 training tasks, cached.

MARC starts test-time training from a model already fine-tuned on ARC-like tasks in the in-context
format. Ours learns the same way, from scratch, on the training split (minus the calibration hold-out,
see :func:`lifelong.arc.data.pretraining_tasks`): every step draws tasks, transforms each with a random
dihedral element and a random colour permutation (black kept), and asks for every demonstration's output
given the others (leave-one-out), or, with probability ``p_no_context``, given none (so the model also
knows the plain input/output format that method (b) fine-tunes). A training task's test pairs count as
demonstrations here: their answers are public.

Training is deterministic in the seed. The weights are cached as safetensors under
``$LIFELONG_CACHE/arc`` (default ``~/.cache/lifelong/arc``), keyed by a hash of the model configuration,
the recipe, the seed and the tasks' content, so a cached file is exactly what training would produce.

>>> from lifelong.arc.grids import ArcTask
>>> t = ArcTask.from_pairs([([[1, 0]], [[2, 0]]), ([[0, 1]], [[0, 2]])], [([[1, 1]], [[2, 2]])], "t")
>>> cfg = PretrainConfig(steps=3, model={"width": 8, "depth": 1, "dilations": [1], "ctx_width": 8, "task_dim": 8})
>>> net, info = pretrained_init([t], cfg, use_cache=False)
>>> len(info["loss"])
3
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong.arc.augment import ColourPermutation, Dihedral
from lifelong.arc.batching import Prepared, collate, prepare
from lifelong.arc.grids import ArcTask, Example
from lifelong.arc.model import ARCHITECTURE_VERSION, CellNet
from lifelong.arc.shapes import infer_shape_rule
from lifelong.arc.ttt import _schedule
from lifelong.core.hashing import json_hash

RECIPE_VERSION = 1


@dataclass(frozen=True)
class PretrainConfig:
    """Pre-training recipe (AdamW, cosine with 10% warm-up, as MARC's fine-tuning recipes).

    >>> PretrainConfig().steps, PretrainConfig(steps=5).to_dict()["steps"]
    (3000, 5)
    """

    steps: int = 3000
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.1
    batch_queries: int = 16
    max_queries_per_task: int = 6
    p_no_context: float = 0.2
    max_grad_norm: float = 1.0
    colour_lr_scale: float = 10.0
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (part of the cache key)."""
        return asdict(self)


def _demonstrations(task: ArcTask) -> tuple[Example, ...]:
    """A training task's demonstrations plus its answered test pairs."""
    return (*task.train, *(e for e in task.test if e.output is not None))


def usable(tasks: Sequence[ArcTask]) -> list[ArcTask]:
    """The tasks the model family can express (a shape rule holds over all their pairs).

    >>> crop = ArcTask.from_pairs([([[1, 1]], [[1]]), ([[2, 2]], [[2]])], [([[3, 3]], [[3]])])
    >>> usable([crop])
    []
    """
    return [t for t in tasks if infer_shape_rule(_demonstrations(t)) is not None and len(_demonstrations(t)) >= 2]


def _sample_entries(task: ArcTask, rng: np.random.Generator, cfg: PretrainConfig) -> list[Prepared]:
    """One random variant of a task: dihedral x colour permutation, then leave-one-out queries."""
    d = Dihedral.all()[int(rng.integers(8))]
    p = ColourPermutation.random(rng)
    demos = [Example(p(d(e.input)), p(d(e.output))) for e in _demonstrations(task)]  # type: ignore[arg-type]
    rule = infer_shape_rule(demos)
    assert rule is not None  # usable() checked the untransformed task; transforms keep the rule family
    cache: dict = {}
    queries = rng.permutation(len(demos))[: cfg.max_queries_per_task]
    no_context = rng.random() < cfg.p_no_context
    out = []
    for q in queries:
        ctx = () if no_context else tuple(demos[i] for i in range(len(demos)) if i != q)
        out.append(prepare(ctx, demos[q].input, demos[q].output, rule, cache))
    return out


def data_hash(tasks: Sequence[ArcTask]) -> str:
    """A hash of the tasks' content (demonstrations, test inputs and known answers).

    >>> from lifelong.arc.grids import ArcTask
    >>> a = ArcTask.from_pairs([([[1]], [[2]])], [([[1]], [[2]])], "a")
    >>> data_hash([a]) == data_hash([a.without_test_outputs()])
    False
    """
    parts = []
    for t in sorted(tasks, key=lambda t: t.id):
        answers = [e.key() for e in t.test]
        parts.append({"id": t.id, "content": t.content_hash(), "answers": json_hash([a.hex() for a in answers])})
    return json_hash(parts)


def train_init(
    tasks: Sequence[ArcTask],
    cfg: PretrainConfig = PretrainConfig(),
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Callable[[int, float], None] | None = None,
) -> tuple[CellNet, dict[str, Any]]:
    """Pre-train a fresh :class:`CellNet` on ``tasks`` (see the module docstring); returns it and a log.

    >>> t = ArcTask.from_pairs([([[1]], [[2]]), ([[3]], [[4]])], [([[5]], [[6]])], "t")
    >>> small = {"width": 4, "depth": 1, "dilations": [1], "ctx_width": 4, "task_dim": 4}
    >>> _, log = train_init([t], PretrainConfig(steps=2, model=small))
    >>> len(log["loss"]), log["tasks"]
    (2, 1)
    """
    pool = usable(tasks)
    if not pool:
        raise ValueError("no task the model family can express; pre-training needs same-shape or scaled tasks")
    model = CellNet(**cfg.model, seed=seed, device=device)
    opt = torch.optim.AdamW(CellNet.optimizer_groups(dict(model.named_parameters()), cfg.lr, cfg.colour_lr_scale),
                            weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    started = time.time()
    model.train()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * _schedule(step, cfg.steps, cfg.warmup)
        subs: list[list[Prepared]] = []
        n = 0
        while n < cfg.batch_queries:
            entries = _sample_entries(pool[int(rng.integers(len(pool)))], rng, cfg)[: cfg.batch_queries - n]
            subs.append(entries)
            n += len(entries)
        loss = model.loss_many([collate(s).to(device) for s in subs])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, losses[-1])
    model.eval()
    return model, {"loss": losses, "seconds": time.time() - started, "tasks": len(pool)}


def cache_path(tasks: Sequence[ArcTask], cfg: PretrainConfig, seed: int) -> Path:
    """Where the weights for this (tasks, recipe, seed) live in the cache.

    >>> t = ArcTask.from_pairs([([[1]], [[2]])], [([[5]], [[6]])], "t")
    >>> p = cache_path([t], PretrainConfig(), seed=0)
    >>> p.suffix, p == cache_path([t], PretrainConfig(), seed=0) != cache_path([t], PretrainConfig(), seed=1)
    ('.safetensors', True)
    """
    root = Path(os.environ.get("LIFELONG_CACHE", Path.home() / ".cache" / "lifelong"))  # as models.training
    probe = CellNet(**cfg.model)  # the full configuration, defaults included
    key = json_hash({"model": probe.config, "arch": ARCHITECTURE_VERSION, "recipe": RECIPE_VERSION, "cfg": cfg.to_dict(), "seed": seed,
                     "data": data_hash(tasks), "torch": torch.__version__.split("+")[0]})[:20]
    return root / "arc" / f"init-{key}.safetensors"


def pretrained_init(
    tasks: Sequence[ArcTask],
    cfg: PretrainConfig = PretrainConfig(),
    *,
    seed: int = 0,
    use_cache: bool = True,
    device: torch.device | str = "cpu",
    progress: Callable[[int, float], None] | None = None,
) -> tuple[CellNet, dict[str, Any]]:
    """The pre-trained initialisation, from the cache when the same training was done before.

    The info dict says whether it came from the cache and, when trained now, the losses and seconds.

    >>> import tempfile
    >>> t = ArcTask.from_pairs([([[1]], [[2]]), ([[3]], [[4]])], [([[5]], [[6]])], "t")
    >>> small = PretrainConfig(steps=2, model={"width": 4, "depth": 1, "dilations": [1], "ctx_width": 4, "task_dim": 4})
    >>> os.environ["LIFELONG_CACHE"] = tempfile.mkdtemp()
    >>> first = pretrained_init([t], small)[1]["cached"]
    >>> again = pretrained_init([t], small)[1]["cached"]
    >>> del os.environ["LIFELONG_CACHE"]
    >>> first, again
    (False, True)
    """
    from safetensors.torch import load_file, save_file

    path = cache_path(tasks, cfg, seed)
    if use_cache and path.exists():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        model = CellNet(**json.loads(meta["config"]), device=device)
        model.load_state_dict(load_file(str(path)))
        return model.eval(), {**json.loads(meta.get("info", "{}")), "cached": True, "path": str(path)}
    model, log = train_init(tasks, cfg, seed=seed, device=device, progress=progress)
    info = {"cached": False, "path": str(path) if use_cache else None, "seconds": round(log["seconds"], 1),
            "tasks": log["tasks"], "final_loss": float(np.mean(log["loss"][-50:]))}
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"config": json.dumps(model.config), "info": json.dumps(info)})
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return model, {**info, "loss": log["loss"]}

"""Consolidation: keep what the model knew while it learns something new, and merge only through the gate.

A continual learner trains in a ``session`` scope on one task after another. Three ways to keep the
old tasks, each in its own small module:

* :mod:`lifelong.weights.ewc`: elastic weight consolidation (Kirkpatrick et al. 2017), a quadratic
  anchor weighted by a per-sample diagonal Fisher, in ``separate`` and ``online`` modes.
* :mod:`lifelong.weights.interpolation`: weight interpolation between the old and the new model
  after aligning hidden units (CLeWI, Kozal et al. 2024; REPAIR-style alignment, Jordan et al. 2023).
* :mod:`lifelong.weights.replay`: experience replay from a reservoir buffer (Chaudhry et al. 2019,
  "On Tiny Episodic Memories"), the simple baseline that is hard to beat.

This module holds what they share: the error type, the MLP of the reference CPU reproduction
(64-128-128-10), a training loop that accepts a penalty and a replay buffer, accuracy with a
task-incremental head mask, and :func:`merge_through_gate`, the only way a consolidated state reaches
the global version: it builds a :class:`~lifelong.core.Change` and asks the
:class:`~lifelong.control.governor.Governor` to promote it, with the new task as the target suite and
every old task as a canary, so a merge that forgets an old task beyond tolerance is rejected and the
rejection, with its per-item evidence, lands in the ledger.

>>> import torch
>>> torch.manual_seed(0) and None
>>> net = make_mlp()
>>> [n for n, _ in net.named_children()]
['flatten', 'fc1', 'act1', 'fc2', 'act2', 'head']
>>> net(torch.rand(3, 8, 8)).shape
torch.Size([3, 10])
"""

from __future__ import annotations

import copy
import importlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lifelong.core.change import Change, Cost
from lifelong.core.errors import LifelongError

if TYPE_CHECKING:
    from lifelong.control.gate import Suite
    from lifelong.control.governor import Governor
    from lifelong.control.ledger import CommitResult
    from lifelong.weights.replay import ReservoirBuffer


class ConsolidationError(LifelongError, ValueError):
    """Consolidation cannot proceed: an empty buffer, two models that do not match, a bad setting.

    >>> issubclass(ConsolidationError, LifelongError) and issubclass(ConsolidationError, ValueError)
    True
    """


class EmptyBufferError(ConsolidationError):
    """A Fisher, an alignment or a statistics reset was asked to run on zero examples.

    >>> try:
    ...     raise EmptyBufferError("the buffer is empty")
    ... except ValueError as err:
    ...     print(type(err).__name__, err)
    EmptyBufferError the buffer is empty
    """


# The submodules import ConsolidationError from here; re-export their public names lazily (PEP 562)
# so ``from lifelong.weights.consolidation import EWC`` works without an import cycle.
_LAZY = {
    "EWC": "lifelong.weights.ewc",
    "fisher_diagonal": "lifelong.weights.ewc",
    "per_sample_grads": "lifelong.weights.ewc",
    "squared_mean_gradient": "lifelong.weights.ewc",
    "interpolate": "lifelong.weights.interpolation",
    "align_to": "lifelong.weights.interpolation",
    "recompute_norm_stats": "lifelong.weights.interpolation",
    "mlp_permutation_spec": "lifelong.weights.interpolation",
    "ReservoirBuffer": "lifelong.weights.replay",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_mlp(
    sizes: Sequence[int] = (64, 128, 128, 10), *, batch_norm: bool = False, seed: int | None = None
) -> nn.Sequential:
    """The continual-learning MLP: Flatten, then Linear [+ BatchNorm1d] + ReLU per hidden layer, then a head.

    64-128-128-10 is the reference CPU reproduction's network (weight-space notes, section 8), a
    scaled-down version of the 2x400/1000-unit MLPs used on Permuted MNIST. Layer names (``fc1``,
    ``bn1``, ``act1``, ..., ``head``) are stable so budgets and alignment specs can name them.

    >>> m = make_mlp((64, 8, 4), batch_norm=True, seed=0)
    >>> [n for n, _ in m.named_children()]
    ['flatten', 'fc1', 'bn1', 'act1', 'head']
    """
    if len(sizes) < 2:
        raise ConsolidationError(f"sizes needs an input and an output width, got {tuple(sizes)}")
    if seed is not None:
        torch.manual_seed(seed)
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    for i, (a, b) in enumerate(zip(sizes[:-2], sizes[1:-1], strict=True), start=1):
        layers.append((f"fc{i}", nn.Linear(a, b)))
        if batch_norm:
            layers.append((f"bn{i}", nn.BatchNorm1d(b)))
        layers.append((f"act{i}", nn.ReLU()))
    layers.append(("head", nn.Linear(sizes[-2], sizes[-1])))
    return nn.Sequential(OrderedDict(layers))


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with the classes outside ``mask`` set to -inf (task-incremental "multi-head" evaluation).

    ``mask`` is (C,) for one task or (N, C) per example; None leaves the logits alone.

    >>> masked_logits(torch.zeros(1, 3), torch.tensor([True, False, True]))
    tensor([[0., -inf, 0.]])
    """
    if mask is None:
        return logits
    return logits.masked_fill(~mask.to(logits.device, torch.bool), float("-inf"))


def correct(
    model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *,
    mask: np.ndarray | torch.Tensor | None = None, batch_size: int = 512, device: str = "cpu",
) -> np.ndarray:
    """Per-item correctness (0/1) of ``model`` in eval mode, restricted to ``mask``'s classes if given.

    >>> m = make_mlp((4, 3), seed=0)
    >>> correct(m, np.zeros((2, 4), np.float32), np.array([0, 1])).shape
    (2,)
    """
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y)
    mt = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(yt), batch_size):
            logits = masked_logits(model(xt[s : s + batch_size].to(device)), mt)
            out.append((logits.argmax(1).cpu() == yt[s : s + batch_size]).float())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0)


def accuracy(model: nn.Module, x: Any, y: Any, *, mask: Any = None, device: str = "cpu") -> float:
    """Mean of :func:`correct`.

    >>> accuracy(make_mlp((4, 2), seed=0), np.zeros((4, 4), np.float32), np.array([0, 0, 1, 1]))
    0.5
    """
    c = correct(model, x, y, mask=mask, device=device)
    return float(c.mean()) if c.size else float("nan")


def train_task(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    task_id: int = 0,
    epochs: int = 10,
    lr: float = 0.05,
    batch_size: int = 32,
    momentum: float = 0.0,
    optimizer: str = "sgd",
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    replay: ReservoirBuffer | None = None,
    class_masks: torch.Tensor | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, float]:
    """Train ``model`` in place on one task (SGD or Adam; a fresh optimiser per task, as CLeWI re-creates it).

    ``penalty(model)`` (e.g. :meth:`EWC.penalty <lifelong.weights.ewc.EWC.penalty>`) is added to every
    step's loss. With ``replay``, each step concatenates the current batch with an equally large batch
    drawn from the buffer (Mammoth's ER), and each current example is offered to the reservoir once, on
    its first pass, so several epochs do not count an example several times. ``class_masks`` (T x C
    booleans) restricts every example's logits to its own task's classes (task-incremental training).

    >>> m = make_mlp((4, 8, 2), seed=0)
    >>> x, y = np.random.default_rng(0).random((20, 4), np.float32), np.arange(20) % 2
    >>> sorted(train_task(m, x, y, epochs=1))
    ['loss', 'steps']
    """
    gen = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(x, dtype=torch.float32).to(device)
    yt = torch.as_tensor(y, dtype=torch.long).to(device)
    if len(yt) == 0:
        raise EmptyBufferError("train_task got no examples; each task needs at least one training item")
    tt = torch.full((len(yt),), task_id, dtype=torch.long, device=device)
    masks = None if class_masks is None else torch.as_tensor(class_masks, dtype=torch.bool).to(device)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)  # one fused call, not one per tensor
    else:
        raise ConsolidationError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    model.train()
    total, steps = 0.0, 0
    for epoch in range(epochs):
        order = torch.randperm(len(yt), generator=gen).to(device)
        for s in range(0, len(yt), batch_size):
            idx = order[s : s + batch_size]
            bx, by, bt = xt[idx], yt[idx], tt[idx]
            if replay is not None and len(replay) > 0:
                rx, ry, rt = replay.sample(len(idx), device=device)
                bx, by, bt = torch.cat([bx, rx]), torch.cat([by, ry]), torch.cat([bt, rt])
            if len(by) < 2 and has_bn:
                continue  # train-mode BatchNorm cannot normalise a single example
            logits = model(bx)
            if masks is not None:
                logits = masked_logits(logits, masks[bt])
            loss = F.cross_entropy(logits, by)
            if penalty is not None:
                loss = loss + penalty(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if replay is not None and epoch == 0:
                replay.add(xt[idx], yt[idx], task_id)
            total += float(loss.detach())
            steps += 1
    return {"loss": total / max(steps, 1), "steps": float(steps)}


def task_suite(
    name: str, x: np.ndarray, y: np.ndarray, *, mask: np.ndarray | None = None, ids: Sequence[str] | None = None
) -> Suite:
    """A gate suite for one task: per-item argmax accuracy, with the task's head mask if it has one.

    >>> s = task_suite("t0", np.zeros((3, 4), np.float32), np.array([0, 1, 1]), mask=np.array([1, 1, 0], bool))
    >>> s.score(lambda x: torch.tensor([[0.0, 1.0, 9.0]]).repeat(len(x), 1))
    [0.0, 1.0, 1.0]
    """
    from lifelong.control.gate import Suite
    from lifelong.core.hashing import sha256_hex
    from lifelong.weights.evaluation import classifier_suite

    base = classifier_suite(name, x, y, ids)
    if mask is None:
        return base
    mt = torch.as_tensor(mask, dtype=torch.bool)
    content = sha256_hex(base.content_hash.encode() + np.asarray(mask, bool).tobytes())
    return Suite(name, base.item_ids, lambda system: base.score(lambda xb: masked_logits(system(xb), mt)), content)


def _system(model: nn.Module, device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    model.to(device).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x.to(device)).cpu()

    return run


def merge_through_gate(
    governor: Governor,
    model: nn.Module,
    candidate_state: Mapping[str, torch.Tensor],
    *,
    target: Suite,
    canaries: Sequence[Suite] = (),
    learner: str = "consolidation",
    method: str = "",
    provenance: Mapping[str, Any] | None = None,
    cost: Cost | None = None,
    device: str = "cpu",
) -> CommitResult:
    """Propose ``candidate_state`` as the next global weights; the governor's gate decides.

    The champion is rebuilt from the ledger (the live version of ``governor.ref``), never from memory,
    so the comparison is against exactly what is deployed. The candidate must improve the ``target``
    suite (the new task) significantly, and no ``canaries`` suite (the old tasks) may regress beyond
    the gate's ``canary_tolerance``. Only the tensors that differ from the champion go into the
    :class:`~lifelong.core.Change`. The verdict, accepted or not, is recorded in the ledger.

    ``model`` supplies the architecture; its own weights are not used or modified. Both systems run on
    ``device``.

    >>> import os, tempfile
    >>> from lifelong.control.gate import Gate
    >>> from lifelong.control.governor import Governor
    >>> from lifelong.control.ledger import Ledger
    >>> led = Ledger.open(os.path.join(tempfile.mkdtemp(), "l.db"))
    >>> net = make_mlp((2, 2), seed=0)
    >>> with torch.no_grad():
    ...     _ = net.head.weight.copy_(torch.eye(2)), net.head.bias.zero_()
    >>> gov = Governor(led, "cl/global", gate=Gate(n_resamples=200))
    >>> _ = gov.register(net.state_dict())
    >>> x = np.array([[1, 0], [0, 1]] * 20, np.float32); y = np.array([1, 0] * 20)
    >>> better = {"head.weight": torch.tensor([[0.0, 1.0], [1.0, 0.0]]), "head.bias": torch.zeros(2)}
    >>> merge_through_gate(gov, net, better, target=task_suite("new", x, y)).accepted
    True
    """
    champion_state = governor.ledger.checkout(governor.champion())
    champion = copy.deepcopy(model)
    _load(champion, champion_state, "champion (the ledger's live version)")
    full = {**champion_state, **{k: v.detach().cpu() for k, v in candidate_state.items()}}
    candidate = copy.deepcopy(model)
    _load(candidate, full, "candidate")
    changed = {
        k: v.detach().cpu().clone()
        for k, v in candidate_state.items()
        if k not in champion_state or not torch.equal(champion_state[k], v.detach().cpu())
    }
    change = Change(
        "weights",
        "session",
        learner,
        tensors=changed,
        provenance={"method": method, "target": target.name, "canaries": [c.name for c in canaries],
                    **dict(provenance or {})},
        cost=cost or Cost(),
        base_version=governor.champion().id,
    )
    return governor.promote(change, champion=_system(champion, device), candidate=_system(candidate, device),
                            target=target, canaries=canaries)


def _load(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ConsolidationError(
            f"{what} state does not fit the model: missing {missing[:5]}, unexpected {extra[:5]}; "
            "register the full state_dict of this architecture with the governor first"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ConsolidationError(
                f"{what} tensor {k!r} has shape {tuple(v.shape)} but the model expects {tuple(expected[k].shape)}"
            )
    model.load_state_dict(dict(state))

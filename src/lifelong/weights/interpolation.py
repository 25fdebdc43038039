"""Weight interpolation between the old and the new model, after aligning hidden units (CLeWI).

CLeWI (Kozal et al. 2024, ``jedrzejkozal/weight-interpolation-cl``, alignment code taken from
KellerJordan/REPAIR) ends every task after the first with three steps:

1. **Align**: run the old and the new model on the buffer, compute for each hidden layer the centred,
   normalised correlation between every old unit and every new unit, and solve
   ``scipy.optimize.linear_sum_assignment(corr, maximize=True)``. Permute the old model's units: the
   rows of that layer's weight and bias (and its BatchNorm parameters and running statistics) and the
   matching input columns of the next layer. Hidden units of an MLP can be reordered freely, so the
   permuted old model computes exactly the old function.
2. **Interpolate**: θ = (1 − α) θ_new + α θ_old_perm over the whole ``state_dict`` (CLeWI's default
   ``--interpolation_alpha 0.5``).
3. **Reset normalisation statistics**: every BatchNorm gets ``momentum=None`` (a cumulative average),
   ``reset_running_stats()`` and one train-mode pass over the buffer, because the running statistics
   of an averaged network are not the average of the statistics (REPAIR's observation).

The interpolated model becomes both the next "old" model and the model trained on the next task.
CLeWI hard-codes ResNet-18's blocks; here the permutation spec is derived from any ``nn.Sequential`` of
``Linear`` layers with ``BatchNorm1d`` and element-wise activations in between (:func:`mlp_permutation_spec`).

Two deliberate differences, both at the endpoints: α = 0 returns a copy of the new model and α = 1 the
permuted old model, *without* a statistics reset, so that the invariants "α = 0 is the new model" and
"α = 1 computes the old function" hold exactly (a reset would re-estimate statistics that are already
those of a trained model).

>>> import torch
>>> from lifelong.weights.consolidation import make_mlp
>>> old, new = make_mlp((4, 6, 3), seed=0), make_mlp((4, 6, 3), seed=1)
>>> x = torch.rand(32, 4)
>>> torch.equal(interpolate(new, old, 0.0, buffer=x)(x), new(x))
True
>>> bool(torch.allclose(interpolate(new, old, 1.0, buffer=x)(x), old(x), atol=1e-6))
True
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lifelong.weights.consolidation import ConsolidationError, EmptyBufferError

# Modules that act on each hidden unit separately, so a permutation passes through them unchanged.
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Identity)

# REPAIR's run_corr_matrix adds 1e-4 to the product of standard deviations, so dead units correlate 0.
CORR_EPS = 1e-4


@dataclass(frozen=True)
class HiddenGroup:
    """One permutable hidden layer: the modules whose outputs it permutes, the next Linear, and where to
    read its activations.

    >>> mlp_permutation_spec(__import__("lifelong.weights.consolidation", fromlist=["x"]).make_mlp((4, 5, 2)))[0]
    HiddenGroup(outputs=('fc1',), next_input='head', tap='act1', width=5)
    """

    outputs: tuple[str, ...]  # Linear (weight rows, bias) then BatchNorm1d (params and running stats)
    next_input: str  # Linear whose weight columns follow the permutation
    tap: str  # module whose output is the hidden representation compared across models
    width: int


def mlp_permutation_spec(model: nn.Module) -> list[HiddenGroup]:
    """Which tensors share a permutation, for an ``nn.Sequential`` MLP.

    Accepted: ``Flatten`` before the first ``Linear``; between two ``Linear`` layers only
    ``BatchNorm1d`` and element-wise modules. Anything else needs a hand-written spec.

    >>> from lifelong.weights.consolidation import make_mlp
    >>> [g.outputs for g in mlp_permutation_spec(make_mlp((4, 5, 5, 2), batch_norm=True))]
    [('fc1', 'bn1'), ('fc2', 'bn2')]
    """
    if not isinstance(model, nn.Sequential):
        raise ConsolidationError(
            f"alignment derives its permutation spec from an nn.Sequential MLP, got {type(model).__name__}; "
            "build the model with make_mlp or write a spec for it"
        )
    groups: list[HiddenGroup] = []
    current: list[str] = []
    tap: str | None = None
    width = 0
    seen_linear = False
    for name, module in model.named_children():
        if isinstance(module, nn.Linear):
            if seen_linear:
                if module.in_features != width:
                    raise ConsolidationError(
                        f"layer {name!r} expects {module.in_features} inputs but the previous layer has {width} units"
                    )
                groups.append(HiddenGroup(tuple(current), name, tap or current[-1], width))
            current, tap, width, seen_linear = [name], None, module.out_features, True
        elif isinstance(module, nn.BatchNorm1d) and seen_linear:
            current.append(name)
            tap = None
        elif isinstance(module, ELEMENTWISE) and seen_linear:
            tap = name
        elif isinstance(module, nn.Flatten) and not seen_linear:
            continue
        else:
            raise ConsolidationError(
                f"module {name!r} ({type(module).__name__}) is not supported by the MLP permutation spec; "
                "use Linear, BatchNorm1d and element-wise activations, or write a spec for this model"
            )
    if not seen_linear:
        raise ConsolidationError("the model has no Linear layer to align")
    return groups


def check_compatible(new: nn.Module, old: nn.Module) -> None:
    """Raise a :class:`ConsolidationError` naming the first tensor whose name or shape differs.

    >>> from lifelong.weights.consolidation import make_mlp
    >>> check_compatible(make_mlp((4, 8, 2)), make_mlp((4, 6, 2)))
    Traceback (most recent call last):
    ...
    lifelong.weights.consolidation.ConsolidationError: cannot interpolate: layer 'fc1.weight' has shape (8, 4) in the new model but (6, 4) in the old model; both models must share one architecture
    """
    a, b = new.state_dict(), old.state_dict()
    only_new, only_old = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_new or only_old:
        raise ConsolidationError(
            f"cannot interpolate: tensors only in the new model {only_new[:5]}, only in the old model "
            f"{only_old[:5]}; both models must share one architecture"
        )
    for k in a:
        if a[k].shape != b[k].shape:
            raise ConsolidationError(
                f"cannot interpolate: layer {k!r} has shape {tuple(a[k].shape)} in the new model but "
                f"{tuple(b[k].shape)} in the old model; both models must share one architecture"
            )


def _as_buffer(buffer: Any) -> torch.Tensor:
    if buffer is None:
        raise EmptyBufferError("alignment and statistics reset need a buffer of inputs; pass buffer=...")
    x = torch.as_tensor(np.asarray(buffer) if not isinstance(buffer, torch.Tensor) else buffer, dtype=torch.float32)
    if x.shape[0] == 0:
        raise EmptyBufferError("the buffer is empty (0 examples); alignment and statistics reset need inputs")
    return x


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _activations(model: nn.Module, taps: Sequence[str], x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    x = x.to(_device_of(model))
    modules = dict(model.named_children())
    store: dict[str, list[torch.Tensor]] = {t: [] for t in taps}
    hooks = [modules[t].register_forward_hook(lambda _m, _i, out, t=t: store[t].append(out.detach().flatten(1)))
             for t in taps]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                model(x[s : s + batch_size])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {t: torch.cat(v).cpu() for t, v in store.items()}


def correlation_matrix(a: torch.Tensor, b: torch.Tensor, eps: float = CORR_EPS) -> torch.Tensor:
    """Pearson correlation between every column of ``a`` (N, P) and every column of ``b`` (N, Q): (P, Q).

    >>> x = torch.randn(100, 3)
    >>> torch.allclose(correlation_matrix(x, x).diagonal(), torch.ones(3), atol=1e-3)
    True
    """
    a = a.double() - a.double().mean(0)
    b = b.double() - b.double().mean(0)
    cov = a.T @ b / len(a)
    std = torch.outer(a.pow(2).mean(0).sqrt(), b.pow(2).mean(0).sqrt())
    return (cov / (std + eps)).float()


def match_units(new_acts: torch.Tensor, old_acts: torch.Tensor) -> np.ndarray:
    """perm such that old unit ``perm[j]`` is matched to new unit ``j`` (max total correlation).

    >>> a = torch.randn(200, 4)
    >>> match_units(a, a[:, [2, 0, 3, 1]]).tolist()
    [1, 3, 0, 2]
    """
    corr = correlation_matrix(new_acts, old_acts).numpy()
    rows, cols = linear_sum_assignment(corr, maximize=True)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return perm


def permute_units(model: nn.Module, spec: Sequence[HiddenGroup], perms: Sequence[np.ndarray]) -> nn.Module:
    """A copy of ``model`` with each hidden group's units reordered: new unit j = old unit ``perm[j]``.

    The function is unchanged: tensors are only re-indexed, never recomputed (outputs can still differ
    in the last float bit, because the next layer sums its inputs in a different order).

    >>> from lifelong.weights.consolidation import make_mlp
    >>> m = make_mlp((4, 5, 2), seed=0); x = torch.rand(3, 4)
    >>> p = permute_units(m, mlp_permutation_spec(m), [np.array([4, 3, 2, 1, 0])])
    >>> torch.allclose(p(x), m(x), atol=1e-6)
    True
    """
    out = copy.deepcopy(model)
    modules = dict(out.named_children())
    with torch.no_grad():
        for group, perm in zip(spec, perms, strict=True):
            idx = torch.as_tensor(perm, dtype=torch.long)
            for name in group.outputs:
                m = modules[name]
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    t = getattr(m, attr, None)
                    if isinstance(t, torch.Tensor):
                        t.copy_(t[idx])
            nxt = modules[group.next_input]
            nxt.weight.copy_(nxt.weight[:, idx])
    return out


def align_to(
    old: nn.Module, new: nn.Module, buffer: Any, *, batch_size: int = 512
) -> tuple[nn.Module, list[np.ndarray]]:
    """Permute ``old``'s hidden units to best match ``new``'s by activation correlation on ``buffer``.

    Returns the permuted copy of ``old`` (same function) and one permutation per hidden layer. Each
    layer's activations are permutation-equivariant in the earlier layers, so every layer can be
    matched from one forward pass of the original models.

    >>> from lifelong.weights.consolidation import make_mlp
    >>> new = make_mlp((4, 5, 2), seed=0)
    >>> scrambled = permute_units(new, mlp_permutation_spec(new), [np.array([3, 1, 4, 0, 2])])
    >>> _, perms = align_to(scrambled, new, torch.rand(256, 4))
    >>> perms[0].tolist()                 # undoes the scramble: the inverse permutation
    [3, 1, 4, 0, 2]
    """
    check_compatible(new, old)
    x = _as_buffer(buffer)
    spec = mlp_permutation_spec(old)
    taps = [g.tap for g in spec]
    acts_new = _activations(new, taps, x, batch_size)
    acts_old = _activations(old, taps, x, batch_size)
    perms = [match_units(acts_new[g.tap], acts_old[g.tap]) for g in spec]
    return permute_units(old, spec, perms), perms


def has_norm_stats(model: nn.Module) -> bool:
    """Whether the model holds BatchNorm running statistics.

    >>> from lifelong.weights.consolidation import make_mlp
    >>> has_norm_stats(make_mlp((4, 5, 2))), has_norm_stats(make_mlp((4, 5, 2), batch_norm=True))
    (False, True)
    """
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())


def recompute_norm_stats(model: nn.Module, buffer: Any, *, batch_size: int = 512) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on ``buffer`` (in place; returns the model).

    As CLeWI / REPAIR: ``momentum=None`` (cumulative average over the pass), ``reset_running_stats()``,
    one pass in train mode without gradients; momentum and mode are restored afterwards.

    >>> from lifelong.weights.consolidation import make_mlp
    >>> m = make_mlp((4, 5, 2), batch_norm=True, seed=0)
    >>> x = torch.rand(64, 4) + 3
    >>> bool((recompute_norm_stats(m, x).bn1.running_mean.abs() > 0).all())
    True
    """
    x = _as_buffer(buffer).to(_device_of(model))
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return model
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.momentum = None
        m.reset_running_stats()
    model.train()
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                xb = x[s : s + batch_size]
                if len(xb) < 2 and s > 0:
                    continue  # a trailing batch of one has no batch variance
                model(xb)
    finally:
        for m, mom in zip(norms, momenta, strict=True):
            m.momentum = mom
        model.train(was_training)
    return model


def interpolate(
    new: nn.Module,
    old: nn.Module,
    alpha: float = 0.5,
    *,
    align: bool = True,
    buffer: Any = None,
    reset_norm: bool = True,
    batch_size: int = 512,
) -> nn.Module:
    """θ = (1 − α) θ_new + α θ_old (old aligned to new first when ``align``); a new module.

    ``alpha`` weighs the old model (CLeWI's ``--interpolation_alpha``, default 0.5). ``buffer`` (the
    replay buffer's inputs in CLeWI) is needed for alignment and for the BatchNorm statistics reset; it
    is moved to the models' device, so both models must live on one device.
    Integer buffers (``num_batches_tracked``) are taken from the new model.

    >>> from lifelong.weights.consolidation import make_mlp
    >>> a, b = make_mlp((2, 2), seed=0), make_mlp((2, 2), seed=1)
    >>> mid = interpolate(a, b, 0.25, align=False)
    >>> torch.allclose(mid.head.weight, 0.75 * a.head.weight + 0.25 * b.head.weight)
    True
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConsolidationError(f"alpha must lie in [0, 1] (the weight of the old model), got {alpha}")
    check_compatible(new, old)
    if alpha == 0.0:
        return copy.deepcopy(new)
    if align:
        old = align_to(old, new, buffer, batch_size=batch_size)[0]
    merged = copy.deepcopy(new)
    state_new, state_old = new.state_dict(), old.state_dict()
    mixed = {
        k: ((1.0 - alpha) * v + alpha * state_old[k]) if v.is_floating_point() else v.clone()
        for k, v in state_new.items()
    }
    if alpha == 1.0:  # exact endpoint: the (permuted) old tensors, bit for bit
        mixed = {k: (state_old[k].clone() if v.is_floating_point() else v) for k, v in mixed.items()}
    merged.load_state_dict(mixed)
    if reset_norm and 0.0 < alpha < 1.0 and has_norm_stats(merged):
        recompute_norm_stats(merged, buffer, batch_size=batch_size)
    return merged

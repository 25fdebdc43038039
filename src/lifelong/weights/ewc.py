"""Elastic weight consolidation (Kirkpatrick et al. 2017) with a per-sample diagonal Fisher.

After task A the parameters θ*_A are anchored, each weighted by its diagonal Fisher information F_i:

    L(θ) = L_B(θ) + (λ/2) Σ_i F_i (θ_i − θ*_{A,i})²

This is the paper's objective, with the ½. **Avalanche's** ``EWCPlugin`` adds
``ewc_lambda * Σ imp (θ − θ*)²`` without the ½, so its ``ewc_lambda`` equals this module's λ / 2.

The Fisher is computed from **per-sample** gradients, ``torch.func.vmap(torch.func.grad(...))``:

* ``kind="true"``: F = E_x E_{y~p_θ(·|x)} [(∇ log p_θ(y|x))²], the expectation over classes taken
  exactly (Σ_c p(c|x) g_c²). This is the Fisher information proper (Martens 2020, "New insights and
  perspectives on the natural gradient method", argues for it over the empirical one).
* ``kind="true-sampled"``: the same with one label sampled from the model per input (Monte Carlo).
* ``kind="empirical"``: F = E_{(x,y)~data} [(∇ log p_θ(y|x))²], with the observed labels.

What it is **not**: Avalanche's ``compute_importances`` squares the gradient of each minibatch's *mean*
loss and averages those squares over minibatches (:func:`squared_mean_gradient`, kept here only to show
the difference). Per coordinate and batch of B examples, (mean_n g_n)² = mean_n g_n² − var_n g_n: the
per-example variance, which *is* the information, is subtracted. Near a minimum the per-example
gradients have mean ≈ 0 and cancel, so the squared mean gradient is about B times smaller than the
Fisher, depends on the batch size, and is zero at an exact minimum of the batch loss, where the Fisher
is not. Avalanche #1224 raised it
and the maintainers kept it as intended per-minibatch behaviour; kuc2477/pytorch-ewc #1 and
GMvandeVen/continual-learning #11 / #16 fixed the same thing (the latter with batch size 1, which is
what per-sample gradients compute without the loop).

Modes: ``"separate"`` keeps one (F_t, θ*_t) penalty per past task (Kirkpatrick et al.); ``"online"``
keeps one anchor with F ← γ F_old + F_new and θ* the latest parameters (Schwarz et al. 2018, "Progress &
Compress"; Huszár 2018 shows γ = 1 is the consistent recursive Laplace approximation, the default here).

>>> import torch
>>> from lifelong.weights.consolidation import make_mlp
>>> net = make_mlp((4, 8, 3), seed=0)
>>> x, y = torch.rand(16, 4), torch.arange(16) % 3
>>> ewc = EWC(lam=10.0)
>>> fisher = ewc.consolidate(net, x, y)
>>> float(ewc.penalty(net).detach())              # at the anchor the penalty is zero
0.0
>>> with torch.no_grad():
...     _ = net.head.bias.add_(1.0)
>>> expected = 10.0 / 2 * fisher["head.bias"].sum()
>>> bool(torch.isclose(ewc.penalty(net), expected))
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from lifelong.weights.consolidation import ConsolidationError, EmptyBufferError, masked_logits

FISHER_KINDS = ("true", "true-sampled", "empirical")
MODES = ("separate", "online")


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}


def _as_inputs(x: Any, y: Any, device: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32).to(device)
    if xt.shape[0] == 0:
        raise EmptyBufferError(
            "cannot compute a Fisher on an empty buffer (0 examples); pass the task's training inputs or a "
            "non-empty replay buffer"
        )
    yt = None if y is None else torch.as_tensor(y, dtype=torch.long).to(device)
    if yt is not None and len(yt) != len(xt):
        raise ConsolidationError(f"{len(xt)} inputs but {len(yt)} labels; give one label per input")
    return xt, yt


def per_sample_grads(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Gradient of −log p(y_n | x_n) for every example n separately: name -> (N, *param.shape).

    Runs the model functionally with its current parameters and buffers (``torch.func.functional_call``)
    in whatever mode it is in; put BatchNorm models in eval mode first (a single example has no batch
    statistics). ``mask`` restricts the softmax to a task's classes.

    >>> from lifelong.weights.consolidation import make_mlp
    >>> net = make_mlp((3, 2), seed=0)
    >>> g = per_sample_grads(net, torch.rand(5, 3), torch.tensor([0, 1, 0, 1, 1]))
    >>> g["head.weight"].shape
    torch.Size([5, 2, 3])
    """
    params = _params(model)
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def nll(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(masked_logits(logits, mask), yi.unsqueeze(0))

    return vmap(grad(nll), in_dims=(None, 0, 0))(params, x, y)


def fisher_diagonal(
    model: nn.Module,
    x: Any,
    y: Any = None,
    *,
    kind: str = "true",
    mask: torch.Tensor | np.ndarray | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher at the model's current parameters, averaged over the N examples of ``x``.

    ``kind``: ``"true"`` (exact expectation over the model's predictive distribution), ``"true-sampled"``
    (one sampled label per input, seeded) or ``"empirical"`` (the observed labels ``y``). The model is
    evaluated in eval mode (so BatchNorm uses its running statistics, the function being anchored).

    >>> from lifelong.weights.consolidation import make_mlp
    >>> net = make_mlp((3, 2), seed=0)
    >>> f = fisher_diagonal(net, torch.rand(8, 3))
    >>> sorted(f), bool((f["head.bias"] >= 0).all())
    (['head.bias', 'head.weight'], True)
    """
    if kind not in FISHER_KINDS:
        raise ConsolidationError(f"fisher kind must be one of {FISHER_KINDS}, got {kind!r}")
    xt, yt = _as_inputs(x, y, device)
    if kind == "empirical" and yt is None:
        raise ConsolidationError("the empirical Fisher needs the observed labels y; pass y or use kind='true'")
    mt = None if mask is None else torch.as_tensor(mask, dtype=torch.bool, device=device)
    classes: list[int] | None = None
    gen = torch.Generator(device="cpu").manual_seed(seed)
    fisher = {k: torch.zeros_like(v) for k, v in _params(model).items()}
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(xt), batch_size):
            xb = xt[s : s + batch_size]
            if kind == "empirical":
                assert yt is not None
                for k, g in per_sample_grads(model, xb, yt[s : s + batch_size], mask=mt).items():
                    fisher[k] += g.pow(2).sum(0)
                continue
            with torch.no_grad():
                probs = torch.softmax(masked_logits(model(xb), mt), dim=1)
            if kind == "true-sampled":
                yb = torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(1).to(device)
                for k, g in per_sample_grads(model, xb, yb, mask=mt).items():
                    fisher[k] += g.pow(2).sum(0)
                continue
            if classes is None:
                classes = list(range(probs.shape[1])) if mt is None else mt.nonzero().flatten().tolist()
            # E_{y~p}[g_y²] = Σ_c p_c g_c², exact: one vmap over every (example, class) pair, in chunks
            # small enough that the (pairs x parameters) gradient tensor stays a few tens of MB.
            cls = torch.as_tensor(list(classes), dtype=torch.long, device=device)
            xp = xb.repeat_interleave(len(cls), dim=0)
            yp = cls.repeat(len(xb))
            wp = probs[:, cls].reshape(-1)
            for s2 in range(0, len(yp), batch_size):
                sl = slice(s2, s2 + batch_size)
                for k, g in per_sample_grads(model, xp[sl], yp[sl], mask=mt).items():
                    fisher[k] += (wp[sl] @ g.pow(2).flatten(1)).view_as(fisher[k])
    finally:
        model.train(was_training)
    return {k: v / len(xt) for k, v in fisher.items()}


def squared_mean_gradient(
    model: nn.Module,
    x: Any,
    y: Any,
    *,
    batch_size: int = 32,
    mask: torch.Tensor | None = None,
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """Avalanche's EWC importance, for comparison only: mean over minibatches of (∇ mean-batch loss)².

    Not a Fisher (see the module docstring). With ``batch_size=1`` it equals the empirical Fisher.

    >>> from lifelong.weights.consolidation import make_mlp
    >>> net = make_mlp((3, 2), seed=0)
    >>> x, y = torch.rand(6, 3), torch.tensor([0, 1, 0, 1, 1, 0])
    >>> a = squared_mean_gradient(net, x, y, batch_size=1)
    >>> b = fisher_diagonal(net, x, y, kind="empirical")
    >>> bool(torch.allclose(a["head.weight"], b["head.weight"], atol=1e-7))
    True
    """
    xt, yt = _as_inputs(x, y, device)
    assert yt is not None
    params = dict(model.named_parameters())
    imp = {k: torch.zeros_like(v) for k, v in params.items() if v.requires_grad}
    was_training = model.training
    model.eval()
    batches = 0
    try:
        for s in range(0, len(xt), batch_size):
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(masked_logits(model(xt[s : s + batch_size]), mask), yt[s : s + batch_size])
            loss.backward()
            for k in imp:
                if params[k].grad is not None:
                    imp[k] += params[k].grad.detach().pow(2)
            batches += 1
        model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    return {k: v / batches for k, v in imp.items()}


class EWC:
    """The EWC penalty (λ/2) Σ F (θ − θ*)² over one or more anchors.

    ``lam`` has no transferable default: it scales with the loss reduction (mean here), the data-set
    size the Fisher is averaged over and the network; pick it on validation data (the forgetting
    benchmark does, over a grid). The default 100 is only a starting point of the right order for a
    mean-reduced cross-entropy and a Fisher averaged over examples. ``gamma`` (online mode only)
    defaults to 1 (Huszár 2018). ``fisher`` picks the estimator (see :func:`fisher_diagonal`); the
    paper's is the true Fisher. ``fisher_samples`` estimates it on a seeded random subset of the task's
    examples (None: all of them, as Avalanche does; GMvandeVen/continual-learning's ``fisher_n`` is the
    same idea), since the exact true Fisher costs one per-sample gradient per example *and class*.

    >>> EWC(mode="online", gamma=0.9).mode
    'online'
    """

    def __init__(
        self,
        lam: float = 100.0,
        *,
        mode: str = "separate",
        gamma: float = 1.0,
        fisher: str = "true",
        fisher_samples: int | None = None,
        batch_size: int = 256,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if mode not in MODES:
            raise ConsolidationError(f"EWC mode must be one of {MODES}, got {mode!r}")
        if fisher not in FISHER_KINDS:
            raise ConsolidationError(f"EWC fisher must be one of {FISHER_KINDS}, got {fisher!r}")
        if lam < 0:
            raise ConsolidationError(f"EWC lam must be >= 0, got {lam}")
        if not 0 <= gamma <= 1:
            raise ConsolidationError(f"EWC gamma must lie in [0, 1], got {gamma}")
        self.lam = float(lam)
        self.mode = mode
        self.gamma = float(gamma)
        if fisher_samples is not None and fisher_samples < 1:
            raise ConsolidationError(f"EWC fisher_samples must be >= 1 or None (all), got {fisher_samples}")
        self.fisher = fisher
        self.fisher_samples = fisher_samples
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.anchors: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
        self.tasks_seen = 0
        self._merged: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor] | None = None

    def __len__(self) -> int:
        """Number of anchors held (tasks in separate mode, at most one in online mode)."""
        return len(self.anchors)

    def consolidate(self, model: nn.Module, x: Any, y: Any = None, *, mask: Any = None) -> dict[str, torch.Tensor]:
        """Anchor the model's current parameters after a task; returns the task's new Fisher.

        >>> from lifelong.weights.consolidation import make_mlp
        >>> net, ewc = make_mlp((3, 2), seed=0), EWC(mode="online", gamma=0.5)
        >>> f1 = ewc.consolidate(net, torch.rand(4, 3)); f2 = ewc.consolidate(net, torch.rand(4, 3))
        >>> len(ewc), bool(torch.allclose(ewc.anchors[0][0]["head.bias"], 0.5 * f1["head.bias"] + f2["head.bias"]))
        (1, True)
        """
        if self.fisher_samples is not None and len(x) > self.fisher_samples:
            pick = np.sort(np.random.default_rng([self.seed, self.tasks_seen]).choice(
                len(x), self.fisher_samples, replace=False))
            x = x[pick]
            y = None if y is None else y[pick]
        new = fisher_diagonal(model, x, y, kind=self.fisher, mask=mask, batch_size=self.batch_size,
                              seed=self.seed + self.tasks_seen, device=self.device)
        theta = {k: v.detach().clone() for k, v in _params(model).items()}
        if self.mode == "online" and self.anchors:
            old, _ = self.anchors[0]
            self.anchors = [({k: self.gamma * old[k] + new[k] for k in new}, theta)]
        elif self.mode == "online":
            self.anchors = [(new, theta)]
        else:
            self.anchors.append((new, theta))
        self.tasks_seen += 1
        self._merged = None
        return new

    def _merge(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        # Σ_t F_t (θ − θ*_t)² = A (θ − m)² + c with A = Σ_t F_t, m = Σ_t F_t θ*_t / A and
        # c = Σ_t F_t θ*_t² − A m² ≥ 0: the same value and gradient as summing the T separate penalties,
        # at the cost of one, and numerically stable (no large terms cancel near the anchors).
        if self._merged is None and len(self.anchors) == 1:  # exact: zero at the anchor, no rounding
            fisher, theta = self.anchors[0]
            self._merged = (fisher, theta, torch.zeros((), device=next(iter(fisher.values())).device))
        if self._merged is None:
            first = self.anchors[0][0]
            a = {k: torch.zeros_like(v) for k, v in first.items()}
            b = {k: torch.zeros_like(v) for k, v in first.items()}
            c = torch.zeros((), dtype=torch.float64, device=next(iter(first.values())).device)
            for fisher, theta in self.anchors:
                for k, f in fisher.items():
                    a[k] += f
                    b[k] += f * theta[k]
                    c += (f.double() * theta[k].double().pow(2)).sum()
            m = {k: torch.where(a[k] > 0, b[k] / a[k].clamp_min(1e-30), torch.zeros_like(b[k])) for k in a}
            c -= sum((a[k].double() * m[k].double().pow(2)).sum() for k in a)
            self._merged = (a, m, c.clamp_min(0.0).float())
        return self._merged

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """(λ/2) Σ_anchors Σ_i F_i (θ_i − θ*_i)², differentiable in the model's parameters.

        The separate anchors are summed into one equivalent quadratic once per consolidation, so the
        per-step cost does not grow with the number of tasks.

        >>> from lifelong.weights.consolidation import make_mlp
        >>> float(EWC().penalty(make_mlp((3, 2), seed=0)))   # no anchor yet
        0.0
        """
        params = dict(model.named_parameters())
        if not self.anchors:
            return torch.zeros((), device=next(iter(params.values())).device if params else "cpu")
        a, m, c = self._merge()
        total = c
        for k, f in a.items():
            if k not in params:
                raise ConsolidationError(f"EWC anchor holds parameter {k!r} that the model lacks")
            total = total + (f * (params[k] - m[k]).pow(2)).sum()
        return 0.5 * self.lam * total

    __call__ = penalty

    # ------------------------------------------------------------------ persistence (safetensors only)
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the anchors as one safetensors file (settings in its metadata).

        >>> import tempfile
        >>> from lifelong.weights.consolidation import make_mlp
        >>> e = EWC(lam=3.0); _ = e.consolidate(make_mlp((3, 2), seed=0), torch.rand(4, 3))
        >>> p = os.path.join(tempfile.mkdtemp(), "ewc.safetensors"); e.save(p)
        >>> r = EWC.load(p); r.lam, len(r), torch.equal(r.anchors[0][0]["head.bias"], e.anchors[0][0]["head.bias"])
        (3.0, 1, True)
        """
        from safetensors.torch import save_file

        tensors = {}
        for i, (fisher, theta) in enumerate(self.anchors):
            tensors.update({f"{i}/fisher/{k}": v.detach().cpu().contiguous() for k, v in fisher.items()})
            tensors.update({f"{i}/theta/{k}": v.detach().cpu().contiguous() for k, v in theta.items()})
        meta = {"lam": self.lam, "mode": self.mode, "gamma": self.gamma, "fisher": self.fisher,
                "anchors": len(self.anchors), "tasks_seen": self.tasks_seen}
        save_file(tensors, str(path), metadata={"ewc": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> EWC:
        """Read a file written by :meth:`save` (example there); refuses files without EWC metadata."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device=device) as f:
            meta = json.loads((f.metadata() or {}).get("ewc", "{}"))
            if not meta:
                raise ConsolidationError(f"{path} is not an EWC file (no 'ewc' metadata)")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        ewc = cls(meta["lam"], mode=meta["mode"], gamma=meta["gamma"], fisher=meta["fisher"], device=device)
        for i in range(meta["anchors"]):
            fisher = _strip(tensors, f"{i}/fisher/")
            theta = _strip(tensors, f"{i}/theta/")
            ewc.anchors.append((fisher, theta))
        ewc._merged = None
        ewc.tasks_seen = meta["tasks_seen"]
        return ewc


def _strip(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

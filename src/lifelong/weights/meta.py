"""Meta-learned initialisations: MAML, first-order MAML and Reptile on ``torch.func``.

The inner loop is pure: :func:`inner_adapt` takes a model, the named tensors that may adapt (chosen by
glob, as TTT-E2E's ``spec_inner`` does, through :func:`inner_params`), a loss and a batch, and returns
*new* tensors ``p - lr * grad``; the model's own parameters are never written. Because the new
tensors stay in the autograd graph, a loss computed with them (:func:`bind` runs the model on them
with ``torch.func.functional_call``) back-propagates to the initialisation:

* second order (MAML, Finn et al. 2017): inner gradients are taken with ``create_graph=True``, so the
  meta-gradient holds the Hessian term ``-lr * H_support @ grad_query``;
* first order (FOMAML, the same paper's approximation): inner gradients are constants, so the
  meta-gradient is the query gradient at the adapted point;
* Reptile (Nichol et al. 2018): no gradient through the inner loop at all; the outer "gradient" is
  ``init - adapted``, averaged over tasks.

This replaces ``higher`` (unmaintained) and ``learn2learn`` (no Python 3.11 wheel, learn2learn #413),
as the reference notes advise (weight-space.md section 8).

>>> import torch
>>> model = torch.nn.Linear(1, 1, bias=False)
>>> with torch.no_grad():
...     _ = model.weight.fill_(0.0)
>>> loss = lambda f, b: ((f(b[0]) - b[1]) ** 2).mean()
>>> task = (torch.ones(4, 1), torch.ones(4, 1))           # support: y = x
>>> new = inner_adapt(model, inner_params(model), loss, task, steps=1, lr=0.25)
>>> round(new["weight"].item(), 3), model.weight.item()   # adapted copy; the model is untouched
(0.5, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lifelong.control.budgets import select_by_glob
from lifelong.core.errors import LifelongError

Params = dict[str, torch.Tensor]
Forward = Callable[..., Any]
# A loss receives the model bound to the current parameters (call it like the model) and a batch.
LossFn = Callable[[Forward, Any], torch.Tensor]
Task = tuple[Any, Any]  # (support batch, query batch)

ALGORITHMS = ("maml", "reptile")


class InnerLoopDivergedError(LifelongError, ValueError):
    """The inner loop produced a NaN or Inf loss or gradient.

    >>> w = torch.tensor([1.0], requires_grad=True)
    >>> try:
    ...     sgd_step({"w": w}, (w * float("nan")).sum(), lr=0.1)
    ... except LifelongError as err:
    ...     print(type(err).__name__, isinstance(err, ValueError))
    InnerLoopDivergedError True
    """


def inner_params(model: nn.Module, spec: Sequence[str] | str = ("*",), exclude: Sequence[str] = ()) -> Params:
    """The model's parameters whose names match the glob ``spec`` (every glob must match something).

    >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    >>> sorted(inner_params(m, "1.*"))
    ['1.bias', '1.weight']
    """
    spec = (spec,) if isinstance(spec, str) else tuple(spec)
    return dict(select_by_glob(dict(model.named_parameters()), spec, tuple(exclude)))


def bind(model: nn.Module, params: Mapping[str, torch.Tensor]) -> Forward:
    """The model as a function of ``params`` (names not given keep the model's own tensors).

    >>> m = torch.nn.Linear(1, 1)
    >>> f = bind(m, {"weight": torch.full((1, 1), 2.0), "bias": torch.zeros(1)})
    >>> f(torch.ones(1, 1)).item()
    2.0
    """
    params = dict(params)

    def forward(*args: Any, **kwargs: Any) -> Any:
        # strict=False: the parameters outside the inner set stay the model's own (and get outer gradients).
        return functional_call(model, params, args, kwargs, strict=False)

    return forward


def clip_by_global_norm(
    grads: Sequence[torch.Tensor], max_norm: float, batch_dims: int = 0
) -> list[torch.Tensor]:
    """Scale gradients so their joint L2 norm is at most ``max_norm`` (differentiably).

    With ``batch_dims=1`` the leading axis indexes independent tasks (documents), each clipped on its own
    norm, as TTT-E2E clips every sequence's inner gradient (``clip_gradient`` 1.0).

    >>> clip_by_global_norm([torch.tensor([3.0, 4.0])], 1.0)[0].norm().item()
    1.0
    """
    if not grads:
        return []
    if batch_dims not in (0, 1):
        raise ValueError(f"batch_dims must be 0 or 1, got {batch_dims}")
    if batch_dims == 0:
        sq = sum(g.pow(2).sum() for g in grads)
    else:
        sq = sum(g.pow(2).flatten(1).sum(1) for g in grads)
    scale = (max_norm / (torch.as_tensor(sq).sqrt() + 1e-12)).clamp(max=1.0)
    if batch_dims == 0:
        return [g * scale for g in grads]
    return [g * scale.reshape(-1, *([1] * (g.dim() - 1))) for g in grads]


def sgd_step(
    params: Mapping[str, torch.Tensor],
    loss: torch.Tensor,
    lr: float,
    *,
    first_order: bool = False,
    max_grad_norm: float | None = None,
    batch_dims: int = 0,
    step: int = 0,
    retain_graph: bool | None = None,
) -> Params:
    """One functional SGD step ``p - lr * grad(loss, p)``; the graph through it is kept unless
    ``first_order`` (then the gradient is a constant and the step's Jacobian is the identity).

    Raises :class:`InnerLoopDivergedError` on a non-finite loss or gradient (``step`` names it).
    ``retain_graph=True`` keeps the loss's graph for a later backward even in first-order mode (needed
    when the inner loss is also a term of the outer loss, as in TTT-E2E).

    >>> w = torch.tensor([1.0], requires_grad=True)
    >>> sgd_step({"w": w}, (w ** 2).sum(), lr=0.25)["w"].item()   # 1 - 0.25 * 2
    0.5
    """
    names = list(params)
    if not bool(torch.isfinite(loss.detach()).all()):
        raise InnerLoopDivergedError(
            f"the inner loop diverged at step {step}: the loss is {loss.detach().flatten()[0].item()}; "
            f"lower the inner learning rate (now {lr:g}) or set max_grad_norm"
        )
    needs = [params[n] for n in names if params[n].requires_grad]
    grads_needed = torch.autograd.grad(
        loss, needs, create_graph=not first_order, allow_unused=True,
        retain_graph=(not first_order) if retain_graph is None else (retain_graph or not first_order),
    ) if needs else ()
    it = iter(grads_needed)
    grads = [next(it) if params[n].requires_grad else None for n in names]
    grads = [torch.zeros_like(params[n]) if g is None else g for n, g in zip(names, grads, strict=True)]
    bad = [n for n, g in zip(names, grads, strict=True) if not bool(torch.isfinite(g.detach()).all())]
    if bad:
        raise InnerLoopDivergedError(
            f"the inner loop diverged at step {step}: non-finite gradient for {', '.join(bad[:4])}; "
            f"lower the inner learning rate (now {lr:g}) or set max_grad_norm"
        )
    if first_order:
        grads = [g.detach() for g in grads]
    if max_grad_norm is not None:
        grads = clip_by_global_norm(grads, max_grad_norm, batch_dims)
    return {n: params[n] - lr * g for n, g in zip(names, grads, strict=True)}


def inner_adapt(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    loss_fn: LossFn,
    batch: Any,
    steps: int = 1,
    lr: float = 0.01,
    first_order: bool = False,
    *,
    max_grad_norm: float | None = None,
    per_task: bool = False,
) -> Params:
    """``steps`` functional SGD steps on ``loss_fn(bind(model, params), batch)``; returns new tensors.

    Defaults follow Finn et al. (2017)'s sinusoid setting (one step, lr 0.01). The model is never
    modified. Tensors in ``params`` that do not require grad (e.g. detached copies) are treated as
    leaves of a fresh graph, so the call also works for plain test-time fine-tuning.

    ``per_task=True`` adapts many tasks at once: the leading axis of every tensor in ``params`` indexes
    tasks (see :func:`expand_for_tasks`; the model must accept such weights, as :class:`TaskMLP` does),
    ``loss_fn`` returns one loss per task, and each task's gradient (of its own loss) is clipped on its own.

    >>> m = torch.nn.Linear(1, 1, bias=False)
    >>> loss = lambda f, b: f(b).pow(2).mean()
    >>> new = inner_adapt(m, inner_params(m), loss, torch.ones(2, 1), steps=3, lr=0.1, first_order=True)
    >>> abs(new["weight"].item()) < abs(m.weight.item())
    True
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    current: Params = {
        n: p if p.requires_grad else p.detach().requires_grad_(True) for n, p in params.items()
    }
    with torch.enable_grad():
        for k in range(steps):
            loss = loss_fn(bind(model, current), batch)
            if per_task:
                # Tasks are independent, so the gradient of the summed losses w.r.t. task i's copy of the
                # weights is exactly the gradient of task i's own loss.
                loss = loss.sum()
            current = sgd_step(current, loss, lr, first_order=first_order, max_grad_norm=max_grad_norm,
                               batch_dims=int(per_task), step=k)
    return current


def expand_for_tasks(params: Mapping[str, torch.Tensor], n_tasks: int) -> Params:
    """One copy of every tensor per task along a new leading axis (a view: gradients reach the originals).

    >>> expand_for_tasks({"w": torch.zeros(3, 2)}, 5)["w"].shape
    torch.Size([5, 3, 2])
    """
    return {n: p.unsqueeze(0).expand(n_tasks, *p.shape) for n, p in params.items()}


class TaskMLP(nn.Module):
    """A ReLU MLP whose weights may carry a leading task axis, so many tasks adapt in one batched call
    (inputs are then (tasks, points, features)). ``sizes=(1, 40, 40, 1)`` is Finn et al.'s sinusoid net.

    >>> net = TaskMLP((1, 40, 40, 1), seed=0)
    >>> net(torch.zeros(7, 1)).shape
    torch.Size([7, 1])
    >>> w = expand_for_tasks(inner_params(net), 3)
    >>> bind(net, w)(torch.zeros(3, 7, 1)).shape
    torch.Size([3, 7, 1])
    """

    def __init__(self, sizes: Sequence[int] = (1, 40, 40, 1), *, seed: int | None = None,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output size, got {tuple(sizes)}")
        with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the global RNG
            if seed is not None:
                torch.manual_seed(seed)
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            w, b = layer.weight, layer.bias
            x = F.linear(x, w, b) if w.dim() == 2 else torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MetaLearner:
    """MAML / FOMAML / Reptile around a model whose initial weights are the meta-parameters.

    ``params`` is the glob spec of the parameters that adapt in the inner loop; every parameter of the
    model (inner or not) is a meta-parameter trained by ``outer_optimizer`` (default Adam, lr 1e-3,
    Finn et al. 2017). ``tasks`` are ``(support, query)`` pairs; the meta-loss is the mean query loss
    after adapting on the support set. For Reptile the outer optimiser receives ``init - adapted``
    (averaged over tasks) as the gradient, so SGD with lr ``eps`` is Nichol et al.'s update
    ``init += eps * (adapted - init)``; there the inner steps use support and query together.

    ``task_batched=True`` takes the tasks as one ``(support, query)`` pair whose tensors have a leading
    task axis, adapts all tasks in one batched inner loop (:func:`inner_adapt` with ``per_task``), and
    expects ``loss_fn`` to return one loss per task; the model must accept per-task weights
    (:class:`TaskMLP`). It computes the same meta-gradient as the loop over tasks, many times faster.

    >>> torch.manual_seed(0) is not None
    True
    >>> model = torch.nn.Linear(1, 1)
    >>> loss = lambda f, b: ((f(b[0]) - b[1]) ** 2).mean()
    >>> learner = MetaLearner(model, loss, inner_lr=0.1, inner_steps=1)
    >>> x = torch.linspace(-1, 1, 8)[:, None]
    >>> before = learner.meta_loss([((x, 3 * x), (x, 3 * x))]).item()
    >>> for _ in range(50):
    ...     _ = learner.meta_step([((x, 3 * x), (x, 3 * x))])
    >>> learner.meta_loss([((x, 3 * x), (x, 3 * x))]).item() < before
    True
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        *,
        params: Sequence[str] | str = ("*",),
        exclude: Sequence[str] = (),
        inner_lr: float = 0.01,
        inner_steps: int = 1,
        first_order: bool = False,
        algorithm: str = "maml",
        outer_optimizer: torch.optim.Optimizer | None = None,
        outer_lr: float = 1e-3,
        max_grad_norm: float | None = None,
        task_batched: bool = False,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        if not inner_lr > 0:
            raise ValueError(f"inner_lr must be > 0, got {inner_lr}")
        if inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1, got {inner_steps}")
        self.model = model
        self.loss_fn = loss_fn
        self.spec = (params,) if isinstance(params, str) else tuple(params)
        self.exclude = tuple(exclude)
        inner_params(model, self.spec, self.exclude)  # fail now, with the parameter names, on a bad glob
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.first_order = first_order
        self.algorithm = algorithm
        self.max_grad_norm = max_grad_norm
        self.task_batched = task_batched
        self.optimizer = outer_optimizer or torch.optim.Adam(model.parameters(), lr=outer_lr)

    @property
    def name(self) -> str:
        """``maml``, ``fomaml`` or ``reptile``."""
        if self.algorithm == "reptile":
            return "reptile"
        return "fomaml" if self.first_order else "maml"

    def adapt(self, support: Any, steps: int | None = None, lr: float | None = None,
              first_order: bool | None = None) -> Params:
        """The inner parameters after adapting the current initialisation on ``support`` (per task, with
        a leading task axis, when ``task_batched``)."""
        init = inner_params(self.model, self.spec, self.exclude)
        if self.task_batched:
            init = expand_for_tasks(init, _n_tasks(support))
        return inner_adapt(
            self.model, init, self.loss_fn, support,
            steps=self.inner_steps if steps is None else steps, lr=self.inner_lr if lr is None else lr,
            first_order=self.first_order if first_order is None else first_order,
            max_grad_norm=self.max_grad_norm, per_task=self.task_batched,
        )

    def query_loss(self, adapted: Mapping[str, torch.Tensor], query: Any) -> torch.Tensor:
        """The loss on ``query`` of the model with ``adapted`` inner parameters."""
        return self.loss_fn(bind(self.model, adapted), query)

    def meta_loss(self, tasks: Sequence[Task] | Task) -> torch.Tensor:
        """Mean post-adaptation query loss over tasks, differentiable w.r.t. the initialisation."""
        if self.task_batched:
            support, query = tasks  # type: ignore[misc]
            return self.query_loss(self.adapt(support), query).mean()
        if not tasks:
            raise ValueError("meta_loss needs at least one (support, query) task")
        losses = [self.query_loss(self.adapt(s), q) for s, q in tasks]  # type: ignore[misc]
        return torch.stack(losses).mean()

    def meta_step(self, tasks: Sequence[Task] | Task) -> float:
        """One outer update from a batch of tasks; returns the meta-loss (before the update)."""
        tasks = tasks if self.task_batched else list(tasks)  # type: ignore[assignment]
        self.optimizer.zero_grad(set_to_none=True)
        if self.algorithm == "reptile":
            return self._reptile_step(tasks)
        loss = self.meta_loss(tasks)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _reptile_step(self, tasks: Any) -> float:
        init = inner_params(self.model, self.spec, self.exclude)
        deltas = {n: torch.zeros_like(p) for n, p in init.items()}
        pairs = [tasks] if self.task_batched else tasks
        axis = 1 if self.task_batched else 0
        losses = []
        for support, query in pairs:
            adapted = self.adapt(_join(support, query, axis), first_order=True)
            with torch.no_grad():
                losses.append(float(self.query_loss(adapted, query).mean()))
                for n in init:
                    delta = init[n] - adapted[n]
                    deltas[n] += delta.mean(0) if self.task_batched else delta / len(pairs)
        for n, p in init.items():
            p.grad = deltas[n]
        self.optimizer.step()
        return float(sum(losses) / len(losses))


def _n_tasks(batch: Any) -> int:
    """The size of the leading (task) axis of the first tensor in a batch."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, tuple | list) and batch:
        return _n_tasks(batch[0])
    raise TypeError(f"a task-batched support set must hold tensors with a leading task axis; got {type(batch).__name__}")


def _join(a: Any, b: Any, axis: int = 0) -> Any:
    """Concatenate two batches of the same structure (tensors, or tuples of tensors) along ``axis``."""
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b], dim=axis)
    if isinstance(a, tuple | list):
        return type(a)(_join(x, y, axis) for x, y in zip(a, b, strict=True))
    raise TypeError(f"Reptile joins support and query batches of tensors or tuples; got {type(a).__name__}")


def evaluate_adaptation(
    model: nn.Module,
    loss_fn: LossFn,
    tasks: Iterable[Task],
    *,
    params: Sequence[str] | str = ("*",),
    steps: Sequence[int] = (0, 1, 10),
    lr: float = 0.01,
    task_batched: bool = False,
) -> dict[int, float]:
    """Mean query loss after ``k`` inner SGD steps on the support set, for each ``k`` in ``steps``.

    Test-time adaptation is plain (first-order) SGD from the model's current weights, identical for
    every initialisation being compared (Finn et al. 2017 fine-tune the pretrained baseline the same way).
    With ``task_batched``, ``tasks`` is one ``(support, query)`` pair with a leading task axis and
    ``loss_fn`` returns one loss per task.

    >>> m = torch.nn.Linear(1, 1)
    >>> x = torch.ones(4, 1)
    >>> out = evaluate_adaptation(m, lambda f, b: ((f(b[0]) - b[1]) ** 2).mean(), [((x, x), (x, x))],
    ...                           steps=(0, 5), lr=0.1)
    >>> out[5] < out[0]
    True
    """
    steps = sorted(set(steps))
    totals = {k: 0.0 for k in steps}
    n = 0
    for support, query in ([tasks] if task_batched else tasks):  # type: ignore[list-item]
        current = {name: p.detach() for name, p in inner_params(model, params).items()}
        if task_batched:
            current = {name: p.clone() for name, p in expand_for_tasks(current, _n_tasks(support)).items()}
        done = 0
        for k in steps:
            current = {n_: t.detach() for n_, t in inner_adapt(
                model, current, loss_fn, support, steps=k - done, lr=lr, first_order=True, per_task=task_batched,
            ).items()}
            done = k
            with torch.no_grad():
                totals[k] += float(loss_fn(bind(model, current), query).sum())
        n += _n_tasks(support) if task_batched else 1
    if n == 0:
        raise ValueError("evaluate_adaptation needs at least one task")
    return {k: v / n for k, v in totals.items()}

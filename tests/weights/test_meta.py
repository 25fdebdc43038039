"""Meta-learning utilities: meta-gradients against closed forms and finite differences, purity, errors."""

from __future__ import annotations

import pytest
import torch

from lifelong.core.errors import BudgetError, LifelongError
from lifelong.weights.meta import (
    InnerLoopDivergedError,
    MetaLearner,
    TaskMLP,
    bind,
    evaluate_adaptation,
    inner_adapt,
    inner_params,
)

torch.set_num_threads(1)


def mse(forward, batch):  # type: ignore[no-untyped-def]
    x, y = batch
    return 0.5 * (forward(x) - y).pow(2).mean()


def regression_task(seed: int, n: int = 6, d: int = 3) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    g = torch.Generator().manual_seed(seed)
    xs, xq = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    w_true = torch.randn(d, 1, generator=g, dtype=torch.float64)
    return (xs, xs @ w_true), (xq, xq @ w_true + 0.1)


def linear_model(d: int = 3) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(d, 1, bias=False).double()


def meta_grad(model: torch.nn.Module, support, query, lr: float, steps: int, first_order: bool):  # type: ignore[no-untyped-def]
    adapted = inner_adapt(model, inner_params(model), mse, support, steps=steps, lr=lr, first_order=first_order)
    loss = mse(bind(model, adapted), query)
    return torch.autograd.grad(loss, list(model.parameters()))


def closed_form(w: torch.Tensor, support, query, lr: float):  # type: ignore[no-untyped-def]
    """Linear regression, loss 0.5 * mean (x w - y)^2: grad = A w - b, Hessian A = X^T X / n."""
    (xs, ys), (xq, yq) = support, query
    a_s, b_s = xs.T @ xs / len(xs), xs.T @ ys / len(xs)
    a_q, b_q = xq.T @ xq / len(xq), xq.T @ yq / len(xq)
    w_adapted = w - lr * (a_s @ w - b_s)
    g_query = a_q @ w_adapted - b_q               # first-order MAML
    g_maml = (torch.eye(len(w), dtype=w.dtype) - lr * a_s) @ g_query  # second order: (I - lr H_s) g_q
    return g_maml, g_query, a_s


def test_second_order_meta_gradient_matches_closed_form() -> None:
    model = linear_model()
    support, query = regression_task(1)
    (g,) = meta_grad(model, support, query, lr=0.3, steps=1, first_order=False)
    g_maml, _, _ = closed_form(model.weight.detach().T, support, query, 0.3)
    torch.testing.assert_close(g.T, g_maml, rtol=1e-10, atol=1e-12)


def test_first_order_differs_exactly_by_the_hessian_term() -> None:
    model = linear_model()
    support, query = regression_task(2)
    lr = 0.2
    (g2,) = meta_grad(model, support, query, lr=lr, steps=1, first_order=False)
    (g1,) = meta_grad(model, support, query, lr=lr, steps=1, first_order=True)
    _, g_query, hessian = closed_form(model.weight.detach().T, support, query, lr)
    torch.testing.assert_close(g1.T, g_query, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close((g2 - g1).T, -lr * hessian @ g_query, rtol=1e-10, atol=1e-12)
    assert (g2 - g1).abs().max() > 1e-3  # the term is not negligible on this case


def test_second_order_matches_finite_differences_through_two_nonlinear_steps() -> None:
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    g = torch.Generator().manual_seed(4)
    support = (torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 1, generator=g, dtype=torch.float64))
    query = (torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 1, generator=g, dtype=torch.float64))
    grads = meta_grad(model, support, query, lr=0.5, steps=2, first_order=False)
    direction = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in model.parameters()]
    analytic = sum((gr * v).sum() for gr, v in zip(grads, direction, strict=True))

    def meta_loss_at(eps: float) -> float:
        shifted = {n: p.detach() + eps * v for (n, p), v in zip(model.named_parameters(), direction, strict=True)}
        adapted = inner_adapt(model, shifted, mse, support, steps=2, lr=0.5)
        return float(mse(bind(model, adapted), query).detach())

    eps = 1e-5
    numeric = (meta_loss_at(eps) - meta_loss_at(-eps)) / (2 * eps)
    assert abs(float(analytic) - numeric) < 1e-7


def test_inner_adapt_leaves_the_model_untouched() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(8, 3)
    adapted = inner_adapt(model, inner_params(model, "2.*"), mse, (x, torch.ones(8, 1)), steps=3, lr=0.1)
    assert sorted(adapted) == ["2.bias", "2.weight"]
    assert not torch.equal(adapted["2.weight"], model[2].weight)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
        assert p.grad is None


def test_outer_gradient_reaches_parameters_outside_the_inner_set() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x = torch.randn(8, 3)
    learner = MetaLearner(model, mse, params="2.*", inner_lr=0.1)
    learner.meta_loss([((x, torch.ones(8, 1)), (x, -torch.ones(8, 1)))]).backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0


def test_nan_in_the_inner_loop_raises_a_clear_error() -> None:
    model = torch.nn.Linear(2, 1)
    bad = (torch.tensor([[float("nan"), 1.0]]), torch.ones(1, 1))
    with pytest.raises(InnerLoopDivergedError, match="inner learning rate") as info:
        inner_adapt(model, inner_params(model), mse, bad, steps=1, lr=0.1)
    assert isinstance(info.value, LifelongError) and isinstance(info.value, ValueError)
    # Divergence through a huge step is caught at the next step's loss.
    x = torch.full((4, 2), 1e4)
    with pytest.raises(InnerLoopDivergedError, match="step"):
        inner_adapt(model, inner_params(model), mse, (x, torch.ones(4, 1)), steps=20, lr=1e6)


def test_a_glob_that_matches_nothing_names_the_parameters() -> None:
    with pytest.raises(BudgetError, match="weight"):
        MetaLearner(torch.nn.Linear(2, 1), mse, params="encoder.*")


def test_task_batched_meta_gradient_equals_the_loop_over_tasks() -> None:
    tasks = []
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        xs, xq = torch.randn(5, 1, generator=g), torch.randn(5, 1, generator=g)
        a = torch.rand(1, generator=g) + 0.5
        tasks.append(((xs, a * torch.sin(xs)), (xq, a * torch.sin(xq))))
    grads = {}
    for batched in (False, True):
        model = TaskMLP((1, 8, 8, 1), seed=0).double()
        if batched:
            loss_fn = lambda f, b: (f(b[0]) - b[1]).pow(2).mean(dim=(1, 2))  # noqa: E731
            stack = lambda i, j: torch.stack([t[i][j] for t in tasks]).double()  # noqa: E731
            batch = ((stack(0, 0), stack(0, 1)), (stack(1, 0), stack(1, 1)))
        else:
            loss_fn = lambda f, b: (f(b[0]) - b[1]).pow(2).mean()  # noqa: E731
            batch = [((s[0].double(), s[1].double()), (q[0].double(), q[1].double())) for s, q in tasks]
        learner = MetaLearner(model, loss_fn, inner_lr=0.05, inner_steps=2, task_batched=batched)
        learner.meta_loss(batch).backward()
        grads[batched] = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(grads[False], grads[True], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_reptile_with_unit_outer_sgd_lands_on_the_adapted_weights() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    x, y = torch.randn(6, 2), torch.randn(6, 1)
    learner = MetaLearner(model, mse, inner_lr=0.1, inner_steps=3, algorithm="reptile",
                          outer_optimizer=torch.optim.SGD(model.parameters(), lr=1.0))
    target = inner_adapt(model, inner_params(model), mse, (torch.cat([x, x]), torch.cat([y, y])), steps=3, lr=0.1)
    learner.meta_step([((x, y), (x, y))])
    torch.testing.assert_close(model.weight.detach(), target["weight"].detach())
    assert learner.name == "reptile"


def test_meta_training_beats_its_start_and_evaluation_is_pure() -> None:
    torch.manual_seed(0)
    model = TaskMLP((1, 16, 1), seed=0)
    loss_fn = lambda f, b: (f(b[0]) - b[1]).pow(2).mean(dim=(1, 2))  # noqa: E731
    g = torch.Generator().manual_seed(1)

    def tasks(n: int):  # type: ignore[no-untyped-def]
        slope = torch.randn(n, 1, 1, generator=g) * 2
        x = torch.rand(n, 10, 1, generator=g) * 2 - 1
        return (x[:, :5], slope * x[:, :5]), (x[:, 5:], slope * x[:, 5:])

    test = tasks(64)
    before = evaluate_adaptation(model, loss_fn, test, steps=(1,), lr=0.1, task_batched=True)[1]
    weights = [p.detach().clone() for p in model.parameters()]
    after_eval = [p.detach() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(weights, after_eval, strict=True))
    learner = MetaLearner(model, loss_fn, inner_lr=0.1, outer_lr=1e-2, task_batched=True)
    for _ in range(60):
        learner.meta_step(tasks(16))
    after = evaluate_adaptation(model, loss_fn, test, steps=(1,), lr=0.1, task_batched=True)[1]
    assert after < before

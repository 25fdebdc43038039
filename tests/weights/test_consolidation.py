"""Consolidation mechanisms: per-sample Fisher, EWC modes, aligned interpolation, replay, gated merges."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lifelong.control.gate import Gate
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger
from lifelong.core.errors import LifelongError
from lifelong.data.continual import permuted_digits
from lifelong.weights.consolidation import (
    ConsolidationError,
    EmptyBufferError,
    accuracy,
    make_mlp,
    merge_through_gate,
    task_suite,
    train_task,
)
from lifelong.weights.ewc import EWC, fisher_diagonal, per_sample_grads, squared_mean_gradient
from lifelong.weights.interpolation import (
    align_to,
    interpolate,
    mlp_permutation_spec,
    permute_units,
    recompute_norm_stats,
)
from lifelong.weights.replay import ReservoirBuffer


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def data(n: int = 24, d: int = 5, c: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


# ---------------------------------------------------------------------------------------------- Fisher
def test_per_sample_grads_match_a_loop_of_autograd_calls() -> None:
    net = make_mlp((5, 7, 3), seed=0)
    x, y = data()
    g = per_sample_grads(net, x, y)
    for n in (0, 5, 23):
        net.zero_grad()
        F.cross_entropy(net(x[n : n + 1]), y[n : n + 1]).backward()
        for k, p in net.named_parameters():
            assert torch.allclose(g[k][n], p.grad, atol=1e-6), k


def test_per_sample_fisher_is_not_the_squared_mean_gradient() -> None:
    net = make_mlp((5, 7, 3), seed=0)
    x, y = data(n=64)
    train_task(net, x, y, epochs=200, lr=0.1, batch_size=64, optimizer="adam")  # near a minimum
    emp = fisher_diagonal(net, x, y, kind="empirical")
    sq_batch = squared_mean_gradient(net, x, y, batch_size=64)  # Avalanche: (grad of the mean loss)^2
    sq_one = squared_mean_gradient(net, x, y, batch_size=1)
    total = {name: sum(float(v.sum()) for v in f.values()) for name, f in
             {"emp": emp, "batch": sq_batch, "one": sq_one}.items()}
    # At a minimum of the batch loss the mean gradient vanishes while per-example gradients do not.
    assert total["batch"] < 0.01 * total["emp"]
    # Batch size 1 is exactly the empirical Fisher: the per-sample computation without the loop.
    for k in emp:
        assert torch.allclose(sq_one[k], emp[k], atol=1e-7)


def test_true_fisher_of_a_softmax_regression_has_its_closed_form() -> None:
    # For logits = W x + b: d(-log p_y)/db_c = p_c - [y = c], so
    # true F_b = E_x[p_c (1 - p_c)] and empirical F_b = E_(x,y)[(p_c - [y = c])^2].
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    x, y = data(n=40, d=4)
    p = torch.softmax(net(x), 1).detach()
    true = fisher_diagonal(net, x, kind="true")
    emp = fisher_diagonal(net, x, y, kind="empirical")
    onehot = F.one_hot(y, 3).float()
    assert torch.allclose(true["0.bias"], (p * (1 - p)).mean(0), atol=1e-6)
    assert torch.allclose(emp["0.bias"], (p - onehot).pow(2).mean(0), atol=1e-6)
    assert torch.allclose(true["0.weight"], ((p * (1 - p)).T @ x.pow(2)) / len(x), atol=1e-6)
    assert not torch.allclose(true["0.bias"], emp["0.bias"], atol=1e-3)


def test_sampled_true_fisher_converges_to_the_exact_expectation() -> None:
    net = make_mlp((5, 6, 3), seed=1)
    x, _ = data(n=8)
    exact = fisher_diagonal(net, x, kind="true")
    sampled = fisher_diagonal(net, x.repeat(500, 1), kind="true-sampled", seed=0)
    for k in exact:
        assert torch.allclose(sampled[k], exact[k], rtol=0.15, atol=2e-3), k


def test_task_mask_restricts_the_predictive_distribution() -> None:
    net = make_mlp((5, 6, 4), seed=0)
    x, _ = data(n=10)
    mask = torch.tensor([True, True, False, False])
    f = fisher_diagonal(net, x, kind="true", mask=mask)
    # Masked-out classes get no gradient through their own logits.
    assert float(f["head.bias"][2:].abs().max()) == 0.0 and float(f["head.bias"][:2].min()) > 0


def test_empty_buffer_and_missing_labels_raise_clear_errors() -> None:
    net = make_mlp((5, 3), seed=0)
    with pytest.raises(EmptyBufferError, match="empty buffer") as info:
        fisher_diagonal(net, torch.zeros(0, 5))
    assert isinstance(info.value, LifelongError) and isinstance(info.value, ValueError)
    with pytest.raises(ConsolidationError, match="needs the observed labels"):
        fisher_diagonal(net, torch.zeros(2, 5), kind="empirical")
    with pytest.raises(ConsolidationError, match="fisher kind"):
        fisher_diagonal(net, torch.zeros(2, 5), kind="gauss-newton")
    with pytest.raises(ConsolidationError, match="mode"):
        EWC(mode="both")


# ---------------------------------------------------------------------------------------------- EWC
def test_penalty_is_half_lambda_fisher_weighted_distance() -> None:
    net = make_mlp((5, 4, 3), seed=0)
    x, y = data()
    ewc = EWC(lam=6.0)
    fisher = ewc.consolidate(net, x, y)
    anchor = {k: v.detach().clone() for k, v in net.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    expected = 3.0 * sum((fisher[k] * (p - anchor[k]).pow(2)).sum() for k, p in net.named_parameters())
    assert torch.isclose(ewc.penalty(net), expected, rtol=1e-5)
    # Avalanche's ewc_lambda (no 1/2) equals lam / 2 for the same penalty.
    avalanche_lambda = ewc.lam / 2
    avalanche = avalanche_lambda * sum((fisher[k] * (p - anchor[k]).pow(2)).sum() for k, p in net.named_parameters())
    assert torch.isclose(ewc.penalty(net), avalanche, rtol=1e-5)


def test_separate_mode_sums_one_penalty_per_task_with_the_same_gradient() -> None:
    net = make_mlp((5, 4, 3), seed=0)
    ewc = EWC(lam=2.0, mode="separate")
    anchors = []
    for t in range(3):
        x, y = data(seed=t)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        ewc.consolidate(net, x, y)
        anchors.append({k: v.detach().clone() for k, v in net.named_parameters()})
    assert len(ewc) == 3
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    params = dict(net.named_parameters())
    naive = 1.0 * sum((f[k] * (params[k] - th[k]).pow(2)).sum() for f, th in ewc.anchors for k in f)
    fast = ewc.penalty(net)
    assert torch.isclose(fast, naive, rtol=1e-5)
    g_fast = torch.autograd.grad(fast, list(params.values()))
    g_naive = torch.autograd.grad(naive, list(params.values()))
    for a, b in zip(g_fast, g_naive, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_online_mode_decays_the_old_fisher_and_keeps_one_anchor() -> None:
    net = make_mlp((5, 4, 3), seed=0)
    ewc = EWC(lam=1.0, mode="online", gamma=0.25)
    f1 = ewc.consolidate(net, *data(seed=1))
    with torch.no_grad():
        net.head.bias.add_(0.3)
    f2 = ewc.consolidate(net, *data(seed=2))
    f3 = ewc.consolidate(net, *data(seed=3))
    assert len(ewc) == 1
    fisher, theta = ewc.anchors[0]
    for k in fisher:
        assert torch.allclose(fisher[k], 0.25 * (0.25 * f1[k] + f2[k]) + f3[k], atol=1e-7)
    assert torch.equal(theta["head.bias"], net.head.bias.detach())
    assert float(ewc.penalty(net).detach()) == 0.0


def test_ewc_keeps_an_old_task_better_than_fine_tuning() -> None:
    stream = permuted_digits(n_tasks=2, seed=0)
    t0, t1 = stream.tasks
    torch.manual_seed(0)
    base = make_mlp()
    train_task(base, t0.train.x, t0.train.y, epochs=3, lr=1e-3, optimizer="adam")
    plain, anchored = copy.deepcopy(base), copy.deepcopy(base)
    ewc = EWC(lam=1000.0, fisher="empirical")
    ewc.consolidate(anchored, t0.train.x, t0.train.y)
    train_task(plain, t1.train.x, t1.train.y, epochs=3, lr=1e-3, optimizer="adam", seed=1)
    train_task(anchored, t1.train.x, t1.train.y, epochs=3, lr=1e-3, optimizer="adam", seed=1, penalty=ewc.penalty)
    assert accuracy(anchored, t0.test.x, t0.test.y) > accuracy(plain, t0.test.x, t0.test.y) + 0.1


def test_ewc_round_trips_through_safetensors(tmp_path: Path) -> None:
    net = make_mlp((5, 4, 3), seed=0)
    ewc = EWC(lam=5.0, mode="online", gamma=0.5, fisher="empirical")
    ewc.consolidate(net, *data())
    ewc.save(tmp_path / "ewc.safetensors")
    back = EWC.load(tmp_path / "ewc.safetensors")
    assert (back.lam, back.mode, back.gamma, back.fisher) == (5.0, "online", 0.5, "empirical")
    with torch.no_grad():
        net.head.weight.add_(0.2)
    assert torch.equal(back.penalty(net), ewc.penalty(net))


# ---------------------------------------------------------------------------------------------- interpolation
def scrambled(model: torch.nn.Sequential, seed: int) -> tuple[torch.nn.Module, list[np.ndarray]]:
    spec = mlp_permutation_spec(model)
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(g.width) for g in spec]
    return permute_units(model, spec, perms), perms


@pytest.mark.parametrize("batch_norm", [False, True])
def test_permuted_model_computes_the_same_function(batch_norm: bool) -> None:
    net = make_mlp((6, 9, 7, 3), batch_norm=batch_norm, seed=0).eval()
    if batch_norm:
        recompute_norm_stats(net, torch.randn(64, 6) * 2 + 1)
    perm_net, _ = scrambled(net, seed=1)
    x = torch.randn(32, 6)
    assert not torch.equal(perm_net.fc1.weight, net.fc1.weight)
    assert torch.allclose(perm_net.eval()(x), net(x), atol=1e-5)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_alignment_recovers_a_known_permutation(batch_norm: bool) -> None:
    new = make_mlp((6, 9, 7, 3), batch_norm=batch_norm, seed=0).eval()
    if batch_norm:
        recompute_norm_stats(new, torch.randn(128, 6))
    old, perms = scrambled(new, seed=2)
    aligned, found = align_to(old, new, torch.randn(512, 6))
    for p, q in zip(perms, found, strict=True):
        assert np.array_equal(p[q], np.arange(len(p)))  # found undoes the scramble
    for k, v in new.state_dict().items():
        assert torch.equal(aligned.state_dict()[k], v), k


@pytest.mark.parametrize("batch_norm", [False, True])
def test_interpolation_endpoints(batch_norm: bool) -> None:
    x = torch.randn(64, 6)
    new = make_mlp((6, 9, 7, 3), batch_norm=batch_norm, seed=0)
    old = make_mlp((6, 9, 7, 3), batch_norm=batch_norm, seed=1)
    if batch_norm:
        recompute_norm_stats(new, x + 1)
        recompute_norm_stats(old, x - 1)
    new.eval(), old.eval()
    at0 = interpolate(new, old, 0.0, buffer=x)
    for k, v in new.state_dict().items():
        assert torch.equal(at0.state_dict()[k], v), k
    at1 = interpolate(new, old, 1.0, buffer=x).eval()
    probe = torch.randn(50, 6)
    assert torch.allclose(at1(probe), old(probe), atol=1e-5)
    mid = interpolate(new, old, 0.5, buffer=x, align=False)
    assert torch.allclose(mid.fc2.weight, 0.5 * (new.fc2.weight + old.fc2.weight))


def test_statistics_are_recomputed_on_the_buffer_after_interpolation() -> None:
    x = torch.randn(200, 6) * 3 + 2
    new = make_mlp((6, 9, 3), batch_norm=True, seed=0)
    old = make_mlp((6, 9, 3), batch_norm=True, seed=1)
    mid = interpolate(new, old, 0.5, buffer=x, align=False)
    pre = mid.fc1(x).detach()
    assert torch.allclose(mid.bn1.running_mean, pre.mean(0), atol=1e-4)
    assert torch.allclose(mid.bn1.running_var, pre.var(0, unbiased=True), rtol=1e-3)
    assert mid.bn1.momentum == 0.1 and mid.training == new.training  # momentum and mode restored


def test_interpolation_refuses_mismatched_models_and_empty_buffers() -> None:
    a, b = make_mlp((6, 9, 3)), make_mlp((6, 8, 3))
    with pytest.raises(ConsolidationError, match=r"layer 'fc1.weight' has shape \(9, 6\) in the new model but \(8, 6\)"):
        interpolate(a, b, 0.5, buffer=torch.randn(4, 6))
    with pytest.raises(EmptyBufferError, match="empty"):
        interpolate(a, make_mlp((6, 9, 3)), 0.5, buffer=torch.zeros(0, 6))
    with pytest.raises(ConsolidationError, match="alpha"):
        interpolate(a, a, 1.5)
    with pytest.raises(ConsolidationError, match="not supported"):
        mlp_permutation_spec(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Softmax(1), torch.nn.Linear(2, 2)))


# ---------------------------------------------------------------------------------------------- replay
def test_reservoir_keeps_a_uniform_sample() -> None:
    counts = np.zeros(20)
    for seed in range(400):
        buf = ReservoirBuffer(5, seed=seed)
        buf.add(torch.arange(20.0).unsqueeze(1), torch.arange(20), task=0)
        counts[buf.y.numpy()] += 1
    assert len(buf) == 5 and buf.seen == 20
    assert np.allclose(counts / 400, 5 / 20, atol=0.08)  # each item kept with probability 1/4


def test_replay_buffer_records_tasks_and_refuses_empty_sampling() -> None:
    buf = ReservoirBuffer(10, seed=0)
    with pytest.raises(EmptyBufferError):
        buf.sample(3)
    buf.add(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), task=0)
    buf.add(torch.ones(4, 2), torch.ones(4, dtype=torch.long), task=1)
    _, y, t = buf.sample(8)
    assert torch.equal(y, t)
    with pytest.raises(ConsolidationError, match="do not fit"):
        buf.add(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))


# ---------------------------------------------------------------------------------------------- gate
def test_merges_reach_the_global_version_only_through_the_gate(tmp_path: Path) -> None:
    stream = permuted_digits(n_tasks=2, seed=0)
    t0, t1 = stream.tasks
    torch.manual_seed(0)
    net = make_mlp()
    train_task(net, t0.train.x, t0.train.y, epochs=8, lr=1e-3, optimizer="adam")
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        gov = Governor(ledger, "digits-cl/global", gate=Gate(canary_tolerance=0.05, n_resamples=300))
        base = gov.register(net.state_dict(), message="after task 0")
        target = task_suite("task-1", t1.val.x, t1.val.y)
        canaries = [task_suite("task-0", t0.val.x, t0.val.y)]

        forgetful = copy.deepcopy(net)  # plain fine-tuning on task 1
        train_task(forgetful, t1.train.x, t1.train.y, epochs=8, lr=1e-3, optimizer="adam", seed=1)
        rejected = merge_through_gate(gov, net, forgetful.state_dict(), target=target, canaries=canaries,
                                      method="finetune")
        assert not rejected.accepted and gov.champion().id == base.id

        kept = copy.deepcopy(net)  # replay of task 0 while learning task 1
        buf = ReservoirBuffer(len(t0.train), seed=0)
        buf.add(torch.from_numpy(t0.train.x), torch.from_numpy(t0.train.y), task=0)
        train_task(kept, t1.train.x, t1.train.y, task_id=1, epochs=8, lr=1e-3, optimizer="adam", seed=1, replay=buf)
        accepted = merge_through_gate(gov, net, kept.state_dict(), target=target, canaries=canaries, method="replay")
        assert accepted.accepted and gov.champion().id == accepted.version.id

        reject, commit = ledger.log(types=["reject"]), ledger.log(types=["commit"])
        assert len(reject) == 1 and "canary 'task-0' regressed" in reject[0].message
        verdict = ledger.verdict(reject[0].verdict_id)
        assert verdict.canaries[0].name == "task-0" and len(verdict.canaries[0].candidate) == len(t0.val)
        assert any(e.change_id == accepted.change_id for e in commit)
        live = copy.deepcopy(net)
        live.load_state_dict(ledger.checkout(gov.champion()))
        assert accuracy(live, t1.val.x, t1.val.y) == accuracy(kept, t1.val.x, t1.val.y)

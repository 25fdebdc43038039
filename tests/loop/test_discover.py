"""TTT-Discover's maths against closed forms, PUCT's bookkeeping, and the CPU loop end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lifelong.loop.discover import (
    PUCT,
    adaptive_entropic_advantages,
    entropic_advantages,
    kl_to_uniform,
    puct_scores,
    rank_prior,
    solve_beta,
)
from lifelong.loop.discover_loop import DiscoverConfig, EditPolicy, importance_sampled_pg_loss, ttt_discover
from lifelong.loop.errors import SearchInputError
from lifelong.loop.problems import merit_factor

torch.set_num_threads(1)
LN2 = math.log(2)


# ---------------------------------------------------------------------------------------------- advantages
@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_constant_rewards_give_exactly_zero_advantage(k: int) -> None:
    r = np.full(k, 0.37)
    assert np.all(entropic_advantages(r, beta=3.0) == 0.0)
    adv, beta = adaptive_entropic_advantages(r)
    assert np.all(adv == 0.0) and beta == 0.0


def test_two_sample_closed_form() -> None:
    beta = 0.7
    adv = entropic_advantages([0.0, 1.0], beta)
    # e = [exp(-beta), 1]; Z_0 = 1, Z_1 = exp(-beta)
    assert adv == pytest.approx([math.exp(-beta) - 1, math.exp(beta) - 1])


def test_leave_one_out_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(size=7)
    beta = 1.3
    w = np.exp(beta * r)
    expected = [w[i] / (np.delete(w, i).mean()) - 1 for i in range(len(r))]
    assert entropic_advantages(r, beta) == pytest.approx(expected, rel=1e-10)


def test_beta_zero_is_a_zero_advantage_and_large_beta_picks_the_max() -> None:
    r = np.array([0.1, 0.5, 0.2, 0.9])
    assert entropic_advantages(r, 0.0) == pytest.approx(np.zeros(4))
    adv = entropic_advantages(r, 200.0)
    assert np.argmax(adv) == 3 and np.all(adv[:3] < -0.99)


def test_solved_beta_meets_the_kl_target() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        r = rng.normal(size=int(rng.integers(3, 32)))
        beta = solve_beta(r)
        assert kl_to_uniform(r, beta) == pytest.approx(LN2, abs=1e-9)


def test_solved_beta_is_monotone_in_reward_spread() -> None:
    base = np.array([0.0, 0.3, 0.5, 1.0, 1.2, 2.0])
    betas = [solve_beta(c * base) for c in (0.1, 0.5, 1.0, 2.0, 10.0)]
    assert all(a > b for a, b in zip(betas, betas[1:], strict=False))  # wider spread, gentler beta
    # KL depends on beta * spread only: scaling rewards by c divides beta by c.
    assert solve_beta(4.0 * base) == pytest.approx(solve_beta(base) / 4.0, rel=1e-9)
    assert solve_beta(base + 100.0) == pytest.approx(solve_beta(base), rel=1e-9)  # shift-invariant


def test_unreachable_target_returns_beta_max() -> None:
    # Three samples, two tied at the top: KL can rise only to ln(3/2) < ln 2, so beta_max comes back.
    assert solve_beta([0.0, 1.0, 1.0], beta_max=1e6) == 1e6
    adv, beta = adaptive_entropic_advantages([0.0, 1.0, 1.0])
    assert beta == 1e6 and adv == pytest.approx([-1.0, 1.0, 1.0])  # LOO: each top sample vs (top + bottom)/2
    # Two samples: KL = ln 2 - H(sigmoid(beta)) reaches ln 2 only in the limit; in floating point the
    # bisection stops where the entropy term rounds away (beta ~ 41), as the reference's does.
    beta2 = solve_beta([0.0, 1.0])
    assert 30 < beta2 < 1e6 and kl_to_uniform([0.0, 1.0], beta2) == pytest.approx(LN2, abs=1e-12)


def test_non_finite_rewards_are_refused() -> None:
    with pytest.raises(SearchInputError):
        entropic_advantages([0.0, float("nan")])
    with pytest.raises(SearchInputError):
        solve_beta([])


# ---------------------------------------------------------------------------------------------- PUCT
def test_rank_prior_and_score_formula() -> None:
    v = np.array([2.0, 0.0, 1.0])
    assert rank_prior(v) == pytest.approx([3 / 6, 1 / 6, 2 / 6])
    s = puct_scores(v, np.array([2, 0, 0]), np.array([5.0, 0.0, 1.0]), total=3, c=1.0)
    scale = 2.0
    bonus = scale * rank_prior(v) * math.sqrt(1 + 3) / (1 + np.array([2, 0, 0]))
    assert s["Q"] == pytest.approx([5.0, 0.0, 1.0])  # visited: best descendant; else own reward
    assert s["score"] == pytest.approx(s["Q"] + bonus)


def test_visit_counts_and_best_values_reach_ancestors() -> None:
    p = PUCT()
    root = p.add_initial("r", 0.0)
    (a, _) = p.update(root, [("a", 1.0), ("x", -5.0)])
    (b, _) = p.update(a, [("b", 2.0), ("y", -5.0)])
    p.update(b, [("c", 9.0)])
    assert [p.nodes[i].visits for i in (root, a, b)] == [3, 2, 1]
    assert p.total == 3
    assert [p.nodes[i].best for i in (root, a, b)] == [9.0, 9.0, 9.0]  # best descendant, all the way up
    ref = PUCT(backprop_best=False)  # the reference code's behaviour: only the parent's m moves
    r2 = ref.add_initial("r", 0.0)
    (a2,) = ref.update(r2, [("a", 1.0)])
    ref.update(a2, [("b", 7.0)])
    assert ref.nodes[r2].best == 1.0 and ref.nodes[r2].visits == 2


def test_invalid_rollouts_count_as_visits_but_never_enter_the_buffer() -> None:
    p = PUCT()
    root = p.add_initial("r", 0.0)
    ids = p.update(root, [("bad", None), ("ok", 1.0)])
    assert ids == [None, ids[1]] and ids[1] is not None and p.nodes[root].visits == 1 and len(p) == 2


def test_lineage_blocking_spreads_picks_over_branches() -> None:
    p = PUCT(topk_children=3)
    r1, r2 = p.add_initial("r1", 0.0), p.add_initial("r2", -1.0)
    kids = p.update(r1, [("a", 5.0), ("b", 4.0), ("c", 3.0)])
    (a1,) = p.update(kids[0], [("a1", 6.0)])
    picked = p.select(3)
    lineages = [p.lineage(n.id) for n in picked]
    for i, n in enumerate(picked):
        for j in range(len(picked)):
            if i != j:
                assert n.id not in lineages[j]
    assert {n.id for n in picked} == {a1, kids[1], kids[2]}  # a1, b, c: siblings may share a round
    assert {n.id for n in p.select(4)} == {a1, kids[1], kids[2], r2}  # then the other root
    unblocked = p.select(3, block_lineage=False)
    assert len({n.id for n in unblocked}) == 3 and any(n.id in p.lineage(unblocked[0].id) for n in unblocked[1:])


def test_buffer_deduplicates_keeps_top_children_and_evicts_by_reward() -> None:
    p = PUCT(max_size=4, topk_children=2)
    root = p.add_initial("r", 0.0)
    ids = p.update(root, [("a", 1.0), ("b", 3.0), ("c", 2.0)])
    assert ids[0] is None and ids[1] is not None and ids[2] is not None  # only the top 2 children kept
    assert p.update(root, [("b", 3.0)]) == [None]  # already in the buffer
    p.update(root, [("d", 5.0), ("e", 4.0)])
    assert len(p) == 4 and root in p.nodes  # the initial state survives eviction
    assert sorted(n.state for n in p.nodes.values()) == ["b", "d", "e", "r"]
    arr = PUCT()
    s = arr.add_initial(np.array([1, -1]), 0.0)
    assert arr.add_initial(np.array([1, -1]), 0.0) == s  # arrays deduplicate by content


def test_a_round_evicts_once_after_every_parent_is_updated() -> None:
    # Evicting after the first parent's children would drop a weak parent chosen for the same round.
    p = PUCT(max_size=3, topk_children=2)
    root = p.add_initial("r", 0.0)
    weak, strong = p.update(root, [("w", 1.0), ("s", 2.0)])
    with pytest.raises(SearchInputError):
        eager = PUCT(max_size=3, topk_children=2)
        r = eager.add_initial("r", 0.0)
        w, s = eager.update(r, [("w", 1.0), ("s", 2.0)])
        eager.update(s, [("x", 5.0), ("y", 6.0)])  # evicts w
        eager.update(w, [("z", 0.5)])
    p.update(strong, [("x", 5.0), ("y", 6.0)], evict=False)
    p.update(weak, [("z", 0.5)], evict=False)  # still there
    p.evict()
    assert sorted(n.state for n in p.nodes.values()) == ["r", "x", "y"]


# ---------------------------------------------------------------------------------------------- the loop
def test_importance_sampled_loss_closed_form() -> None:
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    old = torch.tensor([-1.5, -2.0])
    adv = torch.tensor([2.0, -1.0])
    loss = importance_sampled_pg_loss(logp, old, adv)
    rho = torch.exp(logp.detach() - old)
    assert float(loss.detach()) == pytest.approx(float(-(rho * adv).mean()))
    loss.backward()
    assert logp.grad.tolist() == pytest.approx((-(rho * adv) / 2).tolist())  # d(rho A)/dlogp = rho A
    clipped = importance_sampled_pg_loss(torch.tensor([0.0]), torch.tensor([-1.0]), torch.tensor([1.0]), clip=0.2)
    assert float(clipped) == pytest.approx(-1.2)


def test_edit_policy_log_probs_are_consistent() -> None:
    pol = EditPolicy(8, max_flips=3, seed=0)
    states = torch.tensor(np.random.default_rng(0).choice([-1.0, 1.0], size=(5, 8)))
    m, pos, lp = pol.sample(states, torch.Generator().manual_seed(1))
    assert torch.allclose(pol.log_prob(states, m, pos), lp)
    for i in range(5):  # distinct positions, exactly m of them
        chosen = pos[i][pos[i] >= 0].tolist()
        assert len(chosen) == int(m[i]) == len(set(chosen))
    # The untrained policy is uniform: log p = log(1/3) + sum_j log(1/(8 - j)).
    expected = [math.log(1 / 3) + sum(math.log(1 / (8 - j)) for j in range(int(k))) for k in m]
    assert lp.tolist() == pytest.approx(expected, abs=1e-5)


def test_ttt_discover_respects_budget_is_deterministic_and_improves() -> None:
    cfg = DiscoverConfig(rounds=100, groups=4, group_size=8, seed=3)
    a = ttt_discover(merit_factor, 16, cfg, budget=300)
    b = ttt_discover(merit_factor, 16, cfg, budget=300)
    assert a.evaluations == len(a.curve) == 300
    assert a.curve == b.curve and np.array_equal(a.best_state, b.best_state)
    assert np.all(np.diff(a.curve) >= 0) and a.best_reward > a.curve[3]  # better than the starts
    assert a.best_reward == pytest.approx(float(merit_factor(a.best_state)))  # the reported best is verified
    assert a.rounds[-1]["beta_median"] is not None


@pytest.mark.parametrize("kw", [{"advantage": "fixed"}, {"advantage": "mean"}, {"learn": False}, {"start": "best"}])
def test_ablations_run(kw: dict) -> None:
    res = ttt_discover(merit_factor, 12, DiscoverConfig(rounds=4, groups=2, group_size=4, seed=0, **kw))
    assert res.evaluations == 2 + 4 * 2 * 4


def test_learning_moves_the_policy_toward_rewarded_edits() -> None:
    # Reward = number of +1s: flipping a -1 helps, so the policy should learn to flip few bits at -1s.
    def ones(batch: np.ndarray) -> np.ndarray:
        return (batch == 1).sum(axis=1).astype(float)

    start = -np.ones((1, 10), dtype=np.int64)
    res = ttt_discover(ones, 10, DiscoverConfig(rounds=30, groups=1, group_size=16, lr=0.05, start="initial", seed=0),
                       initial=start)
    assert res.rounds[-1]["mean_reward"] > res.rounds[0]["mean_reward"]
    assert res.rounds[-1]["mean_flips"] > res.rounds[0]["mean_flips"]  # from all -1s, more flips are better

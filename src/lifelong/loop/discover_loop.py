"""A small TTT-Discover loop that runs on CPU: an MLP policy that proposes bit-flip edits, trained at
test time on one problem with entropic advantages, PUCT start states and importance-sampled policy
gradient.

This is the method of "Learning to Discover at Test Time" scaled down so its mechanics can be tested
and benchmarked on two cores: the paper's policy is a LoRA on a 120B LM writing code; here it is a
small categorical MLP policy over *edits* of a binary state (how many bits to flip, then which), the
kind of policy the weight-space notes (section 7, "Faithful CPU reproduction") suggest. Everything
else is the paper's loop:

1. pick ``groups`` start states from the buffer with PUCT (lineages blocked so groups diversify);
2. sample ``group_size`` edits per start state from the current policy, keeping their log-probabilities;
3. score every child exactly (the evaluator budget counts these calls);
4. per group, entropic leave-one-out advantages with beta solved for KL = ln 2 (or fixed beta, or a
   mean baseline, for ablations);
5. one (or more) importance-sampled policy-gradient steps: loss = -mean(exp(logp - logp_old) * A);
6. record the children in the PUCT buffer (visits to all ancestors, best-descendant values).

The output is the best verified state found, not the policy (TTT-Discover keeps no weights either).

>>> from lifelong.loop.problems import merit_factor
>>> cfg = DiscoverConfig(rounds=3, groups=2, group_size=4, seed=0)
>>> res = ttt_discover(merit_factor, 12, cfg)
>>> res.evaluations, len(res.curve), res.best_reward >= res.curve[0]
(26, 26, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from lifelong.loop.discover import (
    PUCT,
    adaptive_entropic_advantages,
    entropic_advantages,
    mean_baseline_advantages,
)
from lifelong.loop.errors import SearchInputError

__all__ = ["DiscoverConfig", "DiscoverResult", "EditPolicy", "importance_sampled_pg_loss", "ttt_discover"]


def importance_sampled_pg_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, *,
                               clip: float | None = None) -> torch.Tensor:
    """``-mean(rho * A)`` with ``rho = exp(logp - logp_old)``: the policy gradient for samples drawn from
    an older (or another engine's) policy, as in the reference's ``importance_sampling`` loss. With
    ``clip`` it is PPO's clipped surrogate ``-mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A))``.

    At ``logp == logp_old`` (on-policy) the gradient is REINFORCE's: ``d loss / d logp_i = -A_i / B``.

    >>> lp = torch.zeros(2, requires_grad=True)
    >>> importance_sampled_pg_loss(lp, torch.zeros(2), torch.tensor([1.0, -3.0])).backward()
    >>> lp.grad.tolist()
    [-0.5, 1.5]
    """
    ratio = torch.exp(logp - logp_old.detach())
    surrogate = ratio * advantages
    if clip is not None:
        surrogate = torch.minimum(surrogate, torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages)
    return -surrogate.mean()


class EditPolicy(torch.nn.Module):
    """``pi(edit | state)`` for states in {-1, +1}^N: first how many bits to flip (1..``max_flips``), then
    which, one after another without replacement. The log-probability of an edit is that of the ordered
    picks (the sampled action), which is what the policy gradient needs.

    >>> pol = EditPolicy(6, max_flips=2, seed=0)
    >>> m, pos, lp = pol.sample(torch.ones(3, 6), torch.Generator().manual_seed(0))
    >>> torch.allclose(pol.log_prob(torch.ones(3, 6), m, pos), lp)
    True
    """

    def __init__(self, n: int, *, max_flips: int = 4, hidden: int = 64, seed: int = 0) -> None:
        super().__init__()
        if n < 2 or max_flips < 1 or max_flips > n:
            raise SearchInputError(f"EditPolicy needs n >= 2 and 1 <= max_flips <= n; got n={n}, max_flips={max_flips}")
        torch.manual_seed(seed)
        self.n = n
        self.max_flips = max_flips
        self.body = torch.nn.Sequential(torch.nn.Linear(n, hidden), torch.nn.Tanh())
        self.where = torch.nn.Linear(hidden, n)
        self.how_many = torch.nn.Linear(hidden, max_flips)
        # A uniform policy at the start: the search begins unbiased, as a base model samples broadly.
        for head in (self.where, self.how_many):
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)

    def _heads(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(states.float())
        return self.how_many(h).log_softmax(-1), self.where(h)

    @torch.no_grad()
    def sample(self, states: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edits for a batch of states: ``(flips (B,), positions (B, max_flips) padded with -1, logp (B,))``."""
        logp_m, where = self._heads(states)
        m = torch.multinomial(logp_m.exp(), 1, generator=gen).squeeze(1) + 1
        positions = torch.full((states.shape[0], self.max_flips), -1, dtype=torch.long)
        masked = where.clone()
        for j in range(self.max_flips):
            p = masked.log_softmax(-1).exp()
            pick = torch.multinomial(p, 1, generator=gen).squeeze(1)
            active = j < m
            positions[active, j] = pick[active]
            masked[active, pick[active]] = -math.inf
        return m, positions, self.log_prob(states, m, positions)

    def log_prob(self, states: torch.Tensor, flips: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Differentiable log-probability of given edits."""
        logp_m, where = self._heads(states)
        total = logp_m.gather(1, (flips - 1).view(-1, 1)).squeeze(1)
        mask = torch.zeros_like(where, dtype=torch.bool)
        for j in range(self.max_flips):
            active = positions[:, j] >= 0
            logits = where.masked_fill(mask, -math.inf)
            lp = logits.log_softmax(-1)
            idx = positions[:, j].clamp(min=0).view(-1, 1)
            total = total + torch.where(active, lp.gather(1, idx).squeeze(1), torch.zeros_like(total))
            mask = mask | (torch.nn.functional.one_hot(idx.squeeze(1), self.n).bool() & active.view(-1, 1))
        return total


@dataclass(frozen=True)
class DiscoverConfig:
    """Loop settings. Defaults: the reference's objective (adaptive beta, KL ln 2), PUCT c = 1 with the
    top 2 children per parent kept, temperature 1 (sampling from the policy itself), one optimiser step
    per round, no KL penalty; the learning rate and sizes suit this small policy (the paper: LoRA r=32,
    lr 4e-5, 64 groups x 8 rollouts, 50 steps).

    >>> DiscoverConfig(advantage="fixed", beta=2.0).group_size
    8
    """

    rounds: int = 50
    groups: int = 8
    group_size: int = 8
    advantage: str = "adaptive"  # "adaptive" | "fixed" | "mean"
    beta: float = 2.0  # used by advantage="fixed"
    lr: float = 3e-3
    inner_steps: int = 1
    clip: float | None = None
    learn: bool = True  # False: PUCT search with the initial (uniform) edit policy, an ablation
    start: str = "puct"  # "puct" | "best" (greedy restarts from the best state) | "initial"
    puct_c: float = 1.0
    topk_children: int = 2
    max_buffer: int = 1000
    max_flips: int = 4
    hidden: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.advantage not in ("adaptive", "fixed", "mean"):
            raise SearchInputError(f"advantage must be 'adaptive', 'fixed' or 'mean', got {self.advantage!r}")
        if self.start not in ("puct", "best", "initial"):
            raise SearchInputError(f"start must be 'puct', 'best' or 'initial', got {self.start!r}")
        if min(self.rounds, self.groups, self.group_size) < 1:
            raise SearchInputError("rounds, groups and group_size must all be >= 1")


@dataclass
class DiscoverResult:
    """The best verified state, the best-so-far curve (one entry per evaluation) and per-round records.

    >>> DiscoverResult(np.array([1, -1]), 1.0, [0.5, 1.0], 2).evaluations
    2
    """

    best_state: np.ndarray
    best_reward: float
    curve: list[float]
    evaluations: int
    rounds: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def ttt_discover(reward_fn: Callable[[np.ndarray], np.ndarray], n: int, config: DiscoverConfig | None = None, *,
                 budget: int | None = None, initial: np.ndarray | None = None,
                 callback: Callable[[dict[str, Any]], None] | None = None) -> DiscoverResult:
    """Maximise ``reward_fn`` over {-1, +1}^n with TTT-Discover. ``reward_fn`` maps a batch ``(B, n)`` to
    ``B`` finite rewards (higher is better; score an invalid state with a low finite value). ``budget``
    caps evaluator calls (the last round is cut to fit); ``initial`` gives the start states (default:
    ``groups`` random sequences, which count against the budget).

    >>> res = ttt_discover(lambda b: (b == 1).sum(axis=1).astype(float), 8,
    ...                    DiscoverConfig(rounds=2, groups=2, group_size=4), budget=10)
    >>> res.evaluations, res.best_reward == max(res.curve)
    (10, True)
    """
    cfg = config or DiscoverConfig()
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    policy = EditPolicy(n, max_flips=min(cfg.max_flips, n), hidden=cfg.hidden, seed=cfg.seed)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    buffer = PUCT(c=cfg.puct_c, max_size=cfg.max_buffer, topk_children=cfg.topk_children)
    starts = initial if initial is not None else (rng.integers(0, 2, size=(cfg.groups, n)) * 2 - 1)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1, n)
    budget = budget if budget is not None else len(starts) + cfg.rounds * cfg.groups * cfg.group_size
    curve: list[float] = []
    best_reward, best_state = -math.inf, starts[0]

    def evaluate(batch: np.ndarray) -> np.ndarray:
        nonlocal best_reward, best_state
        r = np.asarray(reward_fn(batch), dtype=np.float64).reshape(-1)
        if r.shape[0] != batch.shape[0] or not np.isfinite(r).all():
            raise SearchInputError("reward_fn must return one finite reward per state")
        for i, v in enumerate(r):
            if v > best_reward:
                best_reward, best_state = float(v), batch[i].copy()
            curve.append(best_reward)
        return r

    start_rewards = evaluate(starts[:budget])
    initial_ids = [buffer.add_initial(s, float(r)) for s, r in zip(starts, start_rewards, strict=False)]
    rounds: list[dict[str, Any]] = []
    for rnd in range(cfg.rounds):
        left = budget - len(curve)
        if left <= 0:
            break
        if cfg.start == "puct":
            parents = buffer.select(cfg.groups)
        elif cfg.start == "best":
            parents = [buffer.best()] * cfg.groups
        else:
            parents = [buffer.nodes[i] for i in initial_ids][: cfg.groups]
        # Every group gets group_size rollouts; when lineages run out, the best states start several groups.
        parents = (parents * math.ceil(cfg.groups / len(parents)))[: cfg.groups]
        per_group = cfg.group_size
        if left < cfg.groups * per_group:  # the last round: as many full groups as the budget allows
            parents = parents[: max(1, left // per_group)]
            per_group = min(per_group, left)
        states = np.repeat(np.stack([p.state for p in parents]), per_group, axis=0)
        s_t = torch.as_tensor(states, dtype=torch.float32)
        flips, positions, logp_old = policy.sample(s_t, gen)
        children = states.copy()
        for i in range(len(children)):
            idx = positions[i, : int(flips[i])].numpy()
            children[i, idx] *= -1
        rewards = evaluate(children)
        adv = np.zeros(len(children))
        betas = []
        for g in range(len(parents)):
            sl = slice(g * per_group, (g + 1) * per_group)
            if cfg.advantage == "adaptive":
                adv[sl], b = adaptive_entropic_advantages(rewards[sl])
                betas.append(b)
            elif cfg.advantage == "fixed":
                adv[sl] = entropic_advantages(rewards[sl], cfg.beta)
            else:
                adv[sl] = mean_baseline_advantages(rewards[sl])
        loss_value = 0.0
        if cfg.learn and np.any(adv != 0):
            a_t = torch.as_tensor(adv, dtype=torch.float32)
            for _ in range(cfg.inner_steps):
                loss = importance_sampled_pg_loss(policy.log_prob(s_t, flips, positions), logp_old, a_t, clip=cfg.clip)
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss_value = float(loss.detach())
        for g, p in enumerate(parents):
            sl = slice(g * per_group, (g + 1) * per_group)
            buffer.update(p.id, [(c, float(r)) for c, r in zip(children[sl], rewards[sl], strict=True)], step=rnd + 1,
                          evict=False)
        buffer.evict()
        with torch.no_grad():
            logp_m, _ = policy._heads(s_t[:1])
        record = {"round": rnd + 1, "evaluations": len(curve), "best": best_reward, "mean_reward": float(rewards.mean()),
                  "max_reward": float(rewards.max()), "beta_median": float(np.median(betas)) if betas else None,
                  "loss": loss_value, "buffer": len(buffer),
                  "mean_flips": float((logp_m.exp() * torch.arange(1, policy.max_flips + 1)).sum())}
        rounds.append(record)
        if callback is not None:
            callback(record)
    return DiscoverResult(best_state, best_reward, curve, len(curve), rounds, asdict(cfg), time.perf_counter() - t0)

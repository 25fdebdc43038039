"""TTT-Discover's maths as pure functions: entropic advantages, the adaptive beta, PUCT over start states.

Reference: "Learning to Discover at Test Time" (arXiv 2601.16175) and its code
(``test-time-training/discover``: ``compute_advantages`` in ``tinker_cookbook/rl/train.py``,
``PUCTSampler`` in ``tinker_cookbook/recipes/ttt/sampler.py``). Defaults follow that code: target
KL ln 2, beta_max 1e6, 60 bisection steps, fixed beta 2.0, PUCT c = 1, buffer of 1000 states, the top
2 children of each parent kept, G = 1.

**Entropic leave-one-out advantage** for a group of k rewards from one start state:
``e_i = exp(beta (r_i - max r))``, ``Z_i = (sum_j e_j - e_i) / (k - 1)``, ``A_i = e_i / Z_i - 1``. It is
the gradient weight of J_beta = log E[exp(beta R)], which tends to max R as beta grows: discovery
needs the best sample, not the mean. **Adaptive beta**: per group, beta is the value at which the
tilted distribution ``q_beta ∝ exp(beta r)`` over the group has KL(q_beta || uniform) = ln 2 (found by
doubling from 1, then bisection), so the update is gentle when rewards spread and sharp when they are
close.

>>> a = entropic_advantages([0.0, 1.0], beta=1.0)
>>> [round(float(x), 4) for x in a]        # closed form: [e^-1 - 1, e^1 - 1]
[-0.6321, 1.7183]
>>> adaptive_entropic_advantages([3.0, 3.0, 3.0])[0].tolist()   # no signal, no update
[0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lifelong.loop.errors import SearchInputError

__all__ = [
    "PUCT", "StateNode", "adaptive_entropic_advantages", "entropic_advantages", "kl_to_uniform",
    "mean_baseline_advantages", "puct_scores", "rank_prior", "solve_beta",
]

LN2 = math.log(2.0)
EPS = 1e-12  # floor on Z: bounds A when every other sample's weight underflows to zero


def _rewards(rewards: Sequence[float] | np.ndarray) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise SearchInputError("rewards must be a non-empty flat list (one reward per rollout of the group)")
    if not np.isfinite(r).all():
        raise SearchInputError("rewards contain NaN or Inf; score failed rollouts with a finite floor instead")
    return r


def entropic_advantages(rewards: Sequence[float] | np.ndarray, beta: float = 2.0) -> np.ndarray:
    """Leave-one-out entropic advantages at a fixed ``beta`` (the reference's fixed-beta default is 2.0).
    A group of one gets zero advantage (nothing to compare with).

    >>> entropic_advantages([5.0, 5.0]).tolist()
    [0.0, 0.0]
    """
    r = _rewards(rewards)
    if beta < 0:
        raise SearchInputError(f"beta must be >= 0, got {beta}")
    k = r.size
    if k == 1:
        return np.zeros(1)
    e = np.exp(beta * (r - r.max()))
    z = (e.sum() - e) / (k - 1)
    # The reference divides by (Z + 1e-12); flooring Z instead keeps constant groups at exactly zero.
    return e / np.maximum(z, EPS) - 1.0


def kl_to_uniform(rewards: Sequence[float] | np.ndarray, beta: float) -> float:
    """KL(q_beta || uniform) for ``q_beta ∝ exp(beta r)`` over the group; 0 at beta = 0, rising to
    ln(k / #argmax) as beta grows.

    >>> round(kl_to_uniform([0.0, 1.0], 1e9), 6) == round(math.log(2), 6)
    True
    """
    r = _rewards(rewards)
    k = r.size
    if k <= 1:
        return 0.0
    logits = beta * (r - r.max())
    logq = logits - (np.log(np.exp(logits).sum()))
    q = np.exp(logq)
    return float(max(0.0, (q * (logq + math.log(k))).sum()))


def solve_beta(rewards: Sequence[float] | np.ndarray, target_kl: float = LN2, *, beta_max: float = 1e6,
               iters: int = 60) -> float:
    """The beta at which KL(q_beta || uniform) = ``target_kl``: doubling from 1 until the KL reaches the
    target, then ``iters`` bisection steps (the upper end of the final bracket is returned, as in the
    reference). When the target cannot be reached (constant rewards; or two rewards, whose KL only
    approaches ln 2), ``beta_max`` is returned.

    KL depends on beta times the reward spread, so scaling rewards by c divides beta by c.

    >>> b = solve_beta([0.0, 1.0, 2.0, 3.0])
    >>> abs(kl_to_uniform([0.0, 1.0, 2.0, 3.0], b) - math.log(2)) < 1e-9
    True
    """
    r = _rewards(rewards)
    if r.size < 2:
        return 0.0
    lo, hi = 0.0, 1.0
    if kl_to_uniform(r, hi) < target_kl:
        while hi < beta_max and kl_to_uniform(r, hi) < target_kl:
            lo, hi = hi, min(hi * 2.0, beta_max)
        if kl_to_uniform(r, hi) < target_kl:
            return float(beta_max)  # best effort: as sharp as allowed
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if kl_to_uniform(r, mid) < target_kl:
            lo = mid
        else:
            hi = mid
    return float(hi)


def adaptive_entropic_advantages(rewards: Sequence[float] | np.ndarray, target_kl: float = LN2, *,
                                 beta_max: float = 1e6, iters: int = 60) -> tuple[np.ndarray, float]:
    """Entropic advantages at the solved beta; returns ``(advantages, beta)``.

    >>> adv, beta = adaptive_entropic_advantages([0.0, 0.0, 0.0, 1.0])
    >>> int(np.argmax(adv)), beta > 0
    (3, True)
    """
    r = _rewards(rewards)
    if np.ptp(r) == 0:  # constant rewards: q is uniform for every beta, the advantage is exactly zero
        return np.zeros(r.size), 0.0
    beta = solve_beta(r, target_kl, beta_max=beta_max, iters=iters)
    return entropic_advantages(r, beta), beta


def mean_baseline_advantages(rewards: Sequence[float] | np.ndarray) -> np.ndarray:
    """``r - mean(r)``: the GRPO-style baseline, for comparison.

    >>> mean_baseline_advantages([1.0, 3.0]).tolist()
    [-1.0, 1.0]
    """
    r = _rewards(rewards)
    return r - r.mean()


# ---------------------------------------------------------------------------------------------- PUCT
def rank_prior(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rank prior ``P_i ∝ N - rank_i`` (rank 0 = highest value), normalised to sum to 1.

    >>> rank_prior([1.0, 3.0, 2.0]).round(4).tolist()
    [0.1667, 0.5, 0.3333]
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    ranks = np.argsort(np.argsort(-v, kind="stable"), kind="stable")
    w = (v.size - ranks).astype(np.float64)
    return w / w.sum()


def puct_scores(values: np.ndarray, visits: np.ndarray, best: np.ndarray, total: int, *, c: float = 1.0,
                group: int = 1, scale_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``score_i = Q_i + c * scale * P_i * sqrt(1 + T/G) / (1 + n_i/G)`` with ``Q_i`` = best descendant
    reward if visited else own reward, ``P`` the rank prior, ``scale = max R - min R`` over the states
    in ``scale_mask`` (the non-initial ones; floor 1e-6). Returns score, Q, P and bonus arrays.

    >>> s = puct_scores(np.array([0.0, 1.0]), np.array([0, 0]), np.array([0.0, 1.0]), 0)
    >>> s["score"].round(4).tolist()     # scale 1, P = [1/3, 2/3], bonus = P
    [0.3333, 1.6667]
    """
    v = np.asarray(values, dtype=np.float64)
    n = np.asarray(visits, dtype=np.float64)
    m = np.asarray(best, dtype=np.float64)
    pool = v[scale_mask] if scale_mask is not None and np.any(scale_mask) else v
    scale = float(max(pool.max() - pool.min(), 1e-6)) if pool.size else 1.0
    p = rank_prior(v)
    q = np.where(n > 0, m, v)
    bonus = c * scale * p * math.sqrt(1.0 + total / group) / (1.0 + n / group)
    return {"score": q + bonus, "Q": q, "P": p, "bonus": bonus, "scale": np.array(scale)}


@dataclass
class StateNode:
    """A state in the buffer: its reward, parent, ancestors (nearest first) and PUCT statistics.

    >>> StateNode(0, "s", 1.0).visits
    0
    """

    id: int
    state: Any
    reward: float
    parent: int | None = None
    ancestors: tuple[int, ...] = ()
    initial: bool = False
    step: int = 0
    visits: int = 0
    best: float | None = None  # best reward among descendants (m in the reference)
    info: dict[str, Any] = field(default_factory=dict)


class PUCT:
    """A buffer of evaluated states and PUCT selection of start states.

    - :meth:`update` records a group of children of one parent: the parent and **all its ancestors** gain
      one visit (``T`` gains one), the parent's best-descendant value ``m`` becomes the best child reward
      (with ``backprop_best=True``, the default, ancestors' ``m`` too, so Q is the best *descendant*; the
      reference code updates only the parent: ``backprop_best=False``); the top ``topk_children``
      children not already in the buffer (deduplicated by ``key``) are added.
    - :meth:`select` picks the k highest scores; with k > 1 each pick **blocks its whole lineage**
      (ancestors and descendants), so parallel groups start from different branches.
    - The buffer keeps at most ``max_size`` states: the initial ones, then the highest rewards.

    >>> p = PUCT()
    >>> root = p.add_initial("a", 0.0)
    >>> kids = p.update(root, [("ab", 1.0), ("ac", 0.5)])
    >>> p.nodes[root].visits, p.nodes[root].best, p.select(1)[0].state
    (1, 1.0, 'ab')
    """

    def __init__(self, *, c: float = 1.0, max_size: int = 1000, topk_children: int = 2, group: int = 1,
                 key: Callable[[Any], Hashable] | None = None, backprop_best: bool = True) -> None:
        if max_size < 1 or topk_children < 0 or c < 0:
            raise SearchInputError(f"PUCT needs max_size >= 1, topk_children >= 0, c >= 0; got {max_size}, "
                                   f"{topk_children}, {c}")
        self.c = c
        self.max_size = max_size
        self.topk_children = topk_children
        self.group = group
        self.key = key or _default_key
        self.backprop_best = backprop_best
        self.nodes: dict[int, StateNode] = {}
        self.total = 0  # T
        self._keys: dict[Hashable, int] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self.nodes)

    def _insert(self, state: Any, reward: float, parent: StateNode | None, initial: bool, step: int) -> int | None:
        k = self.key(state)
        if k in self._keys:
            return None
        node = StateNode(self._next, state, float(reward), parent.id if parent else None,
                         (parent.id, *parent.ancestors) if parent else (), initial, step)
        self.nodes[node.id] = node
        self._keys[k] = node.id
        self._next += 1
        return node.id

    def add_initial(self, state: Any, reward: float) -> int:
        """Add a starting state (kept whatever the buffer size); returns its id (the existing id if a
        state with the same key is already there)."""
        nid = self._insert(state, reward, None, True, 0)
        return nid if nid is not None else self._keys[self.key(state)]

    def update(self, parent_id: int, children: Sequence[tuple[Any, float | None]], step: int = 0, *,
               evict: bool = True) -> list[int | None]:
        """Record the children of one parent (``reward=None`` for an invalid rollout: it still counts as a
        visit, it never enters the buffer). Returns the new ids (None where not added).

        A round that updates several parents passes ``evict=False`` and calls :meth:`evict` once at the
        end: evicting after the first parent could drop a parent selected for the same round."""
        if parent_id not in self.nodes:
            raise SearchInputError(f"parent {parent_id} is not in the buffer (evicted or never added)")
        parent = self.nodes[parent_id]
        valid = [r for _, r in children if r is not None]
        for aid in (parent.id, *parent.ancestors):
            node = self.nodes.get(aid)
            if node is None:
                continue
            node.visits += 1
            if valid and (aid == parent.id or self.backprop_best):
                y = max(valid)
                node.best = y if node.best is None else max(node.best, y)
        self.total += 1
        order = sorted((i for i, (_, r) in enumerate(children) if r is not None),
                       key=lambda i: children[i][1], reverse=True)  # type: ignore[arg-type, return-value]
        keep = set(order[: self.topk_children]) if self.topk_children else set(order)
        ids: list[int | None] = []
        for i, (state, reward) in enumerate(children):
            ids.append(self._insert(state, reward, parent, False, step) if i in keep else None)
        if evict:
            self.evict()
        return ids

    def evict(self) -> None:
        """Shrink to ``max_size``: initial states stay, the rest are kept by reward."""
        if len(self.nodes) <= self.max_size:
            return
        initial = [n.id for n in self.nodes.values() if n.initial]
        rest = sorted((n for n in self.nodes.values() if not n.initial), key=lambda n: n.reward, reverse=True)
        keep = set(initial) | {n.id for n in rest[: max(0, self.max_size - len(initial))]}
        for nid in [i for i in self.nodes if i not in keep]:
            node = self.nodes.pop(nid)
            self._keys.pop(self.key(node.state), None)

    def table(self) -> tuple[list[StateNode], dict[str, np.ndarray]]:
        """Nodes in buffer order and their PUCT score arrays (see :func:`puct_scores`)."""
        nodes = list(self.nodes.values())
        values = np.array([n.reward for n in nodes])
        visits = np.array([n.visits for n in nodes])
        best = np.array([n.best if n.best is not None else n.reward for n in nodes])
        mask = np.array([not n.initial for n in nodes])
        return nodes, puct_scores(values, visits, best, self.total, c=self.c, group=self.group, scale_mask=mask)

    def lineage(self, node_id: int) -> set[int]:
        """The node, its ancestors and all its descendants in the buffer."""
        node = self.nodes[node_id]
        out = {node.id, *node.ancestors}
        out.update(n.id for n in self.nodes.values() if node.id in n.ancestors)
        return out

    def select(self, k: int = 1, *, block_lineage: bool = True) -> list[StateNode]:
        """The ``k`` start states with the highest scores (ties broken by reward); with k > 1 and
        ``block_lineage``, no two picks share a lineage. Fewer than k come back when the lineages run out."""
        if not self.nodes:
            raise SearchInputError("the PUCT buffer is empty; add_initial() a starting state first")
        nodes, s = self.table()
        order = sorted(range(len(nodes)), key=lambda i: (s["score"][i], nodes[i].reward), reverse=True)
        if k <= 1 or not block_lineage:
            return [nodes[i] for i in order[: max(k, 1)]]
        picked: list[StateNode] = []
        blocked: set[int] = set()
        for i in order:
            if nodes[i].id in blocked:
                continue
            picked.append(nodes[i])
            blocked |= self.lineage(nodes[i].id)
            if len(picked) >= k:
                break
        return picked

    def best(self) -> StateNode:
        """The highest-reward state in the buffer."""
        return max(self.nodes.values(), key=lambda n: n.reward)


def _default_key(state: Any) -> Hashable:
    if isinstance(state, np.ndarray):
        return (state.dtype.str, state.shape, state.tobytes())
    try:
        hash(state)
        return state  # type: ignore[no-any-return]
    except TypeError:
        return repr(state)

"""Archive-based evolution: islands, MAP-Elites cells, score-and-novelty parent selection, an evaluator
cascade, and fresh-seed re-evaluation before anything is promoted.

The loop (OpenEvolve / ShinkaEvolve / Darwin Godel Machine, reduced to its parts):

1. per island, pick parents: with probability ``exploration`` any candidate of the island, else an
   elite drawn by a weight mixing score (ShinkaEvolve's ``sigmoid(lambda (s - median) / MAD) /
   (1 + children)``, lambda = 10) and novelty (mean distance to the ``k`` nearest other elites);
2. mutate (plain operators or an LLM, :mod:`~lifelong.loop.mutation`), evaluate each child through a
   :class:`~lifelong.loop.cascade.Cascade` (on an :class:`~lifelong.loop.executors.Executor` when given);
   failures score zero;
3. place each child: with ``features``, into its island's MAP-Elites cell when it beats the occupant
   (strictly, as OpenEvolve); without, into the island's top-``elite_size`` population;
4. every ``migration_interval`` generations, copy the top ``migration_rate`` of each island's elites to
   the next island (a ring).

**Promotion.** The archive's scores are single evaluations; with a noisy evaluator the top of the
archive is partly luck (ShinkaEvolve #119: one lucky outlier locked stagnation detection for 50+
generations). :meth:`Evolution.promote` therefore re-evaluates the top candidates on *fresh* seeds
(never used before), and the champion's bar is its fresh mean, never its lucky first score. A
challenger replaces a champion only when the :class:`~lifelong.control.gate.Gate` accepts it on
paired fresh-seed scores (same seeds for both sides).

>>> from lifelong.loop.mutation import OperatorMutator
>>> evo = Evolution([0.0], OperatorMutator(lambda g, rng: g + rng.normal()),
...                 lambda g, seed: -abs(g - 3.0), islands=2, children_per_island=4, seed=0)
>>> _ = evo.run(generations=30)
>>> abs(evo.best().genome - 3.0) < 0.5
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lifelong.control.gate import Gate, PairedScores
from lifelong.loop.cascade import Cascade, CascadeTask, Evaluation, Stage
from lifelong.loop.errors import SearchInputError
from lifelong.loop.mutation import MutationError, Mutator
from lifelong.loop.seeding import derive_seed

if TYPE_CHECKING:
    from lifelong.core.verdict import Verdict
    from lifelong.loop.executors import Executor

__all__ = ["Archive", "Candidate", "Evolution", "Promotion", "selection_weights"]


@dataclass
class Candidate:
    """One evaluated genome and its place in the search.

    >>> Candidate(0, "genome", 0.5, fresh_scores=[0.4, 0.6]).fresh_mean
    0.5
    """

    id: int
    genome: Any
    score: float
    status: str = "ok"
    parent: int | None = None
    island: int = 0
    generation: int = 0
    features: tuple[float, ...] = ()
    children: int = 0
    seed: int = 0
    fresh_scores: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def fresh_mean(self) -> float | None:
        """Mean score over fresh-seed re-evaluations (None before any)."""
        return float(np.mean(self.fresh_scores)) if self.fresh_scores else None


def selection_weights(scores: Sequence[float], children: Sequence[int], novelty: Sequence[float] | None = None, *,
                      lam: float = 10.0, novelty_weight: float = 0.0) -> np.ndarray:
    """Parent-selection probabilities. Score part (ShinkaEvolve's weighted sampling):
    ``sigmoid(lam * (s - median) / MAD) / (1 + children)``; novelty part proportional to novelty; mixed
    as ``(1 - novelty_weight) * score_part + novelty_weight * novelty_part``.

    >>> selection_weights([0.0, 1.0], [0, 0]).round(3).tolist()     # MAD 0.5: sigmoid(+-10)
    [0.0, 1.0]
    >>> selection_weights([1.0, 1.0], [0, 3]).round(3).tolist()     # equal scores: fewer children first
    [0.8, 0.2]
    """
    s = np.asarray(scores, dtype=float)
    if s.size == 0:
        raise SearchInputError("no candidates to select from")
    med = np.median(s)
    mad = np.median(np.abs(s - med))
    z = np.clip(lam * (s - med) / max(mad, 1e-12), -500, 500)
    w = 1.0 / (1.0 + np.exp(-z)) / (1.0 + np.asarray(children, dtype=float))
    w = w / w.sum() if w.sum() > 0 else np.full(s.size, 1.0 / s.size)
    if novelty is not None and novelty_weight > 0:
        nov = np.asarray(novelty, dtype=float)
        nov = nov / nov.sum() if nov.sum() > 0 else np.full(s.size, 1.0 / s.size)
        w = (1.0 - novelty_weight) * w + novelty_weight * nov
    return w / w.sum()


class Archive:
    """All candidates, and per island its elites: MAP-Elites cells over ``features`` (a cell changes
    hands only to a strictly better candidate) or, without features, the top ``elite_size``.

    ``ranges`` give each feature's (low, high) for binning into ``bins`` cells per dimension (values
    outside are clamped into the edge cells).

    >>> a = Archive(islands=1, bins=2, ranges=[(0.0, 1.0)])
    >>> a.add(Candidate(0, "x", 0.5, features=(0.1,))), a.add(Candidate(1, "y", 0.4, features=(0.2,)))
    (True, False)
    >>> a.add(Candidate(2, "z", 0.1, features=(0.9,)))      # an empty cell: kept for diversity
    True
    """

    def __init__(self, islands: int = 1, *, bins: int = 10, ranges: Sequence[tuple[float, float]] | None = None,
                 elite_size: int = 16) -> None:
        if islands < 1 or bins < 1 or elite_size < 1:
            raise SearchInputError(f"Archive needs islands, bins, elite_size >= 1; got {islands}, {bins}, {elite_size}")
        self.islands = islands
        self.bins = bins
        self.ranges = [tuple(map(float, r)) for r in ranges] if ranges else None
        self.elite_size = elite_size
        self.candidates: dict[int, Candidate] = {}
        self.cells: list[dict[tuple[int, ...], int]] = [{} for _ in range(islands)]
        self.populations: list[list[int]] = [[] for _ in range(islands)]
        self.members: list[list[int]] = [[] for _ in range(islands)]

    def cell(self, features: Sequence[float]) -> tuple[int, ...]:
        """The MAP-Elites cell of a feature vector."""
        if self.ranges is None or len(features) != len(self.ranges):
            raise SearchInputError(f"features {tuple(features)} do not match the archive's ranges {self.ranges}")
        out = []
        for f, (lo, hi) in zip(features, self.ranges, strict=True):
            x = (float(f) - lo) / (hi - lo) if hi > lo else 0.0
            out.append(min(self.bins - 1, max(0, int(math.floor(x * self.bins)))))
        return tuple(out)

    def add(self, cand: Candidate) -> bool:
        """Record a candidate; returns True when it became an elite of its island."""
        self.candidates[cand.id] = cand
        self.members[cand.island].append(cand.id)
        if self.ranges is not None:
            cells = self.cells[cand.island]
            key = self.cell(cand.features)
            old = cells.get(key)
            if old is None or cand.score > self.candidates[old].score:
                cells[key] = cand.id
                return True
            return False
        pop = self.populations[cand.island]
        pop.append(cand.id)
        pop.sort(key=lambda i: self.candidates[i].score, reverse=True)
        kept = cand.id in pop[: self.elite_size]
        del pop[self.elite_size :]
        return kept

    def elites(self, island: int | None = None) -> list[Candidate]:
        """Elites of one island, or of all islands."""
        islands = range(self.islands) if island is None else [island]
        ids = [i for k in islands for i in (self.cells[k].values() if self.ranges is not None else self.populations[k])]
        return [self.candidates[i] for i in ids]

    def of_island(self, island: int) -> list[Candidate]:
        """Every candidate ever placed on an island."""
        return [self.candidates[i] for i in self.members[island]]

    def coverage(self) -> int:
        """Occupied cells (MAP-Elites) or elites (populations), over all islands."""
        return len(self.elites())


@dataclass
class Promotion:
    """The result of :meth:`Evolution.promote`: who was re-evaluated, on which fresh seeds, the verdict.

    >>> evo = Evolution([1.0, 2.0], lambda p, insp, rng: p.genome, lambda g, seed: g / 2, islands=1)
    >>> p = evo.promote(fresh=2)
    >>> p.accepted, p.challenger.genome, p.bar
    (True, 2.0, 1.0)
    """

    accepted: bool
    challenger: Candidate
    champion: Candidate | None
    seeds: list[int]
    bar: float
    reason: str
    verdict: Verdict | None = None
    reevaluated: dict[int, list[float]] = field(default_factory=dict)


class Evolution:
    """The evolutionary loop over an archive; see the module docstring.

    ``evaluate`` is a :class:`~lifelong.loop.cascade.Cascade`, a list of stages, or ``fn(genome, seed)``.
    ``features(genome, evaluation) -> tuple`` with ``ranges`` turns on MAP-Elites; ``distance(a, b)``
    (genomes) measures novelty (default: Euclidean distance of features, else no novelty term).
    ``budget`` counts cascade evaluations (each candidate evaluation, whatever stage it stops at).

    >>> evo = Evolution(["a"], lambda p, insp, rng: p.genome + "a", lambda g, s: min(len(g), 5) / 5, islands=2)
    >>> evo.run(budget=20).evaluations, evo.best().score > evo.curve[0]
    (20, True)
    """

    def __init__(self, initial: Sequence[Any], mutate: Mutator, evaluate: Cascade | Sequence[Stage] | Callable[[Any, int], Any],
                 *, islands: int = 4, children_per_island: int = 4, elite_size: int = 16,
                 features: Callable[[Any, Evaluation], Sequence[float]] | None = None,
                 ranges: Sequence[tuple[float, float]] | None = None, bins: int = 10,
                 distance: Callable[[Any, Any], float] | None = None, novelty_weight: float = 0.2, novelty_k: int = 3,
                 exploration: float = 0.1, lam: float = 10.0, migration_interval: int = 10, migration_rate: float = 0.1,
                 inspirations: int = 2, executor: Executor | None = None, seed: int = 0) -> None:
        if not initial:
            raise SearchInputError("evolution needs at least one initial genome")
        if (features is None) != (ranges is None):
            raise SearchInputError("give both features= and ranges= (MAP-Elites) or neither")
        self.mutate = mutate
        self.cascade = evaluate if isinstance(evaluate, Cascade) else Cascade(evaluate)  # type: ignore[arg-type]
        self.features = features
        self.distance = distance
        self.archive = Archive(islands, bins=bins, ranges=ranges, elite_size=elite_size)
        self.children_per_island = children_per_island
        self.novelty_weight = novelty_weight
        self.novelty_k = novelty_k
        self.exploration = exploration
        self.lam = lam
        self.migration_interval = migration_interval
        self.migration_rate = migration_rate
        self.n_inspirations = inspirations
        self.executor = executor
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.generation = 0
        self.evaluations = 0
        self.mutation_failures = 0
        self.curve: list[float] = []  # best archive score after each evaluation
        self.champion: Candidate | None = None
        self._next_id = 0
        self._fresh_counter = 0
        genomes = [initial[i % len(initial)] for i in range(max(len(initial), islands))]
        self._evaluate_and_add([(g, None, i % islands) for i, g in enumerate(genomes)])

    # ------------------------------------------------------------------ evaluation
    def _seed_for(self, cid: int) -> int:
        return derive_seed(self.seed, "eval", cid)

    def _run_cascade(self, pairs: list[tuple[Any, int]]) -> list[Evaluation]:
        if self.executor is None:
            return [self.cascade.evaluate(g, s) for g, s in pairs]
        results = self.executor.map(CascadeTask(self.cascade), pairs)
        return [r.value if r.ok else Evaluation(0.0, "error", (), f"executor: {r.error}") for r in results]

    def _evaluate_and_add(self, jobs: list[tuple[Any, Candidate | None, int]]) -> list[Candidate]:
        ids = list(range(self._next_id, self._next_id + len(jobs)))
        self._next_id += len(jobs)
        evals = self._run_cascade([(g, self._seed_for(cid)) for (g, _, _), cid in zip(jobs, ids, strict=True)])
        out = []
        best = self.curve[-1] if self.curve else -math.inf
        for (genome, parent, island), cid, ev in zip(jobs, ids, evals, strict=True):
            feats: tuple[float, ...] = ()
            if self.features is not None:
                try:
                    feats = tuple(float(x) for x in self.features(genome, ev))
                except Exception:  # noqa: BLE001 - a candidate whose features fail lands in the first cell
                    feats = tuple(lo for lo, _ in (self.archive.ranges or []))
            cand = Candidate(cid, genome, ev.score, ev.status, parent.id if parent else None, island, self.generation,
                             feats, seed=self._seed_for(cid), info={"reason": ev.reason, "stages": list(ev.stage_scores)})
            if parent is not None:
                parent.children += 1
            self.archive.add(cand)
            self.evaluations += 1
            best = max(best, cand.score)
            self.curve.append(best)
            out.append(cand)
        return out

    # ------------------------------------------------------------------ selection
    def _novelty(self, elites: list[Candidate]) -> np.ndarray | None:
        if self.novelty_weight <= 0 or len(elites) < 2:
            return None
        if self.distance is not None:
            d = np.array([[self.distance(a.genome, b.genome) for b in elites] for a in elites], dtype=float)
        elif self.features is not None:
            f = np.array([c.features for c in elites], dtype=float)
            d = np.sqrt(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1))
        else:
            return None
        np.fill_diagonal(d, np.inf)
        k = min(self.novelty_k, len(elites) - 1)
        return np.sort(d, axis=1)[:, :k].mean(axis=1)

    def select_parent(self, island: int) -> Candidate:
        """One parent from an island (exploration, else score-and-novelty weighted over its elites)."""
        elites = self.archive.elites(island)
        pool = self.archive.of_island(island)
        if not elites:
            elites = pool or list(self.archive.candidates.values())
        if self.rng.random() < self.exploration and pool:
            return pool[int(self.rng.integers(len(pool)))]
        w = selection_weights([c.score for c in elites], [c.children for c in elites], self._novelty(elites),
                              lam=self.lam, novelty_weight=self.novelty_weight)
        return elites[int(self.rng.choice(len(elites), p=w))]

    def _inspirations(self, island: int, parent: Candidate) -> list[Candidate]:
        others = sorted((c for c in self.archive.elites(island) if c.id != parent.id), key=lambda c: c.score, reverse=True)
        return others[: self.n_inspirations]

    # ------------------------------------------------------------------ the loop
    def migrate(self) -> int:
        """Copy the top ``migration_rate`` of each island's elites to the next island; returns how many."""
        moved = 0
        if self.archive.islands < 2:
            return 0
        snapshot = [sorted(self.archive.elites(k), key=lambda c: c.score, reverse=True) for k in range(self.archive.islands)]
        for k, elites in enumerate(snapshot):
            n = max(1, int(round(self.migration_rate * len(elites)))) if elites else 0
            for c in elites[:n]:
                copy = Candidate(self._next_id, c.genome, c.score, c.status, c.id, (k + 1) % self.archive.islands,
                                 self.generation, c.features, seed=c.seed, info={**c.info, "migrated_from": c.id})
                self._next_id += 1
                moved += int(self.archive.add(copy))
        return moved

    def step(self, budget_left: int | None = None) -> list[Candidate]:
        """One generation: ``children_per_island`` children on every island (fewer at the end of a budget)."""
        self.generation += 1
        jobs: list[tuple[Any, Candidate | None, int]] = []
        for island in range(self.archive.islands):
            for _ in range(self.children_per_island):
                if budget_left is not None and len(jobs) >= budget_left:
                    break
                parent = self.select_parent(island)
                try:
                    child = self.mutate(parent, self._inspirations(island, parent), self.rng)
                except MutationError as err:
                    self.mutation_failures += 1
                    parent.info["last_mutation_error"] = str(err)[:300]
                    continue
                jobs.append((child, parent, island))
        added = self._evaluate_and_add(jobs) if jobs else []
        if self.migration_interval and self.generation % self.migration_interval == 0:
            self.migrate()
        return added

    def run(self, *, generations: int | None = None, budget: int | None = None,
            callback: Callable[[Evolution], None] | None = None) -> Evolution:
        """Run until ``generations`` more generations or ``budget`` total evaluations (whichever first)."""
        if generations is None and budget is None:
            raise SearchInputError("give generations= or budget=")
        done = 0
        stalls = 0
        while (generations is None or done < generations) and (budget is None or self.evaluations < budget):
            before = self.evaluations
            self.step(None if budget is None else budget - self.evaluations)
            done += 1
            stalls = stalls + 1 if self.evaluations == before else 0
            if stalls >= 20:  # every mutation failed 20 generations running: nothing will change
                break
            if callback is not None:
                callback(self)
        return self

    def best(self) -> Candidate:
        """The highest archive score (single evaluation: may be lucky; see :meth:`promote`)."""
        return max(self.archive.candidates.values(), key=lambda c: (c.score, -c.id))

    # ------------------------------------------------------------------ promotion
    def fresh_seeds(self, n: int) -> list[int]:
        """``n`` seeds never used by this run before."""
        out = [derive_seed(self.seed, "fresh", self._fresh_counter + i) for i in range(n)]
        self._fresh_counter += n
        return out

    def _reevaluate(self, cand: Candidate, seeds: list[int]) -> list[float]:
        scores = [e.score for e in self._run_cascade([(cand.genome, s) for s in seeds])]
        cand.fresh_scores.extend(scores)
        return scores

    def promote(self, *, top_k: int = 3, fresh: int = 8, gate: Gate | None = None) -> Promotion:
        """Re-evaluate the ``top_k`` archive candidates on ``fresh`` new seeds; the best fresh mean is the
        challenger. Without a champion it is promoted (its bar is its fresh mean). With one, both are
        scored on the same new seeds and the gate decides (paired test; default ``Gate()``)."""
        if fresh < 1:
            raise SearchInputError("fresh must be >= 1: a promotion needs at least one fresh evaluation")
        ranked = sorted(self.archive.candidates.values(), key=lambda c: (c.score, -c.id), reverse=True)
        seen, top = set(), []
        for c in ranked:  # migrated copies share a genome's lineage: re-evaluate each genome once
            key = c.info.get("migrated_from", c.id)
            if key not in seen and (self.champion is None or c.id != self.champion.id):
                seen.add(key)
                top.append(c)
            if len(top) >= top_k:
                break
        if not top:
            raise SearchInputError("nothing to promote: the archive holds no candidate besides the champion")
        seeds = self.fresh_seeds(fresh)
        scores = {c.id: self._reevaluate(c, seeds) for c in top}
        challenger = max(top, key=lambda c: (float(np.mean(scores[c.id])), -c.id))
        chall_scores = scores[challenger.id]
        if self.champion is None:
            self.champion = challenger
            return Promotion(True, challenger, None, seeds, float(np.mean(chall_scores)),
                             f"first champion; bar = fresh mean {np.mean(chall_scores):.4g} over {fresh} new seeds "
                             f"(archive score {challenger.score:.4g})", None, scores)
        champ_scores = self._reevaluate(self.champion, seeds)
        verdict = (gate or Gate()).decide(PairedScores("fresh-seeds", champ_scores, chall_scores,
                                                       [str(s) for s in seeds]))
        old = self.champion
        if verdict.accepted:
            self.champion = challenger
        winner = self.champion
        return Promotion(verdict.accepted, challenger, old, seeds, float(winner.fresh_mean or 0.0),
                         "; ".join(verdict.reasons), verdict, scores)

"""ACE playbooks over the memory store: bullets in sections, cited by id, changed only by delta operations.

A :class:`Playbook` is a view of a :class:`~lifelong.context.store.MemoryStore`: its bullets are items of
kind ``bullet`` (current, active), grouped by section, with ACE-style ids (``{section}-{NNNNN}``) and the
store's helpful/harmful counters. :class:`PlaybookLearner` runs ACE's loop (Zhang et al., 2025,
arXiv 2510.04618; ``ace/ace.py``): the generator answers with the packed playbook and cites bullet ids,
the reflector tags the cited bullets and extracts lessons, the curator proposes delta operations,
code applies them, and :class:`Refiner` (grow-and-refine) deduplicates.

What differs from the reference code, on purpose (see the reference notes' bug list):

- the curator has every operation (ACE's curator can only ADD), and its proposals are validated before
  they apply: an edit that drops a number or a name is rejected (:func:`~lifelong.context.roles.check_keeps_specifics`);
- deduplication really applies (kayba's never did): exact-hash duplicates merge at once; pairs above an
  embedding threshold (ACE's 0.90) go to a merger (a rule, or an LLM on *candidate pairs only*), whose
  merge must keep every specific of both; a decision to keep a pair apart is remembered (kayba's
  ``similarity_decisions``), keyed by the two contents, so it is asked again only if one changes;
- the context given to a model is packed into a hard token budget (ACE's 80K budget was never enforced);
- counters drive ranking (the store's utility factor), and superseded bullets leave the context but stay
  in the store with their history.

Modes: :meth:`PlaybookLearner.run_offline` (epochs over a training set, validation after each epoch,
the best playbook by validation restored at the end: ace #26 saw validation swing 53-93%) and
:meth:`PlaybookLearner.run_online` (the stream in windows; each window is tested with the current playbook
*before* it is learned from: prequential).

>>> from lifelong.context import open_store, HashingEmbedder
>>> from lifelong.context.roles import RuleGenerator, RuleReflector, RuleCurator, Lesson
>>> pb = Playbook(open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64)))
>>> learner = PlaybookLearner(pb, RuleGenerator(), RuleReflector(lambda q, t: Lesson(f"{q} -> {t}", "facts", key=q)),
...                           RuleCurator(confirm=1))
>>> stream = [Sample("capital of France", "Paris"), Sample("capital of Peru", "Lima"),
...           Sample("capital of France", "Paris")]
>>> result = learner.run_online(stream, window=1)
>>> [r.correct for r in result.records], [b.id for b in pb.bullets()]
([False, False, True], ['facts-00001', 'facts-00002'])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lifelong.context.errors import MemoryStoreError
from lifelong.context.items import Item, ItemKind, Provenance, Status, TagValue, text_hash
from lifelong.context.ops import Add, Merge, Op, Tag
from lifelong.context.packer import Packed, pack
from lifelong.context.roles import (
    Curator,
    Feedback,
    Generation,
    Generator,
    Lesson,
    Reflection,
    Reflector,
    RuleMerger,
    check_keeps_specifics,
    specifics,
)
from lifelong.context.store import Applied, MemoryStore
from lifelong.context.text import count_tokens, terms

DEFAULT_SECTIONS = ("strategies", "formulas", "mistakes", "others")  # ACE's playbook sections


@dataclass(frozen=True)
class Sample:
    """One task: a question and its expected answer (None where there is no ground truth)."""

    question: str
    target: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


def exact_match(sample: Sample, answer: str) -> Feedback:
    """Ground-truth feedback: right when the answer equals the target after lowercasing and collapsing
    whitespace.

    >>> exact_match(Sample("q", "Paris"), " paris ").correct
    True
    """
    norm = lambda s: " ".join(str(s).lower().split())  # noqa: E731
    return Feedback(sample.target is not None and norm(answer) == norm(sample.target), sample.target)


def _slug(section: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")[:40] or "bullet"


class Playbook:
    """Bullets of one store tenant. Reads are views; every change goes through :meth:`apply`.

    >>> from lifelong.context import open_store, HashingEmbedder
    >>> pb = Playbook(open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64)))
    >>> _ = pb.apply([pb.new_bullet(Lesson("On 429 wait 2 s", "api")), pb.new_bullet(Lesson("Use kg", "units"))])
    >>> print(pb.render())
    ## api
    [api-00001] On 429 wait 2 s
    <BLANKLINE>
    ## units
    [units-00002] Use kg
    """

    def __init__(self, store: MemoryStore, *, budget: int = 4000, quotas: Mapping[str, int | float] | None = None,
                 k: int = 50) -> None:
        self.store = store
        self.budget = budget
        self.quotas = dict(quotas or {})
        self.k = k
        self._next: int | None = None

    # ------------------------------------------------------------------ reading
    def bullets(self, section: str | None = None, *, with_embeddings: bool = False) -> list[Item]:
        """Current, active bullets (superseded and deleted ones are history), oldest first."""
        out = [it for it in self.store.items(with_embeddings=with_embeddings)
               if it.kind is ItemKind.BULLET and it.status is Status.ACTIVE and it.superseded_by is None
               and it.valid_until is None and (section is None or it.section == section)]
        out.sort(key=lambda it: (it.created_at, it.id))
        return out

    def sections(self) -> list[str]:
        """Sections in order of their first bullet."""
        return list(dict.fromkeys(b.section for b in self.bullets()))

    def find_key(self, key: str) -> Item | None:
        """The current bullet about ``key`` (set from a :class:`Lesson`'s key), if any."""
        for b in self.bullets():
            if b.meta.get("key") == key:
                return b
        return None

    def related(self, text: str, k: int = 8) -> list[Item]:
        """The ``k`` current bullets most relevant to a text (hybrid search)."""
        return [h.item for h in self.store.search(text, k=k, kinds=["bullet"])]

    def find_duplicate(self, content: str, *, similar: float = 0.8, section: str | None = None) -> Item | None:
        """A bullet that already says ``content``: the same text, or a bullet with cosine >= ``similar``
        that has all of its specifics (numbers, paths, names) and, when it has none, all of its terms."""
        bullets = self.bullets(with_embeddings=True)
        h = text_hash(content)
        for b in bullets:
            if b.content_hash == h:
                return b
        if not bullets:
            return None
        q = np.asarray(self.store.embedder.embed([content])[0], dtype=np.float32)
        spec, words = specifics(content), set(terms(content))
        best, best_sim = None, similar
        for b in bullets:
            if b.embedding is None or (section is not None and b.section != section):
                continue
            sim = float(np.dot(q, b.embedding))
            if sim < best_sim:
                continue
            covered = spec <= specifics(b.content) if spec else words <= set(terms(b.content))
            if covered:
                best, best_sim = b, sim
        return best

    def tokens(self) -> int:
        """Tokens of the whole rendered playbook (every current bullet)."""
        return count_tokens(self.render())

    def render(self, bullets: Sequence[Item] | None = None) -> str:
        """ACE's text form: ``## section`` headers and ``[id] content`` lines."""
        by: dict[str, list[str]] = {}
        for b in self.bullets() if bullets is None else bullets:
            by.setdefault(b.section, []).append(f"[{b.id}] {b.content}")
        return "\n\n".join("\n".join([f"## {s}", *lines]) for s, lines in by.items())

    def context(self, query: str | None = None, *, budget: int | None = None, k: int | None = None) -> Packed:
        """What a generator sees: with a query, the ``k`` most relevant bullets (hybrid search x recency x
        utility); without, every bullet ranked by utility. Packed into ``budget`` tokens, hard."""
        from lifelong.context.ranking import Hit

        if query:
            hits = self.store.search(query, k=k or self.k, kinds=["bullet"])
        else:
            hits = [Hit(b, b.utility, 1.0, utility=b.utility) for b in self.bullets()]
        return pack(hits, self.budget if budget is None else budget, quotas=self.quotas or None)

    # ------------------------------------------------------------------ writing
    def next_id(self, section: str) -> str:
        """The next ACE-style id ``{section}-{NNNNN}`` (one counter across sections, as ACE's)."""
        if self._next is None:
            nums = [int(m.group(1)) for i in self.store.ids() if (m := re.search(r"-(\d{5,})$", i))]
            self._next = max(nums, default=0) + 1
        n, self._next = self._next, self._next + 1
        return f"{_slug(section)}-{n:05d}"

    def new_bullet(self, lesson: Lesson, *, proposer: str = "curator", justification: str = "") -> Add:
        """An ADD for a lesson, with the next ACE-style id."""
        return Add(lesson.content, id=self.next_id(lesson.section), kind=ItemKind.BULLET,
                   section=lesson.section, meta={"key": lesson.key} if lesson.key is not None else {},
                   provenance=Provenance(proposer, "model"), justification=justification or lesson.justification,
                   evidence=lesson.evidence, proposer=proposer)

    def check(self, ops: Sequence[Op], *, guard: bool = True) -> None:
        """Validate operations against the store without writing (ids exist, fields valid); with ``guard``,
        also reject edits that drop specifics. Raises the store's or the curator's error."""
        self.store.plan(list(ops))
        if guard:
            check_keeps_specifics(ops, self.store.get)

    def apply(self, ops: Sequence[Op]) -> Applied | None:
        """Apply a batch of delta operations atomically (None for an empty batch)."""
        ops = list(ops)
        return self.store.apply(ops) if ops else None

    # ------------------------------------------------------------------ versions
    def snapshot(self) -> dict[str, Item]:
        """Every live item (any kind, any status), to :meth:`restore` later."""
        return {it.id: it for it in self.store.items()}

    def restore(self, snap: Mapping[str, Item], *, reason: str = "restore best playbook") -> None:
        """Put the store back to a snapshot: changed items get their recorded bodies, items added since
        are removed from the live set (their history stays)."""
        now = self.snapshot()
        state: dict[str, Item | None] = {}
        for i, it in snap.items():
            if i not in now or now[i].to_dict() != it.to_dict():
                state[i] = it
        for i in now:
            if i not in snap:
                state[i] = None
        if state:
            self.store.restore(state, op={"op": "restore", "justification": reason})


@dataclass(frozen=True)
class Decision:
    """A grow-and-refine decision on a candidate pair: ``merge`` or ``keep`` (remembered)."""

    action: str
    similarity: float
    reason: str = ""


class Refiner:
    """Grow-and-refine deduplication that applies. Each :meth:`propose` call:

    1. merges exact duplicates (same content hash) into the oldest bullet, summing counters;
    2. finds candidate pairs with cosine >= ``threshold`` (ACE's 0.90; within a section by default),
       most similar first, each bullet in at most one merge per call;
    3. asks the ``merger`` (default :class:`~lifelong.context.roles.RuleMerger`; an
       :class:`~lifelong.context.roles.LLMMerger` asks a model, on these pairs only) for merged text,
       which must keep every specific of both; otherwise the pair is kept apart and the decision is
       remembered, keyed by the two contents.

    >>> from lifelong.context import open_store, HashingEmbedder
    >>> pb = Playbook(open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(256)))
    >>> _ = pb.apply([pb.new_bullet(Lesson(t, "api")) for t in
    ...               ["On 429 wait 2 s", "On 429 wait 2 s", "On 429, wait 2 s.", "Use kg for weights"]])
    >>> ref = Refiner(threshold=0.5)
    >>> _ = pb.apply(ref.propose(pb))
    >>> [b.content for b in pb.bullets()], ref.stats
    (['On 429, wait 2 s.', 'Use kg for weights'], {'exact': 1, 'merged': 1, 'kept': 0})
    """

    def __init__(self, threshold: float = 0.90, *, merger: Any = None, within_section: bool = True,
                 max_pairs: int | None = None) -> None:
        self.threshold = threshold
        self.merger = merger if merger is not None else RuleMerger()
        self.within_section = within_section
        self.max_pairs = max_pairs
        self.decisions: dict[tuple[str, str], Decision] = {}
        self.stats = {"exact": 0, "merged": 0, "kept": 0}

    def propose(self, playbook: Playbook) -> list[Op]:
        """Merge operations for this pass (apply them with :meth:`Playbook.apply`)."""
        bullets = playbook.bullets(with_embeddings=True)
        ops: list[Op] = []
        used: set[str] = set()
        groups: dict[str, list[Item]] = {}
        for b in bullets:
            groups.setdefault(b.content_hash, []).append(b)
        for group in groups.values():
            if len(group) > 1:
                ids = tuple(b.id for b in group)
                ops.append(Merge(ids=ids, content=group[0].content, into=ids[0], proposer="refiner",
                                 justification="exact duplicate (same content hash)"))
                used.update(ids[1:])  # the survivor may still merge with a near-duplicate below
                self.stats["exact"] += len(group) - 1
        rest = [b for b in bullets if b.id not in used and b.embedding is not None]
        if len(rest) < 2:
            return ops
        emb = np.stack([np.asarray(b.embedding, dtype=np.float32) for b in rest])
        sim = emb @ emb.T
        ii, jj = np.where(np.triu(sim >= self.threshold, k=1))
        pairs = sorted(zip(ii.tolist(), jj.tolist(), strict=True), key=lambda p: (-float(sim[p]), p))
        asked = 0
        for i, j in pairs:
            a, b = rest[i], rest[j]
            if a.id in used or b.id in used or (self.within_section and a.section != b.section):
                continue
            key = tuple(sorted((a.content_hash, b.content_hash)))
            if key in self.decisions:
                continue
            ka, kb = a.meta.get("key"), b.meta.get("key")
            if ka is not None and kb is not None and ka != kb:
                continue  # bullets about different keys are distinct by definition, however alike they read
            if self.max_pairs is not None and asked >= self.max_pairs:
                break
            asked += 1
            merged = self.merger.merge(a, b)
            s = float(sim[i, j])
            if merged is None or check_lost(a, b, merged):
                self.decisions[key] = Decision("keep", s, "the merge would lose a specific" if merged else "distinct")
                self.stats["kept"] += 1
                continue
            self.decisions[key] = Decision("merge", s)
            ops.append(Merge(ids=(a.id, b.id), content=merged, into=a.id, proposer="refiner",
                             justification=f"near-duplicate (cosine {s:.3f})"))
            used.update((a.id, b.id))
            self.stats["merged"] += 1
        return ops

    def to_dict(self) -> dict[str, Any]:
        """The remembered decisions, as JSON."""
        return {"threshold": self.threshold, "decisions": [
            {"pair": list(k), "action": d.action, "similarity": d.similarity, "reason": d.reason}
            for k, d in self.decisions.items()]}


def check_lost(a: Item, b: Item, merged: str) -> bool:
    """Whether a merged text lost a specific of either bullet."""
    return bool((specifics(a.content) | specifics(b.content)) - specifics(merged))


@dataclass(frozen=True)
class StepRecord:
    """One attempt: the answer, whether it was right, what it cited, the context size, the operations."""

    question: str
    answer: str
    correct: bool
    cited: tuple[str, ...]
    context_tokens: int
    ops: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class OnlineResult:
    """Prequential records (each answered before it was learned from) and per-window accuracy."""

    records: tuple[StepRecord, ...]
    window_accuracy: tuple[float, ...]

    @property
    def accuracy(self) -> float:
        """Prequential accuracy over the whole stream."""
        return sum(r.correct for r in self.records) / max(len(self.records), 1)


@dataclass(frozen=True)
class OfflineResult:
    """Validation accuracy after each epoch (epoch 0: before training), and the epoch restored."""

    val_accuracy: tuple[float, ...]
    best_epoch: int

    @property
    def best_accuracy(self) -> float:
        """Validation accuracy of the restored playbook."""
        return self.val_accuracy[self.best_epoch]


class PlaybookLearner:
    """ACE's loop over a :class:`Playbook` with pluggable roles (rule-based or LLM-backed, see
    :mod:`lifelong.context.roles`). One reflect-curate round per attempt (ACE allows up to 3
    reflect-and-retry rounds on a wrong answer; a retry is the Reflexion learner's job here).

    ``refine_every``: run the :class:`Refiner` after every n learning steps (0: never).
    ``budget``: the generator's hard context budget in tokens; ``k``: bullets retrieved per question.
    """

    def __init__(self, playbook: Playbook, generator: Generator, reflector: Reflector, curator: Curator, *,
                 refiner: Refiner | None = None, refine_every: int = 1, k: int = 20, budget: int | None = None,
                 evaluate: Callable[[Sample, str], Feedback] = exact_match) -> None:
        self.playbook, self.generator, self.reflector, self.curator = playbook, generator, reflector, curator
        self.refiner = refiner if refiner is not None else Refiner()
        self.refine_every, self.k, self.budget, self.evaluate = refine_every, k, budget, evaluate
        self.steps = 0
        self.op_counts: dict[str, int] = {}
        self.errors: list[str] = []

    def answer(self, question: str) -> tuple[Generation, Packed]:
        """Generate with the packed playbook; citations of ids not in the context are dropped."""
        packed = self.playbook.context(question, budget=self.budget, k=self.k)
        gen = self.generator.generate(question, packed.text)
        shown = set(packed.ids)
        return Generation(gen.answer, tuple(i for i in gen.cited if i in shown), gen.reasoning), packed

    def learn(self, question: str, generation: Generation, feedback: Feedback) -> dict[str, int]:
        """Reflect, tag, curate, apply, refine. Returns the number of operations applied by type."""
        cited = [self.playbook.store.get(i) for i in generation.cited if i in self.playbook.store]
        reflection: Reflection = self.reflector.reflect(question, generation, feedback, cited)
        ops: list[Op] = [Tag(id=i, tag=t, proposer="reflector", justification=reflection.reasoning or "reflection")
                         for i, t in reflection.tags.items() if t is not TagValue.NEUTRAL]
        self.playbook.apply(ops)
        proposed = self.curator.curate(reflection, self.playbook)
        try:
            self.playbook.apply(proposed)  # atomic: all of the curator's batch or none of it
            ops += proposed
        except MemoryStoreError as err:
            self.errors.append(f"step {self.steps}: curator batch rejected: {err}")
        self.steps += 1
        if self.refiner is not None and self.refine_every and self.steps % self.refine_every == 0:
            merges = self.refiner.propose(self.playbook)
            self.playbook.apply(merges)
            ops += merges
        counts: dict[str, int] = {}
        for o in ops:
            counts[o.OP] = counts.get(o.OP, 0) + 1
            self.op_counts[o.OP] = self.op_counts.get(o.OP, 0) + 1
        return counts

    def step(self, sample: Sample, *, learn: bool = True) -> StepRecord:
        """Answer one sample, score it, and (unless ``learn=False``) learn from it."""
        gen, packed = self.answer(sample.question)
        fb = self.evaluate(sample, gen.answer)
        ops = self.learn(sample.question, gen, fb) if learn else {}
        return StepRecord(sample.question, gen.answer, fb.correct, gen.cited, packed.tokens, ops)

    def score(self, samples: Iterable[Sample]) -> float:
        """Accuracy on samples, without learning."""
        rs = [self.step(s, learn=False) for s in samples]
        return sum(r.correct for r in rs) / max(len(rs), 1)

    def run_online(self, samples: Sequence[Sample], *, window: int = 1) -> OnlineResult:
        """ACE's online mode: each window is answered with the current playbook first (these are the
        scored answers), then learned from, one sample at a time, in order."""
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        records: list[StepRecord] = []
        accs: list[float] = []
        for start in range(0, len(samples), window):
            chunk = samples[start:start + window]
            tested = []
            for s in chunk:
                gen, packed = self.answer(s.question)
                tested.append((s, gen, self.evaluate(s, gen.answer), packed))
            for s, gen, fb, packed in tested:
                ops = self.learn(s.question, gen, fb)
                records.append(StepRecord(s.question, gen.answer, fb.correct, gen.cited, packed.tokens, ops))
            accs.append(sum(fb.correct for _, _, fb, _ in tested) / len(tested))
        return OnlineResult(tuple(records), tuple(accs))

    def run_offline(self, train: Sequence[Sample], val: Sequence[Sample], *, epochs: int = 1) -> OfflineResult:
        """ACE's offline mode: ``epochs`` passes over ``train`` (learning from each sample), validation
        after each epoch (and before the first), and the playbook with the best validation accuracy
        restored at the end (ties: the earlier, smaller one)."""
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        accs = [self.score(val)]
        best, best_snap = 0, self.playbook.snapshot()
        for epoch in range(1, epochs + 1):
            for s in train:
                self.step(s)
            accs.append(self.score(val))
            if accs[-1] > accs[best]:
                best, best_snap = epoch, self.playbook.snapshot()
        if best != epochs:
            self.playbook.restore(best_snap, reason=f"offline: restore the best playbook (epoch {best})")
        return OfflineResult(tuple(accs), best)


__all__ = [
    "DEFAULT_SECTIONS", "Decision", "OfflineResult", "OnlineResult", "Playbook", "PlaybookLearner", "Refiner", "Sample",
    "StepRecord", "check_lost", "exact_match",
]

"""Forgetting: what to rank down, what to retire, what to fold together, and what a new fact replaces.
Every decision is an operation with its reason; nothing is ever lost silently:

- **utility** from the helpful/harmful counters as a Beta posterior (mean, and a credible lower and
  upper bound), optionally with the counters **decayed** by the time since the item last changed, so
  old verdicts fade toward the prior; it drives re-ranking (:meth:`ForgettingPolicy.rerank`) and
  pruning;
- **pruning** (:meth:`ForgettingPolicy.sweep`): an item whose utility is *confidently* low (the upper
  bound under a threshold, with enough evidence), an expired **TTL**, or the lowest-ranked items over a
  capacity, are soft-deleted (status ``deleted``: kept, auditable, restorable by rollback);
- **consolidation** (:class:`Consolidator`): exact and near-duplicates (cosine over the stored
  embeddings) become MERGE operations, which supersede the sources and sum their counters; a "keep
  apart" verdict is remembered so the same pair is never proposed again;
- **contradiction** (:class:`ContradictionResolver`): a new fact that contradicts stored ones
  SUPERSEDES them (the old facts keep their history and a closed validity interval), instead of mem0's
  ADD-only (both kept, #4896) or its old delete path (both lost, #4536). The detector is pluggable: a
  rule-based default for "X is A" vs "X is B" facts, or :class:`LLMContradiction`.

>>> from lifelong.context import open_store, HashingEmbedder, Add, Tag
>>> store = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64))
>>> _ = store.apply([Add("Alice lives in Paris", id="home", kind="fact")])
>>> r = ContradictionResolver(store).propose(Add("Alice lives in Berlin", id="home2", kind="fact"))
>>> [type(o).__name__ for o in r.ops], r.superseded
(['Supersede'], ('home',))
>>> _ = store.apply(r.ops)
>>> [h.item.id for h in store.search("where does Alice live")], store.get("home").superseded_by
(['home2'], 'home2')
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lifelong.context._reply import get_mapping, parse_json_reply, show_text
from lifelong.context.items import Item, ItemKind, Status
from lifelong.context.ops import Add, Delete, Merge, Op, Supersede, Update
from lifelong.context.plan import new_id
from lifelong.context.ranking import Hit
from lifelong.context.text import normalise, terms

DAY = 86400.0
PROTECTED_KINDS = (ItemKind.BLOCK, ItemKind.SKILL)  # core blocks and skills are edited, never pruned
PIN_TAG = "pinned"
SKIP_SECTIONS = ("recall", "recall-summary")  # the tiers' message log is a record, not knowledge to merge


# ---------------------------------------------------------------------- utility
def beta_mean(helpful: float, harmful: float, prior: tuple[float, float] = (1.0, 1.0)) -> float:
    """Posterior mean of Beta(prior) after the counters: 0.5 for an untested item under Beta(1, 1).

    >>> beta_mean(0, 0), beta_mean(8, 2)
    (0.5, 0.75)
    """
    a, b = prior
    return (helpful + a) / (helpful + harmful + a + b)


def beta_bounds(helpful: float, harmful: float, credibility: float = 0.9,
                prior: tuple[float, float] = (1.0, 1.0)) -> tuple[float, float]:
    """Equal-tailed credible interval of the posterior: (lower, upper). Narrows as evidence grows.

    >>> lo, hi = beta_bounds(0, 0)
    >>> round(lo, 2), round(hi, 2)
    (0.05, 0.95)
    >>> [round(x, 3) for x in beta_bounds(0, 5)]
    [0.009, 0.393]
    """
    if not 0.0 < credibility < 1.0:
        raise ValueError(f"credibility must be in (0, 1), got {credibility!r}")
    from scipy.special import betaincinv

    a, b = helpful + prior[0], harmful + prior[1]
    tail = (1.0 - credibility) / 2.0
    return float(betaincinv(a, b, tail)), float(betaincinv(a, b, 1.0 - tail))


@dataclass(frozen=True)
class Utility:
    """An item's utility: the effective (possibly decayed) counters and the posterior mean and bounds.

    >>> Utility(1.0, 0.0, 0.667, 0.2, 0.97).mean
    0.667
    """

    helpful: float
    harmful: float
    mean: float
    lower: float
    upper: float

    @property
    def evidence(self) -> float:
        """How many (effective) verdicts back this estimate."""
        return self.helpful + self.harmful


def utility(item: Item, *, now: float | None = None, half_life_days: float | None = None,
            credibility: float = 0.9, prior: tuple[float, float] = (1.0, 1.0)) -> Utility:
    """An item's :class:`Utility`. With ``half_life_days``, both counters are multiplied by
    ``0.5 ** (age / half_life)``, age being the time since the item last changed (a TAG changes it), so
    evidence that is not renewed fades back toward the prior.

    >>> it = Item(id="a", content="x", helpful=8, harmful=0, updated_at=0.0)
    >>> round(utility(it).mean, 3), round(utility(it, now=30 * DAY, half_life_days=30).mean, 3)
    (0.9, 0.833)
    """
    h, k = float(item.helpful), float(item.harmful)
    if half_life_days is not None:
        if half_life_days <= 0:
            raise ValueError(f"half_life_days must be positive, got {half_life_days!r}")
        at = time.time() if now is None else now
        w = 0.5 ** (max(at - item.updated_at, 0.0) / (half_life_days * DAY))
        h, k = h * w, k * w
    lo, hi = beta_bounds(h, k, credibility, prior)
    return Utility(h, k, beta_mean(h, k, prior), lo, hi)


def with_ttl(op: Add, seconds: float, *, now: float | None = None) -> Add:
    """An ADD whose item stops being current ``seconds`` after it becomes valid (a hard TTL, mem0's
    ``expiration_date``): retrieval skips it afterwards, ``as_of`` queries and history still see it.

    >>> with_ttl(Add("promo code SPRING24", id="promo"), 7 * DAY, now=0.0).valid_until
    604800.0
    """
    if not seconds > 0:
        raise ValueError(f"TTL must be a positive number of seconds, got {seconds!r}")
    start = op.valid_from if op.valid_from is not None else (time.time() if now is None else now)
    return replace(op, valid_from=start, valid_until=start + seconds, meta={**op.meta, "ttl": seconds})


# ---------------------------------------------------------------------- the policy
@dataclass(frozen=True)
class Sweep:
    """What one sweep proposes: the operations, and per item the reason (for logs and reports).

    >>> Sweep((), {}).ops
    ()
    """

    ops: tuple[Op, ...]
    reasons: Mapping[str, str]


@dataclass(frozen=True)
class ForgettingPolicy:
    """Ranking and pruning from utility, with decay, TTL and a capacity.

    - ``credibility``: width of the credible interval (0.9: 5% tails).
    - ``prune_below`` and ``min_evidence``: soft-delete an item once its *upper* bound falls below
      ``prune_below`` and it has at least ``min_evidence`` effective verdicts (confidently unhelpful;
      with the defaults, 0 helpful and 4 harmful).
    - ``half_life_days``: decay of the counters (None: no decay).
    - ``ttl``: seconds an item of a kind may live after it was created, by kind (``{"fact": 30 * DAY}``);
      an item's own ``meta["expires_at"]`` (epoch seconds) also counts.
    - ``max_items``: capacity of the kinds swept; over it, the lowest-ranked items (by lower bound, then
      oldest) are soft-deleted.
    - ``kinds``: which kinds the sweep may prune (default: every kind but blocks and skills). Items
      tagged ``pinned`` are never pruned.
    - ``utility_span``: re-ranking factor ``1 + span * (2 * mean - 1)`` (as :class:`~lifelong.context.Weights`).

    >>> from lifelong.context.items import Item
    >>> bad = Item(id="bad", content="Always retry POST", kind="bullet", harmful=4)
    >>> good = Item(id="good", content="Retry GET on 503", kind="bullet", helpful=3)
    >>> sweep = ForgettingPolicy().sweep([bad, good], now=0.0)
    >>> [(type(o).__name__, o.id) for o in sweep.ops], sweep.reasons["bad"][:26]
    ([('Delete', 'bad')], 'confidently unhelpful: 0 h')
    """

    credibility: float = 0.9
    prune_below: float = 0.5
    min_evidence: float = 3.0
    half_life_days: float | None = None
    ttl: Mapping[str, float] = field(default_factory=dict)
    max_items: int | None = None
    kinds: tuple[str, ...] | None = None
    utility_span: float = 0.5
    prior: tuple[float, float] = (1.0, 1.0)

    def utility(self, item: Item, now: float | None = None) -> Utility:
        """:func:`utility` under this policy's decay, credibility and prior."""
        return utility(item, now=now, half_life_days=self.half_life_days, credibility=self.credibility,
                       prior=self.prior)

    def rank(self, items: Iterable[Item], now: float | None = None) -> list[Item]:
        """Items best first by the lower bound of utility (proven items above untested ones above
        doubtful ones), then the mean, then the id.

        >>> from lifelong.context.items import Item
        >>> [i.id for i in ForgettingPolicy().rank([Item(id="new", content="x"),
        ...     Item(id="proven", content="y", helpful=9), Item(id="doubtful", content="z", harmful=2)])]
        ['proven', 'new', 'doubtful']
        """
        scored = [(self.utility(i, now), i) for i in items]
        scored.sort(key=lambda p: (-p[0].lower, -p[0].mean, p[1].id))
        return [i for _, i in scored]

    def rerank(self, hits: Sequence[Hit], now: float | None = None) -> list[Hit]:
        """Search hits with their utility factor recomputed from the (decayed) posterior mean and their
        score = relevance x recency x utility; best first. A factor never drops a hit."""
        out = []
        for h in hits:
            u = self.utility(h.item, now)
            factor = 1.0 + self.utility_span * (2.0 * u.mean - 1.0)
            out.append(replace(h, utility=factor, score=h.relevance * h.recency * factor))
        out.sort(key=lambda h: (-h.score, h.item.id))
        return out

    def sweep(self, items: Iterable[Item] | Any, now: float | None = None) -> Sweep:
        """The soft DELETEs this policy calls for (``items``: a store, or its items). Nothing is
        written; apply the ops through the store (or a gate)."""
        at = time.time() if now is None else now
        if hasattr(items, "items") and callable(items.items) and not isinstance(items, Mapping):
            items = items.items()
        live = [i for i in items if i.status is Status.ACTIVE and i.superseded_by is None and self._prunable(i)]
        ops: list[Op] = []
        reasons: dict[str, str] = {}

        def drop(item: Item, why: str) -> None:
            reasons[item.id] = why
            ops.append(Delete(id=item.id, justification=why, evidence=(f"v{item.version}",), proposer="forgetting"))

        kept: list[Item] = []
        for it in live:
            expiry = self._expiry(it)
            if expiry is not None and at >= expiry:
                drop(it, f"TTL expired at {expiry:.0f} (now {at:.0f})")
                continue
            u = self.utility(it, at)
            if u.evidence >= self.min_evidence and u.upper < self.prune_below:
                drop(it, f"confidently unhelpful: {it.helpful} helpful / {it.harmful} harmful, utility upper bound "
                         f"{u.upper:.3f} < {self.prune_below} at {self.credibility:.0%} credibility")
                continue
            kept.append(it)
        if self.max_items is not None and len(kept) > self.max_items:
            order = self.rank(kept, at)
            for it in order[self.max_items:]:
                u = self.utility(it, at)
                drop(it, f"over capacity {self.max_items}: ranked {order.index(it) + 1} of {len(order)} "
                         f"(utility lower bound {u.lower:.3f})")
        return Sweep(tuple(ops), reasons)

    def _prunable(self, item: Item) -> bool:
        if PIN_TAG in item.tags:
            return False
        if self.kinds is not None:
            return item.kind.value in self.kinds  # type: ignore[union-attr]
        return item.kind not in PROTECTED_KINDS

    def _expiry(self, item: Item) -> float | None:
        own = item.meta.get("expires_at")
        ttl = self.ttl.get(item.kind.value)  # type: ignore[union-attr]
        candidates = [float(own)] if isinstance(own, int | float) and not isinstance(own, bool) else []
        if ttl is not None:
            candidates.append(item.created_at + float(ttl))
        return min(candidates) if candidates else None


# ---------------------------------------------------------------------- consolidation
MERGE_PROMPT = """Two or more memory items look alike. Decide whether they say the same thing.
If they do, merge them into ONE item that keeps every specific detail (numbers, conditions,
exceptions, names) of all of them. If they say different things, keep them apart.
Return only JSON: {{"decision": "merge", "content": "<merged text>"}} or {{"decision": "keep"}}.

Items:
{items}"""


def merge_text(items: Sequence[Item]) -> str:
    """A deterministic merge that loses no sentence with new information: start from the item with the
    most distinct terms, then append each sentence of the others that brings a term not yet covered.

    >>> a = Item(id="a", content="On 429 wait 2 s and back off exponentially.")
    >>> b = Item(id="b", content="On 429 back off. Only for idempotent endpoints.")
    >>> merge_text([a, b])
    'On 429 wait 2 s and back off exponentially. Only for idempotent endpoints.'
    """
    base = max(items, key=lambda i: (len(set(terms(i.content))), len(i.content), i.id))
    text = base.content.strip()
    covered = set(terms(text))
    for it in items:
        if it is base:
            continue
        for sent in re.split(r"(?<=[.!?;])\s+", it.content.strip()):
            new = set(terms(sent)) - covered
            if sent and new:
                sep = "" if text.endswith((".", "!", "?", ";")) else "."
                text = f"{text}{sep} {sent}"
                covered |= new
    return text


@dataclass(frozen=True)
class Consolidation:
    """A consolidation pass: the operations (MERGEs, and UPDATEs recording keep-apart decisions), the
    groups found (ids, best first) with their smallest pairwise cosine.

    >>> Consolidation((), ()).groups
    ()
    """

    ops: tuple[Op, ...]
    groups: tuple[tuple[tuple[str, ...], float], ...]


class Consolidator:
    """Finds near-duplicates and proposes MERGEs (grow-and-refine that is actually applied, unlike
    kayba's log-only dedup #135).

    - exact duplicates (same normalised text) always group; otherwise two items group when their
      embeddings' cosine is at least ``threshold`` (ACE uses 0.90 with its embedder; HashingEmbedder
      needs lower);
    - only items of the same kind (and, with ``within_section``, the same section and session) group;
      ``sections`` limits the pass to some sections, and the tiers' recall log is skipped by default;
    - the merged item keeps the id of the group's best item (by utility), the union of tags and links
      and the summed counters; the others are superseded by it (their history stays);
    - ``chat`` (optional) confirms each group and writes the merged text; a "keep" reply is
      remembered in both items' ``meta["distinct_from"]`` and never proposed again. Without a model,
      :func:`merge_text` writes the text.

    >>> from lifelong.context import open_store, HashingEmbedder, Add
    >>> s = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64))
    >>> _ = s.apply([Add("On 429 wait 2 s and back off", id="a", kind="bullet", section="api"),
    ...              Add("on 429, wait 2 s and back off!", id="b", kind="bullet", section="api"),
    ...              Add("Reports use SI units", id="c", kind="bullet", section="api")])
    >>> c = Consolidator(threshold=0.9).propose(s)
    >>> [(type(o).__name__, o.ids) for o in c.ops]
    [('Merge', ('a', 'b'))]
    >>> _ = s.apply(c.ops); s.get("b").superseded_by
    'a'
    """

    def __init__(self, *, threshold: float = 0.9, kinds: Sequence[str] = ("bullet", "note", "fact"),
                 within_section: bool = True, chat: Any | None = None, max_group: int = 8,
                 sections: Sequence[str] | None = None, skip_sections: Sequence[str] = SKIP_SECTIONS,
                 exact_below: int = 4000) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine in [-1, 1], got {threshold!r}")
        if max_group < 2:
            raise ValueError(f"max_group must be at least 2, got {max_group!r}")
        self.threshold, self.kinds, self.within_section = threshold, tuple(kinds), within_section
        self.chat, self.max_group, self.exact_below = chat, max_group, exact_below
        self.sections = None if sections is None else tuple(sections)
        self.skip_sections = tuple(skip_sections)

    def groups(self, store: Any) -> list[tuple[list[Item], float]]:
        """Near-duplicate groups among the store's current items (best item first), each with its
        smallest cosine to the group's first item. Buckets of up to ``exact_below`` items are compared
        exactly (row by row, memory linear in the bucket); larger ones through the store's
        nearest-neighbour index."""
        items = [i for i in store.items(with_embeddings=True) if i.status is Status.ACTIVE
                 and i.superseded_by is None and i.valid_until is None and i.kind.value in self.kinds
                 and PIN_TAG not in i.tags and i.section not in self.skip_sections
                 and (self.sections is None or i.section in self.sections)]
        buckets: dict[tuple[Any, ...], list[Item]] = {}
        for it in items:
            key = (it.kind, it.section, it.session, it.scope) if self.within_section else (it.kind, it.scope)
            buckets.setdefault(key, []).append(it)
        out: list[tuple[list[Item], float]] = []
        for _, members in sorted(buckets.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
            members.sort(key=lambda i: (-i.utility, -i.helpful, i.created_at, i.id))
            out += self._group_bucket(store, members)
        return out

    def _group_bucket(self, store: Any, members: list[Item]) -> list[tuple[list[Item], float]]:
        vecs = np.stack([_unit(i) for i in members])
        norm = [" ".join(terms(i.content)) for i in members]
        same_text: dict[str, list[int]] = {}
        for j, t in enumerate(norm):
            same_text.setdefault(t, []).append(j)
        index = {m.id: j for j, m in enumerate(members)}
        ann = len(members) > self.exact_below and hasattr(store, "nearest")

        def near(a: int) -> dict[int, float]:
            if ann:
                found = store.nearest(vecs[a], k=4 * self.max_group)
                cand = {index[i]: float(s) for i, s in found if i in index and index[i] > a}
            else:
                sims = vecs[a + 1:] @ vecs[a]
                cand = {a + 1 + j: float(s) for j, s in enumerate(sims)}
            cand = {b: s for b, s in cand.items() if s >= self.threshold}
            cand.update({b: 1.0 for b in same_text[norm[a]] if b > a})
            return cand

        used: set[int] = set()
        out: list[tuple[list[Item], float]] = []
        for a in range(len(members)):
            if a in used:
                continue
            apart = set(members[a].meta.get("distinct_from", []))
            group, worst = [a], 1.0
            for b, sim in sorted(near(a).items()):
                if len(group) >= self.max_group:
                    break
                if b in used or members[b].id in apart or members[a].id in members[b].meta.get("distinct_from", []):
                    continue
                group.append(b)
                worst = min(worst, sim)
            if len(group) > 1:
                used.update(group)
                out.append(([members[g] for g in group], worst))
        return out

    def propose(self, store: Any) -> Consolidation:
        """MERGE operations for every group (and keep-apart UPDATEs where a model said so)."""
        ops: list[Op] = []
        found: list[tuple[tuple[str, ...], float]] = []
        for group, cos in self.groups(store):
            ids = tuple(i.id for i in group)
            found.append((ids, round(cos, 4)))
            decision, content = "merge", None
            if self.chat is not None:
                decision, content = self._ask(group)
            if decision == "keep":
                for it in group:
                    others = [x for x in ids if x != it.id]
                    ops.append(Update(id=it.id, meta={**it.meta, "distinct_from": sorted(
                        set(it.meta.get("distinct_from", [])) | set(others))}, expected_version=it.version,
                        justification="kept apart from near-duplicates: " + ", ".join(others), proposer="forgetting"))
                continue
            ops.append(Merge(ids=ids, content=content or merge_text(group), into=ids[0],
                             justification=f"near-duplicates (cosine >= {cos:.3f})", evidence=ids,
                             proposer="forgetting"))
        return Consolidation(tuple(ops), tuple(found))

    def _ask(self, group: Sequence[Item]) -> tuple[str, str | None]:
        listing = "\n".join(f"- [{i.id}] " + show_text(i.content, i.provenance.source,
                                                         i.provenance.trust.untrusted)  # type: ignore[union-attr]
                            for i in group)
        reply = get_mapping(parse_json_reply(self.chat.complete(  # type: ignore[union-attr]
            [{"role": "user", "content": MERGE_PROMPT.format(items=listing)}], max_tokens=512).text))
        decision = str(reply.get("decision", "")).lower()
        content = reply.get("content")
        if decision == "keep":
            return "keep", None
        if decision == "merge" and isinstance(content, str) and content.strip():
            return "merge", content.strip()
        return "merge", None  # unusable reply: merge deterministically


def _unit(item: Item) -> np.ndarray:
    v = np.asarray(item.embedding, dtype=np.float32) if item.embedding is not None else None
    if v is None or not np.all(np.isfinite(v)):
        raise ValueError(f"item {item.id!r} has no embedding; open the store with its embedder")
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


# ---------------------------------------------------------------------- contradiction
@runtime_checkable
class ContradictionDetector(Protocol):
    """``contradicts(new, old) -> bool``: whether the new statement means the old one no longer holds.
    Any object with that method plugs into :class:`ContradictionResolver`.

    >>> class SameFirstWord:
    ...     def contradicts(self, new: str, old: str) -> bool:
    ...         return new.split()[0] == old.split()[0] and new != old
    >>> isinstance(SameFirstWord(), ContradictionDetector), isinstance(RuleContradiction(), ContradictionDetector)
    (True, True)
    """

    def contradicts(self, new: str, old: str) -> bool:
        """True when ``new`` means ``old`` no longer holds."""
        ...


_FUNCTIONAL = {  # relations that hold one object at a time, grouped into families
    "is": "is", "are": "is",
    "lives in": "lives", "live in": "lives", "moved to": "lives", "lives at": "lives", "is based in": "lives",
    "works at": "works", "works for": "works", "work at": "works", "work for": "works",
    "is married to": "married", "prefers": "prefers", "prefer": "prefers",
}
_POSITIVE = {"likes", "like", "loves", "love", "enjoys", "enjoy", "adores", "adore"}
_NEGATIVE = {"hates", "hate", "dislikes", "dislike", "detests", "detest", "can't stand", "cannot stand"}
_VERBS = sorted(set(_FUNCTIONAL) | _POSITIVE | _NEGATIVE, key=len, reverse=True)
_STATEMENT = re.compile(
    r"^(?P<subj>[\w' -]+?)\s+(?P<neg>(?:does not|doesn't|do not|don't|no longer)\s+)?"
    r"(?P<verb>" + "|".join(re.escape(v) for v in _VERBS) + r")\s+(?P<neg2>not\s+|no longer\s+)?(?P<obj>.+)$")
_ARTICLES = re.compile(r"^(?:a|an|the)\s+")


@dataclass(frozen=True)
class Statement:
    """A simple fact parsed as subject, relation family, object and polarity.

    >>> RuleContradiction.parse("My name is Alice.")
    Statement(subject='my name', relation='is', object='alice', positive=True)
    """

    subject: str
    relation: str
    object: str
    positive: bool


class RuleContradiction:
    """The rule-based default detector, for short factual statements:

    - same subject and the same *functional* relation (is/are, lives in/moved to, works at/for, is
      married to, prefers) with different objects: "Alice lives in Paris" vs "Alice lives in Berlin"
      (an object that only adds words to the other, "Paris" vs "Paris, France", is a refinement);
    - same subject and object with opposite polarity: "I love Chinese food" vs "I hate Chinese food",
      "X is Y" vs "X is not Y".

    It is deliberately conservative about what it parses (one clause, subject first) and knows no
    synonyms; "Alice is tall" vs "Alice is a doctor" *is* flagged (both use "is"), so give facts one
    attribute each, or use :class:`LLMContradiction`.

    >>> rc = RuleContradiction()
    >>> rc.contradicts("My name is Bob", "My name is Alice"), rc.contradicts("I hate sushi", "I love sushi")
    (True, True)
    >>> rc.contradicts("Alice lives in Paris", "Alice works at Acme"), rc.contradicts("I like tea", "I like coffee")
    (False, False)
    """

    @staticmethod
    def parse(text: str) -> Statement | None:
        """The :class:`Statement` in a one-clause sentence, or None."""
        s = normalise(text).strip().rstrip(".!?").strip()
        s = re.sub(r"\s+", " ", s).replace("\u2019", "'")
        s = re.sub(r"^(?:now|currently|actually),?\s+", "", s)
        m = _STATEMENT.match(s)
        if not m:
            return None
        verb = m.group("verb")
        negated = bool(m.group("neg")) or bool(m.group("neg2"))
        if verb in _POSITIVE or verb in _NEGATIVE:
            relation, positive = "feels", (verb in _POSITIVE) != negated
        else:
            relation, positive = _FUNCTIONAL[verb], not negated
        obj = _ARTICLES.sub("", m.group("obj").strip())
        obj = re.sub(r"^(?:now|currently)\s+", "", obj)
        subj = _ARTICLES.sub("", m.group("subj").strip())
        if not subj or not obj:
            return None
        return Statement(subj, relation, obj, positive)

    def contradicts(self, new: str, old: str) -> bool:
        """Whether ``new`` contradicts ``old`` under the rules above."""
        a, b = self.parse(new), self.parse(old)
        if a is None or b is None or a.subject != b.subject or a.relation != b.relation:
            return False
        if a.object == b.object:
            return a.positive != b.positive
        if a.relation == "feels":
            return False  # liking tea says nothing about coffee
        ta, tb = set(terms(a.object)), set(terms(b.object))
        if ta <= tb or tb <= ta:
            return False  # a refinement ("Leeds" -> "Leeds, near the station"), not a change
        return a.positive and b.positive


class LLMContradiction:
    """A model decides (both statements are shown as quoted data). The reply must start with yes/no,
    or be JSON ``{"contradicts": true|false}``; anything else counts as no contradiction.

    >>> from lifelong.models.chat import ScriptedChat
    >>> LLMContradiction(ScriptedChat(['{"contradicts": true}'])).contradicts("I'm vegan now", "I eat steak daily")
    True
    """

    PROMPT = ("Does the NEW statement mean the OLD statement is no longer true (a knowledge update or a "
              "contradiction)? Answer yes or no.\n\nOLD:\n{old}\n\nNEW:\n{new}\n\nAnswer:")

    def __init__(self, chat: Any) -> None:
        self.chat = chat

    def contradicts(self, new: str, old: str) -> bool:
        """Ask the model."""
        prompt = self.PROMPT.format(old=show_text(old, "memory", True), new=show_text(new, "memory", True))
        text = self.chat.complete([{"role": "user", "content": prompt}], max_tokens=16).text.strip()
        data = parse_json_reply(text)
        if isinstance(data, Mapping) and isinstance(data.get("contradicts"), bool):
            return bool(data["contradicts"])
        return text.lower().startswith("yes")


@dataclass(frozen=True)
class Resolution:
    """What a new fact does: the operations (an ADD, or SUPERSEDEs that add it), and the ids it replaces.

    >>> Resolution((), ()).superseded
    ()
    """

    ops: tuple[Op, ...]
    superseded: tuple[str, ...]


class ContradictionResolver:
    """Turns a new fact into a SUPERSEDE of every stored fact it contradicts (among the ``k`` nearest
    current items of the same kind), or a plain ADD when it contradicts none.

    >>> from lifelong.context import open_store, HashingEmbedder, Add
    >>> s = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64))
    >>> ContradictionResolver(s).propose(Add("Bob works at Acme", kind="fact")).superseded
    ()
    """

    def __init__(self, store: Any, detector: ContradictionDetector | None = None, *, k: int = 10,
                 min_relevance: float = 0.0) -> None:
        self.store, self.detector, self.k = store, detector or RuleContradiction(), k
        self.min_relevance = min_relevance  # skip weak candidates (saves calls to a model detector)

    def propose(self, add: Add) -> Resolution:
        """The operations for ``add`` (given an id if it has none). Nothing is written."""
        if add.id is None:
            add = replace(add, id=new_id(add.section, add.kind))  # type: ignore[arg-type]
        hits = self.store.search(add.content, k=self.k, kinds=[add.kind], session=add.session)
        old = [h.item for h in hits if h.item.id != add.id and h.relevance >= self.min_relevance
               and self.detector.contradicts(add.content, h.item.content)]
        if not old:
            return Resolution((add,), ())
        ev = tuple(o.id for o in old)
        first = Supersede(id=old[0].id, new=add, justification=f"contradicted by {add.content!r}", evidence=ev,
                          proposer="forgetting")
        rest = [Supersede(id=o.id, by=add.id, justification=f"contradicted by {add.content!r}", evidence=ev,
                          proposer="forgetting") for o in old[1:]]
        return Resolution((first, *rest), ev)

    def apply(self, add: Add) -> Resolution:
        """Propose and apply."""
        r = self.propose(add)
        self.store.apply(list(r.ops))
        return r


__all__ = [
    "Consolidation", "Consolidator", "ContradictionDetector", "ContradictionResolver", "ForgettingPolicy",
    "LLMContradiction", "Resolution", "RuleContradiction", "Statement", "Sweep", "Utility", "beta_bounds",
    "beta_mean", "merge_text", "utility", "with_ttl",
]

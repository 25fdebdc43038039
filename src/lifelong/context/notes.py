"""A-MEM notes: each note carries keywords, tags, a one-sentence context and links to related notes;
adding a note links it to its nearest neighbours and may *evolve* those neighbours (their context and
tags, never their content).

Everything the learner decides comes back as operations (an ADD for the note, UPDATEs for the
neighbours) that the store validates and applies; nothing here writes to the store directly except
:meth:`NoteLearner.add`, which is ``store.apply(learner.propose(...).ops)``.

Two of A-MEM's bugs are closed by construction: neighbours are named by **item id**, never by their
rank in a result list (A-MEM's ``update_neighbor`` rewrote the earliest-inserted notes, #32, and its
suggested links came back as "0", "1", ..., #11), and opening a store never clears it (A-MEM calls
``client.reset()`` in its constructor).

>>> from lifelong.context import open_store, HashingEmbedder
>>> store = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64))
>>> notes = NoteLearner(store, min_similarity=0.2)
>>> first = notes.add("Alice's cat Miso likes tuna and sleeps on the radiator", id="cat")
>>> p = notes.propose("Miso the cat got sick after eating tuna", id="vet")
>>> p.links, [type(o).__name__ for o in p.ops]
(('cat',), ['Add', 'Update'])
>>> _ = store.apply(p.ops)
>>> store.get("cat").links, store.get("vet").meta["keywords"][:3]
(('vet',), ['miso', 'cat', 'got'])
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lifelong.context._reply import (
    as_str_list,
    first_sentence,
    get_mapping,
    keywords,
    parse_json_reply,
    show,
    show_text,
)
from lifelong.context.items import ItemKind, Provenance, check_id, check_text
from lifelong.context.ops import Add, Op, Update
from lifelong.context.plan import new_id
from lifelong.context.ranking import Hit
from lifelong.context.store import Applied, MemoryStore

NOTE_SECTION = "notes"

ANALYSE_PROMPT = """Analyse the note below and return a JSON object with:
- "keywords": at least 3 specific keywords (names, numbers, key concepts), most important first;
- "tags": at least 3 broad category tags;
- "context": one sentence that says what the note is about and why it matters.
Return only the JSON object.

Note:
{content}"""

EVOLVE_PROMPT = """A new note is being added to a memory. Below are the new note and its nearest existing
notes, each with its id. Decide which neighbours the new note should link to, and whether any
neighbour's context sentence or tags should change in light of the new note. Never change a note's
content. Refer to neighbours only by the ids given.

Return only a JSON object:
{{"links": ["<id>", ...],
  "neighbours": [{{"id": "<id>", "context": "<new context sentence or omit>", "tags": ["<full new tag list or omit>"]}}]}}

New note:
{note}

Neighbours:
{neighbours}"""


@dataclass(frozen=True)
class NoteAnalysis:
    """What note construction extracts from a note's text.

    >>> NoteAnalysis(("tuna",), ("pets",), "About a cat.").as_text("Miso eats tuna")
    'Miso eats tuna\\ntuna\\npets\\nAbout a cat.'
    """

    keywords: tuple[str, ...]
    tags: tuple[str, ...]
    context: str

    def as_text(self, content: str) -> str:
        """The text A-MEM embeds: content, keywords, tags and context together (without field labels,
        which would make every note look alike to a lexical embedder)."""
        return f"{content}\n{' '.join(self.keywords)}\n{' '.join(self.tags)}\n{self.context}"


@dataclass(frozen=True)
class NoteProposal:
    """The operations proposed for one new note, and what was decided on the way: the note's id, the
    neighbours considered (id, cosine), the links chosen, and anything a model suggested that was
    dropped (unknown ids, malformed entries), with the reason.

    >>> NoteProposal(ops=(), note_id="n1").dropped
    ()
    """

    ops: tuple[Op, ...]
    note_id: str
    analysis: NoteAnalysis | None = None
    neighbours: tuple[tuple[str, float], ...] = ()
    links: tuple[str, ...] = ()
    dropped: tuple[str, ...] = field(default=())


def analyse(content: str, chat: Any | None = None, *, untrusted: bool = False, source: str = "user",
            n_keywords: int = 5) -> NoteAnalysis:
    """Keywords, tags and a context sentence for a note: from ``chat`` (a
    :class:`~lifelong.models.chat.ChatModel`) when given, else deterministically (most frequent content
    words; the top keywords as tags; the first sentence as context). A reply that is not usable JSON
    falls back to the deterministic analysis for the missing fields.

    >>> analyse("Deploys happen on Tuesdays. Deploys need two approvals.").keywords[:3]
    ('deploy', 'happen', 'tuesday')
    >>> from lifelong.models.chat import ScriptedChat
    >>> chat = ScriptedChat(['{"keywords": ["deploy", "tuesday", "approval"], "tags": ["process"],'
    ...                      ' "context": "Release rules."}'])
    >>> analyse("Deploys happen on Tuesdays.", chat).context
    'Release rules.'
    """
    content = check_text(content, "note content", allow_empty=False)
    kws = keywords(content, n_keywords)
    fallback = NoteAnalysis(tuple(kws), tuple(kws[:3]), first_sentence(content))
    if chat is None:
        return fallback
    prompt = ANALYSE_PROMPT.format(content=show_text(content, source, untrusted))
    reply = get_mapping(parse_json_reply(chat.complete([{"role": "user", "content": prompt}], max_tokens=256).text))
    ctx = reply.get("context")
    return NoteAnalysis(
        tuple(as_str_list(reply.get("keywords"), 16)) or fallback.keywords,
        tuple(as_str_list(reply.get("tags"), 16)) or fallback.tags,
        ctx.strip()[:500] if isinstance(ctx, str) and ctx.strip() else fallback.context,
    )


class NoteLearner:
    """Proposes A-MEM note operations against a store.

    - ``k``: how many nearest notes to consider as neighbours; ``min_similarity``: the cosine a
      neighbour needs to be linked (HashingEmbedder cosines run lower than MiniLM's).
    - ``chat``: an optional model for note analysis and evolution; without one, analysis is
      deterministic and evolution is rule-based: the new note links to every neighbour above the
      threshold, each linked neighbour links back and gains the keywords the two notes share as tags.
    - ``evolve``: whether neighbours may change at all.

    >>> from lifelong.context import open_store, HashingEmbedder
    >>> s = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64))
    >>> NoteLearner(s).propose("First note ever", id="n0").ops[0].meta["context"]
    'First note ever'
    """

    def __init__(self, store: MemoryStore, *, chat: Any | None = None, k: int = 5, min_similarity: float = 0.3,
                 evolve: bool = True, section: str = NOTE_SECTION, max_tags: int = 12) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.store, self.chat, self.k, self.min_similarity = store, chat, k, min_similarity
        self.evolve, self.section, self.max_tags = evolve, section, max_tags

    # ------------------------------------------------------------------ proposing
    def propose(self, content: str | bytes, *, id: str | None = None, provenance: Provenance | Mapping[str, Any] | None = None,
                tags: Sequence[str] = (), at: float | None = None) -> NoteProposal:
        """The ADD for a new note (with keywords, tags, context in ``meta``, links to its neighbours by
        id) followed by UPDATEs of the neighbours it evolves. Nothing is written."""
        content = check_text(content, "note content", allow_empty=False)
        prov = Provenance.from_dict(provenance) if isinstance(provenance, Mapping) else (
            provenance or Provenance(source="user"))
        untrusted = prov.trust.untrusted  # type: ignore[union-attr]
        note_id = check_id(id) if id is not None else new_id(self.section, ItemKind.NOTE)
        info = analyse(content, self.chat, untrusted=untrusted, source=prov.source)
        note_tags = tuple(dict.fromkeys([*tags, *info.tags]))[: self.max_tags]
        info = NoteAnalysis(info.keywords, note_tags, info.context)
        vector = self.store.embedder.embed([info.as_text(content)])[0]
        hits = self._neighbours(vector, note_id)
        near = tuple((h.item.id, round(h.dense, 4)) for h in hits)
        linked = [h for h in hits if h.dense >= self.min_similarity]
        dropped: list[str] = []
        if self.chat is not None and self.evolve and hits:
            links, updates, dropped = self._evolve_with_model(content, info, note_id, hits, untrusted, prov.source)
        else:
            links = [h.item.id for h in linked]
            updates = self._evolve_by_rule(info, note_id, linked) if self.evolve else []
        meta = {"keywords": list(info.keywords), "context": info.context}
        add = Add(content, id=note_id, kind=ItemKind.NOTE, section=self.section, tags=info.tags,
                  links=tuple(links), provenance=prov, meta=meta, vector=np.asarray(vector, dtype=np.float32),
                  valid_from=at, justification="new note", proposer="notes")
        return NoteProposal((add, *updates), note_id, info, near, tuple(links), tuple(dropped))

    def add(self, content: str | bytes, **kw: Any) -> Applied:
        """Propose and apply a note in one step (keyword arguments as :meth:`propose`)."""
        p = self.propose(content, **kw)
        return self.store.apply(list(p.ops), at=kw.get("at"))

    def search(self, query: str, k: int = 5, *, expand_links: int = 1) -> list[Hit]:
        """Notes for a query, plus the notes linked from them (A-MEM's ``search_agentic``)."""
        return self.store.search(query, k=k, kinds=[ItemKind.NOTE], sections=[self.section],
                                 expand_links=expand_links)

    # ------------------------------------------------------------------ internals
    def _neighbours(self, vector: np.ndarray, note_id: str) -> list[Hit]:
        hits = self.store.search(None, vector=vector, k=self.k + 1, kinds=[ItemKind.NOTE], sections=[self.section])
        return [h for h in hits if h.item.id != note_id][: self.k]

    def _evolve_by_rule(self, info: NoteAnalysis, note_id: str, linked: Sequence[Hit]) -> list[Op]:
        ops: list[Op] = []
        mine = set(info.keywords)
        for h in linked:
            nb = h.item
            shared = [kw for kw in nb.meta.get("keywords", []) if kw in mine]
            new_tags = tuple(dict.fromkeys([*nb.tags, *shared]))[: self.max_tags]
            new_links = tuple(dict.fromkeys([*nb.links, note_id]))
            ops.append(Update(id=nb.id, tags=new_tags, links=new_links, expected_version=nb.version,
                              justification=f"linked to new note {note_id!r} (cosine {h.dense:.2f})",
                              evidence=(note_id,), proposer="notes"))
        return ops

    def _evolve_with_model(self, content: str, info: NoteAnalysis, note_id: str, hits: Sequence[Hit],
                           untrusted: bool, source: str) -> tuple[list[str], list[Op], list[str]]:
        by_id = {h.item.id: h.item for h in hits}
        listing = "\n".join(
            f"- id: {h.item.id}\n  context: {h.item.meta.get('context', '')}\n  tags: {', '.join(h.item.tags)}\n"
            f"  content: {show(h.item)}" for h in hits)
        note = f"{show_text(content, source, untrusted)}\nkeywords: {', '.join(info.keywords)}\n" \
               f"tags: {', '.join(info.tags)}\ncontext: {info.context}"
        prompt = EVOLVE_PROMPT.format(note=note, neighbours=listing)
        reply = get_mapping(parse_json_reply(
            self.chat.complete([{"role": "user", "content": prompt}], max_tokens=512).text))  # type: ignore[union-attr]
        dropped: list[str] = []
        links: list[str] = []
        for x in as_str_list(reply.get("links")):
            if x in by_id:
                links.append(x)
            else:
                dropped.append(f"link {x!r}: not one of the neighbour ids {sorted(by_id)}")
        ops: list[Op] = []
        for entry in reply.get("neighbours") or []:
            entry = get_mapping(entry)
            nid = entry.get("id")
            if not isinstance(nid, str) or nid not in by_id:
                dropped.append(f"neighbour update for {nid!r}: not one of the neighbour ids {sorted(by_id)}")
                continue
            nb = by_id[nid]
            changes: dict[str, Any] = {}
            ctx = entry.get("context")
            if isinstance(ctx, str) and ctx.strip() and ctx.strip() != nb.meta.get("context"):
                changes["meta"] = {**nb.meta, "context": ctx.strip()[:500]}
            if "tags" in entry:
                new_tags = tuple(as_str_list(entry.get("tags"), self.max_tags))
                if new_tags and new_tags != nb.tags:
                    changes["tags"] = new_tags
            if nid in links:
                changes["links"] = tuple(dict.fromkeys([*nb.links, note_id]))
            if changes:
                ops.append(Update(id=nid, expected_version=nb.version, **changes,
                                  justification=f"evolved by new note {note_id!r}: "
                                                + json.dumps(sorted(changes)), evidence=(note_id,),
                                  proposer="notes"))
        updated = {o.id for o in ops if isinstance(o, Update)}
        for x in links:  # a link the model chose but gave no update for still links back
            if x not in updated:
                nb = by_id[x]
                ops.append(Update(id=x, links=tuple(dict.fromkeys([*nb.links, note_id])), expected_version=nb.version,
                                  justification=f"linked to new note {note_id!r}", evidence=(note_id,),
                                  proposer="notes"))
        return links, ops, dropped


__all__ = ["NoteAnalysis", "NoteLearner", "NoteProposal", "analyse"]

"""MemGPT/Letta memory tiers over the store: core blocks (always in context, each with a character
limit), a recall log (every message of a session), archival memory (searchable passages), and
compaction of the in-context message window when it exceeds a token budget.

The guarantees are the ones Letta's users found missing:

- an edit that would take a block over its limit is rejected **before** anything is written, with an
  error that gives the sizes and the fix (Letta PR #1616 applied an over-limit edit although validation
  failed); a ``replace`` whose old text is empty or not found exactly once is rejected too;
- compaction never deletes: evicted messages stay in the recall log, and the summary that replaces
  them in context is an item that links to every message it covers (Letta #2601 wiped all messages).

>>> from lifelong.context import open_store, HashingEmbedder
>>> store = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64))
>>> mem = TieredMemory(store, session="s1", budget=60)
>>> _ = mem.core.create("human", "Name: Alice.", limit=40)
>>> mem.core.append("human", " Likes tea and long walks by the river.")
Traceback (most recent call last):
...
lifelong.context.errors.BlockLimitError: block 'human': the edit would make it 51 characters, over its limit of 40 (it has 12 now); nothing was changed. Shorten the edit, move details to archival memory, or raise the limit with set_limit('human', ...)
>>> store.get("human").content
'Name: Alice.'
>>> for n in range(6):
...     _ = mem.log("user", f"Message number {n} about the garden and the roses.")
>>> s = mem.summaries()[-1]
>>> len(s.links) >= 2 and all(store.get(i).status.value == "active" for i in s.links)
True
>>> mem.context_tokens() <= 60
True
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lifelong.context._reply import first_sentence, show, slug
from lifelong.context.errors import BlockLimitError, InvalidOpError, ItemNotFoundError
from lifelong.context.items import (
    DEFAULT_BLOCK_LIMIT,
    Item,
    ItemKind,
    Provenance,
    Status,
    check_id,
    check_text,
    text_hash,
)
from lifelong.context.ops import Add, Op, Update
from lifelong.context.ranking import Hit
from lifelong.context.store import Applied, MemoryStore
from lifelong.context.text import count_tokens

CORE_SECTION = "core"
RECALL_SECTION = "recall"
SUMMARY_SECTION = "recall-summary"
ARCHIVAL_SECTION = "archival"

SUMMARY_PROMPT = """Summarise the conversation below so that it can replace it in your context. Keep
every name, number, date, decision and open question. Write at most {words} words.
{previous}
Messages:
{messages}

Summary:"""


class CoreMemory:
    """Core memory blocks: items of kind ``block`` whose id is the block's label, each with a character
    limit. Every edit is checked against the limit before it is proposed, and applied with the version
    it was checked against (a concurrent edit makes it fail, not overwrite).

    >>> from lifelong.context import open_store, HashingEmbedder
    >>> s = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(32))
    >>> core = CoreMemory(s)
    >>> _ = core.create("persona", "I am terse.", limit=30, description="who the agent is")
    >>> _ = core.replace("persona", "terse", "terse and exact")
    >>> print(core.render())
    <persona chars="21/30" description="who the agent is">
    I am terse and exact.
    </persona>
    >>> core.replace("persona", "", "x")
    Traceback (most recent call last):
    ...
    lifelong.context.errors.InvalidOpError: block 'persona': the text to replace is empty; quote the exact text to change (use append to add text)
    """

    def __init__(self, store: MemoryStore, *, section: str = CORE_SECTION) -> None:
        self.store, self.section = store, section
        self._cache: tuple[int, list[Item]] | None = None

    # ------------------------------------------------------------------ reading
    def blocks(self) -> list[Item]:
        """Every active block of this section, by label (re-read only after the tenant changed)."""
        seq = self.store.seq
        if self._cache is None or self._cache[0] != seq:
            self._cache = (seq, [i for i in self.store.items() if i.kind is ItemKind.BLOCK
                                 and i.section == self.section and i.status is Status.ACTIVE
                                 and i.superseded_by is None])
        return list(self._cache[1])

    def get(self, label: str) -> Item:
        """One block; :class:`ItemNotFoundError` naming the labels there are."""
        check_id(label, "block label")
        try:
            item = self.store.get(label)
        except ItemNotFoundError:
            item = None
        if item is None or item.kind is not ItemKind.BLOCK or item.status is not Status.ACTIVE:
            labels = [b.id for b in self.blocks()]
            raise ItemNotFoundError(f"no core memory block {label!r}; the blocks are {labels or 'none yet'} "
                                    "(create one with create())")
        return item

    def render(self) -> str:
        """The blocks as the model sees them, each with its size and limit (Letta shows
        ``chars_current/chars_limit`` so the agent knows its budget). Untrusted content is quoted."""
        out = []
        for b in self.blocks():
            desc = b.meta.get("description")
            attrs = f' chars="{len(b.content)}/{b.limit}"' + (f' description="{html.escape(desc)}"' if desc else "")
            out.append(f"<{b.id}{attrs}>\n{show(b)}\n</{b.id}>")
        return "\n".join(out)

    # ------------------------------------------------------------------ proposing
    def propose_create(self, label: str, value: str = "", *, limit: int = DEFAULT_BLOCK_LIMIT,
                       description: str = "", provenance: Provenance | None = None) -> list[Op]:
        """The ADD of a new block (checked against its limit first)."""
        check_id(label, "block label")
        value = check_text(value, f"block {label!r} value")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise InvalidOpError(f"block {label!r}: limit must be a positive number of characters, got {limit!r}")
        if len(value) > limit:
            raise BlockLimitError(f"block {label!r}: the initial value has {len(value)} characters, over its limit "
                                  f"of {limit}; nothing was created. Shorten it or give a larger limit")
        meta = {"description": check_text(description, "description")} if description else {}
        return [Add(value, id=label, kind=ItemKind.BLOCK, section=self.section, limit=limit, meta=meta,
                    provenance=provenance or Provenance(source="agent", trust="model"),
                    justification=f"create core block {label!r}", proposer="tiers")]

    def propose_edit(self, label: str, *, append: str | None = None, replace: tuple[str, str] | None = None,
                     rewrite: str | None = None, justification: str = "") -> list[Op]:
        """The UPDATE for one edit (exactly one of ``append``, ``replace`` = (old, new), ``rewrite``),
        computed and checked against the block's limit before it is proposed."""
        given = [n for n, v in (("append", append), ("replace", replace), ("rewrite", rewrite)) if v is not None]
        if len(given) != 1:
            raise InvalidOpError(f"block {label!r}: give exactly one of append, replace, rewrite (got {given or 'none'})")
        block = self.get(label)
        if append is not None:
            new = block.content + check_text(append, "append")
        elif rewrite is not None:
            new = check_text(rewrite, "rewrite")
        else:
            old, repl = (check_text(x, "replace") for x in replace)  # type: ignore[union-attr]
            if not old:
                raise InvalidOpError(f"block {label!r}: the text to replace is empty; quote the exact text to "
                                     "change (use append to add text)")
            n = block.content.count(old)
            if n != 1:
                raise InvalidOpError(f"block {label!r}: {old[:40]!r} occurs {n} times; it must occur exactly once "
                                     "(quote more of the surrounding text)")
            new = block.content.replace(old, repl)
        limit = block.limit or DEFAULT_BLOCK_LIMIT
        if len(new) > limit:
            raise BlockLimitError(
                f"block {label!r}: the edit would make it {len(new)} characters, over its limit of {limit} (it has "
                f"{len(block.content)} now); nothing was changed. Shorten the edit, move details to archival "
                f"memory, or raise the limit with set_limit({label!r}, ...)")
        return [Update(id=label, content=new, expected_version=block.version, proposer="tiers",
                       justification=justification or f"core memory {given[0]} on {label!r}")]

    # ------------------------------------------------------------------ applying
    def create(self, label: str, value: str = "", **kw: Any) -> Applied:
        """Create a block (see :meth:`propose_create`)."""
        return self.store.apply(self.propose_create(label, value, **kw))

    def append(self, label: str, text: str) -> Applied:
        """Letta's ``core_memory_append``, limit checked first."""
        return self.store.apply(self.propose_edit(label, append=text))

    def replace(self, label: str, old: str, new: str) -> Applied:
        """Letta's ``core_memory_replace``: ``old`` must occur exactly once and not be empty."""
        return self.store.apply(self.propose_edit(label, replace=(old, new)))

    def rewrite(self, label: str, value: str) -> Applied:
        """Replace the whole value (``rethink_memory``), limit checked first."""
        return self.store.apply(self.propose_edit(label, rewrite=value))

    def set_limit(self, label: str, limit: int) -> Applied:
        """Change a block's limit; lowering it below the current length is rejected (shorten first)."""
        block = self.get(label)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise InvalidOpError(f"block {label!r}: limit must be a positive number of characters, got {limit!r}")
        if len(block.content) > limit:
            raise BlockLimitError(f"block {label!r} has {len(block.content)} characters, more than the new limit "
                                  f"{limit}; nothing was changed. Shorten the block first")
        return self.store.apply([Update(id=label, limit=limit, expected_version=block.version, proposer="tiers",
                                        justification=f"limit of {label!r} set to {limit}")])


@dataclass(frozen=True)
class Compaction:
    """What one compaction did: the summary item written, the messages it covers (ids, all kept in the
    recall log), and the context tokens before and after.

    >>> Compaction("sum-1", ("m1", "m2"), 120, 40).covered
    ('m1', 'm2')
    """

    summary_id: str
    covered: tuple[str, ...]
    tokens_before: int
    tokens_after: int


class TieredMemory:
    """Core blocks, a recall log and archival memory for one session, with compaction.

    The in-context window is: the core blocks, the latest summary, and the messages after the last
    message that summary covers. When :meth:`log` makes the window exceed ``budget`` tokens (as counted
    by ``count``), the oldest messages in context, all but the newest ``keep_fraction`` of them, are
    folded into a new summary (which also folds in the previous summary, so summaries are recursive)
    and the window shrinks. The summary is an item of section ``recall-summary`` whose ``links`` (and
    ``meta["covers"]``) name every message and the earlier summary it replaces in context.

    ``summarize`` turns (previous summary, messages) into text; the default is ``chat`` when given, else
    an extractive summary (the first sentence of each message). Summaries are capped at
    ``summary_fraction`` of the budget; nothing is lost by the cap, since every message stays linked.

    >>> from lifelong.context import open_store, HashingEmbedder
    >>> s = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64))
    >>> mem = TieredMemory(s, session="chat-1", budget=1000)
    >>> _ = mem.archival_insert("Alice's passport number ends in 4471", tags=("alice", "documents"))
    >>> [h.item.content for h in mem.archival_search("passport")]
    ["Alice's passport number ends in 4471"]
    >>> _ = mem.log("user", "Book a table for two at 7 pm")
    >>> [h.item.content for h in mem.recall_search("table booking")]
    ['Book a table for two at 7 pm']
    """

    def __init__(self, store: MemoryStore, *, session: str, budget: int = 4000, keep_fraction: float = 0.5,
                 summary_fraction: float = 0.25, chat: Any | None = None,
                 summarize: Callable[[Item | None, Sequence[Item]], str] | None = None,
                 count: Callable[[str], int] = count_tokens, core_section: str = CORE_SECTION) -> None:
        check_text(session, "session", allow_empty=False)
        if not isinstance(budget, int) or budget <= 0:
            raise ValueError(f"budget must be a positive number of tokens, got {budget!r}")
        if not 0.0 <= keep_fraction < 1.0:
            raise ValueError(f"keep_fraction must be in [0, 1), got {keep_fraction!r}")
        if not 0.0 < summary_fraction < 1.0:
            raise ValueError(f"summary_fraction must be in (0, 1), got {summary_fraction!r}")
        self.store, self.session, self.budget = store, session, budget
        self.keep_fraction, self.summary_fraction = keep_fraction, summary_fraction
        self.chat, self.count = chat, count
        self._summarize = summarize
        self.core = CoreMemory(store, section=core_section)
        self._key = f"{slug(session, 30) or 'session'}-{text_hash(session)[:6]}"
        self._cache: tuple[int, list[Item], list[Item]] | None = None
        self.compactions: list[Compaction] = []

    # ------------------------------------------------------------------ recall log
    def messages(self) -> list[Item]:
        """Every message of this session, oldest first (compaction removes none)."""
        return list(self._scan()[0])

    def summaries(self) -> list[Item]:
        """Every summary of this session, oldest first."""
        return list(self._scan()[1])

    def _scan(self) -> tuple[list[Item], list[Item]]:
        """This session's messages and summaries, re-read only when the tenant's write sequence moved
        (so a window computed several times per message costs one scan)."""
        seq = self.store.seq
        if self._cache is None or self._cache[0] != seq:
            msgs, sums = [], []
            for i in self.store.items():
                if i.session != self.session:
                    continue
                if i.section == RECALL_SECTION:
                    msgs.append(i)
                elif i.section == SUMMARY_SECTION:
                    sums.append(i)
            msgs.sort(key=lambda i: i.meta.get("seq", 0))
            sums.sort(key=lambda i: i.meta.get("through", 0))
            self._cache = (seq, msgs, sums)
        return self._cache[1], self._cache[2]

    def log(self, role: str, content: str | bytes, *, trust: str | None = None, compact: bool = True) -> Applied:
        """Append a message to the recall log (and the in-context window); compacts when the window is
        over budget. Tool output is stored as untrusted (quoted when shown to a model)."""
        role = check_text(role, "role", allow_empty=False)
        content = check_text(content, "message", allow_empty=False)
        msgs = self._scan()[0]
        seq = (msgs[-1].meta.get("seq", 0) if msgs else 0) + 1
        trust = trust or ("tool" if role == "tool" else "model" if role == "assistant" else "user")
        applied = self.store.apply([Add(content, id=f"msg-{self._key}-{seq:07d}", kind=ItemKind.NOTE,
                                        section=RECALL_SECTION, scope="session", session=self.session,
                                        tags=(role,), meta={"role": role, "seq": seq},
                                        provenance=Provenance(source=role, trust=trust),
                                        justification="recall log", proposer="tiers")])
        if compact and self.context_tokens() > self.budget:
            self.compact()
        return applied

    def recall_search(self, query: str, k: int = 5) -> list[Hit]:
        """Search this session's messages (Letta's ``conversation_search``), including compacted ones."""
        return self.store.search(query, k=k, sections=[RECALL_SECTION], session=self.session)

    # ------------------------------------------------------------------ archival
    def archival_insert(self, content: str | bytes, *, tags: Sequence[str] = (),
                        provenance: Provenance | None = None) -> Applied:
        """Store a passage in archival memory (tenant-wide, across sessions)."""
        return self.store.apply([Add(check_text(content, "passage", allow_empty=False), kind=ItemKind.FACT,
                                     section=ARCHIVAL_SECTION, tags=tuple(tags),
                                     provenance=provenance or Provenance(source="agent", trust="model"),
                                     justification="archival insert", proposer="tiers")])

    def archival_search(self, query: str, k: int = 5, *, tags: Sequence[str] = ()) -> list[Hit]:
        """Search archival memory (hybrid; ``tags`` boost passages carrying them)."""
        return self.store.search(query, k=k, sections=[ARCHIVAL_SECTION], tags=tags)

    # ------------------------------------------------------------------ the window
    def in_context(self) -> tuple[Item | None, list[Item]]:
        """The latest summary (or None) and the messages after it."""
        sums = self.summaries()
        last = sums[-1] if sums else None
        through = last.meta.get("through", 0) if last else 0
        return last, [m for m in self.messages() if m.meta.get("seq", 0) > through]

    def context(self) -> str:
        """The in-context text: core blocks, the running summary, recent messages."""
        summary, msgs = self.in_context()
        return self._render(self.core.render(), summary, msgs)

    def context_tokens(self) -> int:
        """Tokens of :meth:`context`."""
        return self.count(self.context())

    def _render(self, core: str, summary: Item | None, msgs: Sequence[Item]) -> str:
        parts = []
        if core:
            parts.append(f"<core_memory>\n{core}\n</core_memory>")
        if summary is not None:
            parts.append(f"<summary covers=\"{len(summary.meta.get('covers', []))} messages\">\n"
                         f"{summary.content}\n</summary>")
        parts += [f"{m.meta.get('role', 'user')}: {show(m)}" for m in msgs]
        return "\n".join(parts)

    def compact(self) -> Compaction | None:
        """Fold the oldest in-context messages into a new summary (see the class docs). Returns None when
        there is nothing to fold (fewer than two messages in context)."""
        before = self.context_tokens()
        summary, msgs = self.in_context()
        if len(msgs) < 2:
            return None
        keep = int(len(msgs) * self.keep_fraction)
        fold = msgs[: max(len(msgs) - keep, 1)]
        rest = msgs[len(fold):]
        core = self.core.render()
        # Fold more when the kept tail alone would still overflow (keep at least the newest message).
        while len(rest) > 1 and self.count(self._render(core, summary, rest)) > self.budget * (1 - self.summary_fraction):
            fold, rest = msgs[: len(fold) + 1], msgs[len(fold) + 1:]
        # The summary gets at most summary_fraction of the budget, and no more than what is left once the
        # core blocks, the summary's frame and the kept messages are counted.
        frame = Item(id="frame", content="", meta={"covers": [m.id for m in fold]})
        room = self.budget - self.count(self._render(core, frame, rest))
        cap = max(min(int(self.budget * self.summary_fraction), room), 2)
        text = self._make_summary(summary, fold, cap)
        if self.count(text) > cap:
            text = _clip_tokens(text, cap - 1, self.count) + " …"
        covers = [m.id for m in fold]
        links = ([summary.id] if summary is not None else []) + covers
        through = fold[-1].meta["seq"]
        sid = f"sum-{self._key}-{through:07d}"
        self.store.apply([Add(text, id=sid, kind=ItemKind.NOTE, section=SUMMARY_SECTION, scope="session",
                              session=self.session, links=tuple(links),
                              meta={"covers": covers, "through": through,
                                    "previous": summary.id if summary is not None else None},
                              provenance=Provenance(source=getattr(self.chat, "name", "extractive"), trust="model"),
                              justification=f"compaction: context {before} tokens over budget {self.budget}",
                              evidence=tuple(covers[:20]), proposer="tiers")])
        done = Compaction(sid, tuple(covers), before, self.context_tokens())
        self.compactions.append(done)
        return done

    def _make_summary(self, previous: Item | None, msgs: Sequence[Item], cap: int) -> str:
        if self._summarize is not None:
            return check_text(self._summarize(previous, msgs), "summary", allow_empty=False)
        if self.chat is not None:
            words = max(int(self.budget * self.summary_fraction * 0.7), 10)
            prev = f"\nSummary of earlier messages:\n{previous.content}\n" if previous is not None else ""
            listing = "\n".join(f"{m.meta.get('role', 'user')}: {show(m)}" for m in msgs)
            prompt = SUMMARY_PROMPT.format(words=words, previous=prev, messages=listing)
            text = self.chat.complete([{"role": "user", "content": prompt}], max_tokens=2 * words).text.strip()
            if text:
                return text
        # Extractive: the first sentence of each folded message; when over the cap, the older part (the
        # previous summary) gives way first, so the newest folded messages survive the clip.
        new = "\n".join(f"{m.meta.get('role', 'user')}: {first_sentence(m.content, 160)}" for m in msgs)
        if previous is None:
            return new
        room = cap - self.count(new) - 2
        old = previous.content if self.count(previous.content) <= room else (
            "… " + _clip_tokens_tail(previous.content, room, self.count) if room > 2 else "")
        return f"{old}\n{new}" if old else new


def _clip_tokens(text: str, n: int, count: Callable[[str], int]) -> str:
    """The longest word-prefix of ``text`` with at most ``n`` tokens (binary search on words).

    >>> _clip_tokens("one two three four", 2, count_tokens)
    'one two'
    """
    words = text.split(" ")
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= n:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def _clip_tokens_tail(text: str, n: int, count: Callable[[str], int]) -> str:
    """The longest word-suffix of ``text`` with at most ``n`` tokens.

    >>> _clip_tokens_tail("one two three four", 2, count_tokens)
    'three four'
    """
    words = text.split(" ")
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[len(words) - mid:])) <= n:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[len(words) - lo:]) if lo else ""


__all__ = ["Compaction", "CoreMemory", "TieredMemory"]

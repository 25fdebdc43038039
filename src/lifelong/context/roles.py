"""ACE's three roles: a generator that answers and cites bullet ids, a reflector that tags the cited bullets
and extracts lessons, and a curator that turns lessons into *delta* operations. Each role comes as a
deterministic rule (for tests, benchmarks and LLM-free use) and as an LLM-backed role over any
:class:`~lifelong.models.chat.ChatModel`.

The curator never rewrites the playbook: it proposes ADD, UPDATE, MERGE, SUPERSEDE, TAG or DELETE
operations, which code validates and applies (ACE's "incremental delta + deterministic merge"; a
monolithic rewrite collapsed a context from 18,282 tokens to 122). An LLM curator's reply is parsed
from JSON with errors that quote the reply and say what was expected; a proposal that would drop a
number or a named specific from a bullet (an UPDATE that rewrites it, a MERGE) is rejected before it
applies. Content from the environment (questions, feedback) reaches a model as quoted data.

Prompts are written for this package; their structure (inputs and JSON fields) follows ACE's
``ace/prompts/{generator,reflector,curator}.py``.

>>> from lifelong.context.items import Item
>>> refl = RuleReflector().reflect("2+2?", Generation("5", cited=("m-1",)), Feedback(False, target="4"),
...                                [Item(id="m-1", content="add carefully")])
>>> refl.tags, refl.lessons[0].content
({'m-1': <TagValue.HARMFUL: 'harmful'>}, "For '2+2?' the answer is 4.")
>>> parse_operations('Sure! {"operations": [{"op": "ADD", "section": "math", "content": "2+2 is 4"}]}')
[Add(content='2+2 is 4', id=None, kind=<ItemKind.BULLET: 'bullet'>, section='math', tags=(), links=(), scope=<Scope.USER: 'user'>, session=None, provenance=Provenance(source='curator', trust=<Trust.MODEL: 'model'>, episode=None), limit=None, meta={}, valid_from=None, valid_until=None, justification='', evidence=(), proposer='curator')]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from lifelong.context._reply import parse_json_reply
from lifelong.context.errors import InvalidOpError, MemoryStoreError
from lifelong.context.items import Item, ItemKind, Provenance, TagValue, Trust
from lifelong.context.ops import Add, Delete, Merge, Op, Supersede, Tag, Update, op_from_dict
from lifelong.models.chat import ChatModel, quote_untrusted

if TYPE_CHECKING:
    from lifelong.context.playbook import Playbook


class CuratorOutputError(MemoryStoreError, ValueError):
    """A role's reply could not be turned into valid operations (no JSON, wrong shape, an invalid
    operation, or an edit that drops specifics). The message quotes the reply."""


# ---------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Generation:
    """A generator's answer, the bullet ids it relied on (ACE's credit-assignment hook), its reasoning.

    >>> Generation("42", cited=["b-1"]).cited
    ('b-1',)
    """

    answer: str
    cited: tuple[str, ...] = ()
    reasoning: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cited", tuple(self.cited))


@dataclass(frozen=True)
class Feedback:
    """What the environment said about an answer: correct or not, the expected answer when known
    (ground truth), and a free-text message (environment feedback, ACE's no-ground-truth mode)."""

    correct: bool
    target: str | None = None
    message: str = ""


@dataclass(frozen=True)
class Lesson:
    """One thing learned. ``key`` names what the lesson is about (a rule, an endpoint, an entity): a
    new lesson with the same key and other content *contradicts* the bullet that has that key.

    >>> Lesson("Retry 429s after 2 s", section="api", key="api:429").key
    'api:429'
    """

    content: str
    section: str = "general"
    key: str | None = None
    evidence: tuple[str, ...] = ()
    justification: str = ""

    def __post_init__(self) -> None:
        ev = self.evidence
        object.__setattr__(self, "evidence", (ev,) if isinstance(ev, str) else tuple(ev))


@dataclass(frozen=True)
class Reflection:
    """A reflector's verdict: a tag per cited bullet, and lessons for the curator."""

    tags: Mapping[str, TagValue] = field(default_factory=dict)
    lessons: tuple[Lesson, ...] = ()
    reasoning: str = ""


# ---------------------------------------------------------------------------------------- specifics
_UNITS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s", "ms": "ms", "millisecond": "ms",
    "milliseconds": "ms", "min": "min", "mins": "min", "minute": "min", "minutes": "min", "h": "h", "hr": "h",
    "hrs": "h", "hour": "h", "hours": "h", "day": "d", "days": "d", "d": "d", "kb": "kb", "mb": "mb", "gb": "gb",
    "%": "%", "percent": "%", "kg": "kg", "g": "g", "lb": "lb", "lbs": "lb", "cm": "cm", "mm": "mm", "m": "m",
    "km": "km", "utc": "utc",
}
_SPECIFIC = re.compile(
    r"(?<![\w.])(\d+(?:[.:]\d+)*)(?:\s*(%|[a-zA-Z]+)\b)?"  # a number, with the word after it
    r"|(?<!\w)(/[\w/.{}-]+)"  # a path
    r"|\b([A-Z][A-Z0-9_-]{1,})\b"  # an ALL-CAPS name: POST, UTC, X-API-KEY
)


def specifics(text: str) -> set[str]:
    """The specifics of a text: numbers (with their unit, normalised: "2 seconds" and "2s" are both
    ``"2 s"``), paths and ALL-CAPS names. What a merge or an edit must never lose.

    >>> sorted(specifics("On HTTP 429 wait 2 seconds (max 5 attempts), never retry POST /charges"))
    ['/charges', '2 s', '429', '5', 'http', 'post']
    """
    out: set[str] = set()
    for num, word, path, caps in _SPECIFIC.findall(text):
        if num:
            unit = _UNITS.get(word.lower()) if word else None
            out.add(f"{num} {unit}" if unit else num)
        elif path:
            out.add(path.rstrip(".").lower())
        elif caps:
            out.add(caps.lower())
    return out


def lost_specifics(sources: Sequence[str], result: str) -> set[str]:
    """Specifics of ``sources`` that ``result`` no longer has.

    >>> sorted(lost_specifics(["wait 2 s, at most 5 tries", "only GET"], "wait 2 seconds, only GET"))
    ['5']
    """
    have = specifics(result)
    return {s for text in sources for s in specifics(text)} - have


# ---------------------------------------------------------------------------------------- JSON


def extract_json(text: str) -> Any:
    """The first JSON value in a model's reply: a fenced block, else the first balanced ``{...}`` or
    ``[...]`` that parses. Raises :class:`CuratorOutputError` quoting the reply when there is none.

    >>> extract_json('Here you go:\\n```json\\n{"a": [1, 2]}\\n```')
    {'a': [1, 2]}
    >>> extract_json("I think we should add a bullet")
    Traceback (most recent call last):
    ...
    lifelong.context.roles.CuratorOutputError: no JSON object or list in the reply 'I think we should add a bullet'; reply with JSON only, e.g. {"operations": [{"op": "ADD", "section": "...", "content": "..."}]}
    """
    value = parse_json_reply(text)
    if value is not None:
        return value
    raise CuratorOutputError(
        f"no JSON object or list in the reply {_excerpt(text)!r}; reply with JSON only, e.g. "
        '{"operations": [{"op": "ADD", "section": "...", "content": "..."}]}'
    )


def _excerpt(text: str, n: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def parse_operations(text: str, *, proposer: str = "curator", max_ops: int = 32) -> list[Op]:
    """Delta operations from a curator's reply: ``{"operations": [...]}``, a bare list, or one
    operation object. ADDs default to bullets with the proposer's provenance (trust ``model``).

    >>> parse_operations('{"operations": [{"op": "REWRITE", "content": "everything"}]}')
    Traceback (most recent call last):
    ...
    lifelong.context.roles.CuratorOutputError: operation 0: unknown operation 'REWRITE'; use one of ADD, UPDATE, MERGE, SUPERSEDE, DELETE, TAG (reply: '{"operations": [{"op": "REWRITE", "content": "everything"}]}')
    """
    data = extract_json(text)
    if isinstance(data, Mapping) and "operations" in data:
        data = data["operations"]
    elif isinstance(data, Mapping) and ("op" in data or "type" in data):
        data = [data]
    if not isinstance(data, list):
        raise CuratorOutputError(
            f"expected a list of operations or {{\"operations\": [...]}}, got {type(data).__name__} "
            f"(reply: {_excerpt(text)!r})"
        )
    if len(data) > max_ops:
        raise CuratorOutputError(f"{len(data)} operations in one reply, over the limit of {max_ops}; propose fewer")
    ops: list[Op] = []
    for i, d in enumerate(data):
        if isinstance(d, Mapping) and str(d.get("op", d.get("type", ""))).upper() == "ADD":
            d = {"kind": "bullet", "provenance": {"source": proposer, "trust": "model"}, **d}
        if isinstance(d, Mapping):
            d = {"proposer": proposer, **{k: v for k, v in d.items() if k != "type"},
                 "op": d.get("op", d.get("type"))}
        try:
            ops.append(op_from_dict(d, i))
        except InvalidOpError as err:
            raise CuratorOutputError(f"{err} (reply: {_excerpt(text)!r})") from None
    return ops


def check_keeps_specifics(ops: Sequence[Op], lookup: Callable[[str], Item]) -> None:
    """Reject edits that drop a specific from a bullet: an UPDATE with new ``content`` or a ``replace``,
    a MERGE whose content lacks a number or name its sources had. SUPERSEDE is how a fact is replaced
    on purpose (the old item is kept, closed); DELETE is explicit too.

    >>> from lifelong.context.items import Item
    >>> old = {"r": Item(id="r", content="On 429 wait 2 s, at most 5 attempts")}
    >>> check_keeps_specifics([Update(id="r", content="On 429 back off")], old.__getitem__)
    Traceback (most recent call last):
    ...
    lifelong.context.roles.CuratorOutputError: UPDATE of 'r' drops 2 s, 5; keep every number and name, or SUPERSEDE the bullet
    """
    for op in ops:
        if isinstance(op, Update) and (op.content is not None or op.replace is not None):
            before = lookup(op.id).content
            after = op.content if op.content is not None else before.replace(*op.replace)  # type: ignore[misc]
            lost = lost_specifics([before], after)
            if lost:
                raise CuratorOutputError(f"UPDATE of {op.id!r} drops {', '.join(sorted(lost))}; keep every number "
                                         "and name, or SUPERSEDE the bullet")
        elif isinstance(op, Merge):
            lost = lost_specifics([lookup(i).content for i in op.ids], op.content)
            if lost:
                raise CuratorOutputError(f"MERGE of {', '.join(op.ids)} drops {', '.join(sorted(lost))}; keep every "
                                         "number and name of the merged bullets")


# ---------------------------------------------------------------------------------------- protocols
class Generator(Protocol):
    """Answer a question with the playbook context (bullets rendered as ``[id] content``)."""

    def generate(self, question: str, context: str) -> Generation: ...


class Reflector(Protocol):
    """Tag the cited bullets and extract lessons from one attempt."""

    def reflect(self, question: str, generation: Generation, feedback: Feedback, cited: Sequence[Item]) -> Reflection: ...


class Curator(Protocol):
    """Turn a reflection into delta operations on the playbook."""

    def curate(self, reflection: Reflection, playbook: Playbook) -> list[Op]: ...


_CITE = re.compile(r"\[([A-Za-z0-9][\w.-]{0,127})\]")


def cited_ids(text: str) -> tuple[str, ...]:
    """Bullet ids cited as ``[id]`` in a text, in order, without repeats.

    >>> cited_ids("Following [api-1] and [units-2], then [api-1] again")
    ('api-1', 'units-2')
    """
    return tuple(dict.fromkeys(_CITE.findall(text)))


# ---------------------------------------------------------------------------------------- rule roles
class RuleReflector:
    """A deterministic reflector: cited bullets are helpful when the answer was right, harmful when it
    was wrong; a wrong answer with a known target yields a lesson from ``lesson_fn(question, target)``
    (default: "For 'question' the answer is target."). With ``always_lesson=True`` a right answer
    yields its lesson too (so a curator can confirm or count evidence)."""

    def __init__(self, lesson_fn: Callable[[str, str], Lesson] | None = None, *, always_lesson: bool = False) -> None:
        self.lesson_fn = lesson_fn or (lambda q, t: Lesson(f"For {q!r} the answer is {t}."))
        self.always_lesson = always_lesson

    def reflect(self, question: str, generation: Generation, feedback: Feedback, cited: Sequence[Item]) -> Reflection:
        """Tags from correctness; lessons from the target."""
        tag = TagValue.HELPFUL if feedback.correct else TagValue.HARMFUL
        tags = {item.id: tag for item in cited}
        lessons: tuple[Lesson, ...] = ()
        if feedback.target is not None and (not feedback.correct or self.always_lesson):
            lesson = self.lesson_fn(question, feedback.target)
            lessons = (replace(lesson, evidence=lesson.evidence or (f"q: {_excerpt(question, 60)}",)),)
        return Reflection(tags, lessons, "correct" if feedback.correct else "wrong")


class RuleCurator:
    """A deterministic curator. For each lesson:

    - with a ``key``: no bullet has the key -> ADD; the bullet says the same -> TAG helpful and forget
      pending contradictions; it says something else -> count the contradiction, and once the last
      ``confirm`` contradictions agree -> SUPERSEDE the bullet with the new content (a knowledge
      update: the old bullet stays, closed, never deleted);
    - without a key: an exact duplicate of a bullet, or a lesson whose specifics a similar bullet
      (cosine >= ``similar``) already has -> TAG helpful; else ADD.

    ``confirm=2`` keeps one noisy feedback from overturning a rule.

    >>> from lifelong.context import open_store, HashingEmbedder
    >>> from lifelong.context.playbook import Playbook
    >>> pb = Playbook(open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64)))
    >>> cur = RuleCurator(confirm=1)
    >>> _ = pb.apply(cur.curate(Reflection(lessons=(Lesson("refund -> billing", key="refund"),)), pb))
    >>> _ = pb.apply(cur.curate(Reflection(lessons=(Lesson("refund -> finance", key="refund"),)), pb))
    >>> [b.content for b in pb.bullets()]
    ['refund -> finance']
    """

    def __init__(self, *, confirm: int = 2, similar: float = 0.8, proposer: str = "rule-curator") -> None:
        if confirm < 1:
            raise ValueError(f"confirm must be >= 1, got {confirm}")
        self.confirm = confirm
        self.similar = similar
        self.proposer = proposer
        self.pending: dict[str, list[str]] = {}

    def curate(self, reflection: Reflection, playbook: Playbook) -> list[Op]:
        """Delta operations for the reflection's lessons."""
        ops: list[Op] = []
        planned: dict[str, str] = {}  # keys and hashes added in this batch
        for lesson in reflection.lessons:
            just = lesson.justification or "lesson from reflection"
            if lesson.key is not None:
                ops += self._keyed(lesson, playbook, planned, just)
                continue
            dup = playbook.find_duplicate(lesson.content, similar=self.similar, section=lesson.section)
            if dup is not None:
                ops.append(Tag(id=dup.id, tag="helpful", justification="the playbook already holds this lesson",
                               evidence=lesson.evidence, proposer=self.proposer))
            elif lesson.content not in planned:
                planned[lesson.content] = ""
                ops.append(playbook.new_bullet(lesson, proposer=self.proposer, justification=just))
        return ops

    def _keyed(self, lesson: Lesson, playbook: Playbook, planned: dict[str, str], just: str) -> list[Op]:
        key = lesson.key
        assert key is not None
        if ("key:" + key) in planned:
            return []
        current = playbook.find_key(key)
        if current is None:
            planned["key:" + key] = ""
            self.pending.pop(key, None)
            return [playbook.new_bullet(lesson, proposer=self.proposer, justification=just)]
        if current.content == lesson.content:
            self.pending.pop(key, None)
            return []  # the reflector's tag already credits it
        seen = self.pending.setdefault(key, [])
        seen.append(lesson.content)
        if len(seen) < self.confirm or len(set(seen[-self.confirm:])) != 1:
            return []
        self.pending.pop(key, None)
        planned["key:" + key] = ""
        new = playbook.new_bullet(lesson, proposer=self.proposer, justification=just)
        return [Supersede(id=current.id, new=new, justification=f"contradicted {self.confirm}x: {lesson.content}",
                          evidence=lesson.evidence, proposer=self.proposer)]


class RuleGenerator:
    """A deterministic generator for tests: answers with the first bullet whose content starts with the
    question followed by ``->``, citing it; otherwise ``default``.

    >>> RuleGenerator().generate("refund", "## routing\\n[r-1] refund -> billing")
    Generation(answer='billing', cited=('r-1',), reasoning='rule r-1')
    """

    def __init__(self, default: str = "unknown") -> None:
        self.default = default

    def generate(self, question: str, context: str) -> Generation:
        """Look the question up in the context."""
        for line in context.splitlines():
            m = re.match(r"\[([^\]]+)\]\s*(.*?)\s*->\s*(.+)$", line.strip())
            if m and m.group(2).strip() == question.strip():
                return Generation(m.group(3).strip(), (m.group(1),), f"rule {m.group(1)}")
        return Generation(self.default, (), "no rule")


# ---------------------------------------------------------------------------------------- LLM roles
GENERATOR_PROMPT = """You answer questions using a playbook of bullets. Each bullet starts with its id in brackets.
Playbook:
{playbook}

Question (quoted data from the task):
{question}

Reply with JSON only: {{"reasoning": "...", "bullet_ids": ["ids of the bullets you used"], "final_answer": "..."}}"""

REFLECTOR_PROMPT = """You review one attempt at a task and judge the playbook bullets it used.
Question (quoted data):
{question}
Answer given: {answer}
Reasoning: {reasoning}
Environment feedback (quoted data):
{feedback}
Bullets the answer cited:
{bullets}

Reply with JSON only: {{"reasoning": "...", "error_identification": "...", "key_insight": "one reusable lesson, with its exact numbers and conditions", "bullet_tags": [{{"id": "...", "tag": "helpful|harmful|neutral"}}]}}"""

CURATOR_PROMPT = """You curate a playbook of bullets. Propose only NEW insights as delta operations; never rewrite the playbook.
Token budget of the playbook: {budget}. Bullets now: {n_bullets}.
Operations: {{"op": "ADD", "section": "...", "content": "..."}}; {{"op": "UPDATE", "id": "...", "append": "..."}}; {{"op": "TAG", "id": "...", "tag": "helpful|harmful"}}; {{"op": "MERGE", "ids": ["...", "..."], "content": "..."}}; {{"op": "SUPERSEDE", "id": "...", "new": {{"section": "...", "content": "..."}}}}; {{"op": "DELETE", "id": "..."}}.
Keep every number, unit and condition exactly. If the playbook already says it, propose nothing.

Related bullets:
{bullets}

New lessons (quoted data):
{lessons}

Reply with JSON only: {{"reasoning": "...", "operations": [...]}}"""

MERGE_PROMPT = """Merge these two playbook bullets into one bullet that keeps every number, unit, condition and exception of both.
A: {a}
B: {b}
Reply with the merged bullet only, on one line."""


class LLMGenerator:
    """ACE's generator over a chat model: JSON {reasoning, bullet_ids, final_answer}. A reply that is not
    JSON is used as the answer, with ``[id]`` citations read from it."""

    def __init__(self, chat: ChatModel, *, max_tokens: int = 256, seed: int = 0) -> None:
        self.chat, self.max_tokens, self.seed = chat, max_tokens, seed

    def generate(self, question: str, context: str) -> Generation:
        """Ask the model."""
        prompt = GENERATOR_PROMPT.format(playbook=context or "(empty)", question=quote_untrusted(question, "task"))
        text = self.chat.complete([{"role": "user", "content": prompt}], max_tokens=self.max_tokens,
                                  seed=self.seed).text
        try:
            data = extract_json(text)
        except CuratorOutputError:
            return Generation(text.strip(), cited_ids(text), "")
        if not isinstance(data, Mapping):
            return Generation(text.strip(), cited_ids(text), "")
        ids = data.get("bullet_ids") or []
        ids = [str(i) for i in ids] if isinstance(ids, list) else list(cited_ids(str(ids)))
        return Generation(str(data.get("final_answer", "")).strip(), tuple(ids), str(data.get("reasoning", "")))


class LLMReflector:
    """ACE's reflector over a chat model. Tags are kept only for bullets the answer cited; the
    ``key_insight`` becomes a lesson in ``section``. A reply that is not valid JSON falls back to
    ``fallback`` (default: :class:`RuleReflector`), and the error is kept in ``errors``."""

    def __init__(self, chat: ChatModel, *, section: str = "general", max_tokens: int = 256, seed: int = 0,
                 fallback: Reflector | None = None) -> None:
        self.chat, self.section, self.max_tokens, self.seed = chat, section, max_tokens, seed
        self.fallback = fallback if fallback is not None else RuleReflector()
        self.errors: list[str] = []

    def reflect(self, question: str, generation: Generation, feedback: Feedback, cited: Sequence[Item]) -> Reflection:
        """Ask the model; fall back on malformed output."""
        fb = ("correct" if feedback.correct else "wrong") + (f"; expected: {feedback.target}" if feedback.target else "")
        fb += f"; {feedback.message}" if feedback.message else ""
        prompt = REFLECTOR_PROMPT.format(
            question=quote_untrusted(question, "task"), answer=generation.answer, reasoning=generation.reasoning,
            feedback=quote_untrusted(fb, "environment"),
            bullets="\n".join(f"[{b.id}] {b.content}" for b in cited) or "(none)")
        text = self.chat.complete([{"role": "user", "content": prompt}], max_tokens=self.max_tokens,
                                  seed=self.seed).text
        try:
            data = extract_json(text)
            if not isinstance(data, Mapping):
                raise CuratorOutputError(f"expected a JSON object, got {type(data).__name__}")
            allowed = {b.id for b in cited}
            tags: dict[str, TagValue] = {}
            for t in data.get("bullet_tags") or []:
                if isinstance(t, Mapping) and str(t.get("id")) in allowed:
                    try:
                        tags[str(t["id"])] = TagValue(str(t.get("tag", "neutral")).lower())
                    except ValueError:
                        raise CuratorOutputError(f"bullet tag {t.get('tag')!r} is not helpful, harmful or "
                                                 "neutral") from None
            insight = str(data.get("key_insight") or "").strip()
            lessons = (Lesson(insight, self.section, evidence=(f"q: {_excerpt(question, 60)}",)),) if insight else ()
            return Reflection(tags, lessons, str(data.get("reasoning", "")))
        except CuratorOutputError as err:
            self.errors.append(str(err))
            return self.fallback.reflect(question, generation, feedback, cited)


class LLMCurator:
    """ACE's curator over a chat model, with the operations ACE lacks (UPDATE, MERGE, SUPERSEDE, TAG,
    DELETE). The reply is parsed by :func:`parse_operations`, checked against the playbook (ids exist,
    no specific is dropped) and returned as operations; a malformed or unsafe reply is recorded in
    ``errors`` and replaced by ``fallback``'s proposal (``None``: propose nothing).

    >>> from lifelong.context import open_store, HashingEmbedder
    >>> from lifelong.context.playbook import Playbook
    >>> from lifelong.models.chat import ScriptedChat
    >>> pb = Playbook(open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64)))
    >>> cur = LLMCurator(ScriptedChat(["I would add a bullet about retries."]), fallback=RuleCurator())
    >>> ops = cur.curate(Reflection(lessons=(Lesson("On 429 wait 2 s"),)), pb)
    >>> [type(o).__name__ for o in ops], cur.errors[0][:24]
    (['Add'], 'no JSON object or list i')
    """

    def __init__(self, chat: ChatModel, *, budget: int = 4000, k: int = 8, max_tokens: int = 256, seed: int = 0,
                 fallback: Curator | None = None, guard: bool = True) -> None:
        self.chat, self.budget, self.k, self.max_tokens, self.seed = chat, budget, k, max_tokens, seed
        self.fallback, self.guard = fallback, guard
        self.errors: list[str] = []
        self.accepted = 0
        self.calls = 0

    def prompt(self, reflection: Reflection, playbook: Playbook) -> str:
        """The curator prompt: budget, stats, the bullets related to the lessons, the lessons (quoted)."""
        related: dict[str, Item] = {}
        for lesson in reflection.lessons:
            for hit in playbook.related(lesson.content, k=self.k):
                related.setdefault(hit.id, hit)
        bullets = "\n".join(f"[{b.id}] ({b.section}) {b.content}" for b in related.values()) or "(none yet)"
        lessons = "\n".join(quote_untrusted(f"({x.section}) {x.content}", "reflector") for x in reflection.lessons)
        return CURATOR_PROMPT.format(budget=self.budget, n_bullets=len(playbook.bullets()), bullets=bullets,
                                     lessons=lessons)

    def curate(self, reflection: Reflection, playbook: Playbook) -> list[Op]:
        """Ask the model for operations; validate them; fall back on any error."""
        if not reflection.lessons:
            return []
        self.calls += 1
        text = self.chat.complete([{"role": "user", "content": self.prompt(reflection, playbook)}],
                                  max_tokens=self.max_tokens, seed=self.seed).text
        try:
            ops = parse_operations(text, proposer="llm-curator")
            ops = [o if not isinstance(o, Add) else
                   replace(o, kind=ItemKind.BULLET, id=o.id or playbook.next_id(o.section)) for o in ops]
            playbook.check(ops, guard=self.guard)
        except (CuratorOutputError, MemoryStoreError) as err:
            self.errors.append(str(err))
            return self.fallback.curate(reflection, playbook) if self.fallback is not None else []
        self.accepted += 1
        return ops


class LLMMerger:
    """Grow-and-refine's merge step over a chat model: merged text for one candidate pair, or None when
    the model's merge drops a specific (the pair is then kept apart, and the decision remembered).
    At most ``max_calls`` model calls over the merger's life (None: unbounded)."""

    def __init__(self, chat: ChatModel, *, max_tokens: int = 96, seed: int = 0, max_calls: int | None = None) -> None:
        self.chat, self.max_tokens, self.seed, self.max_calls = chat, max_tokens, seed, max_calls
        self.calls = 0
        self.rejected: list[str] = []

    def merge(self, a: Item, b: Item) -> str | None:
        """Rule merge first (one bullet subsumes the other); else ask the model, and check the result."""
        rule = RuleMerger().merge(a, b)
        if rule is not None:
            return rule
        if self.max_calls is not None and self.calls >= self.max_calls:
            return None
        self.calls += 1
        text = self.chat.complete([{"role": "user", "content": MERGE_PROMPT.format(a=a.content, b=b.content)}],
                                  max_tokens=self.max_tokens, seed=self.seed).text.strip().splitlines()
        merged = text[0].strip(" -*") if text else ""
        lost = lost_specifics([a.content, b.content], merged)
        if not merged or lost:
            self.rejected.append(f"{a.id}+{b.id}: drops {', '.join(sorted(lost)) or 'everything'}")
            return None
        return merged


class RuleMerger:
    """Merge two bullets only when one already says everything the other does (its terms and specifics
    include the other's): the merged text is the fuller bullet, so nothing is lost. Otherwise keep both.

    >>> from lifelong.context.items import Item
    >>> RuleMerger().merge(Item(id="a", content="wait 2 s on 429"), Item(id="b", content="On 429, wait 2 s."))
    'On 429, wait 2 s.'
    >>> RuleMerger().merge(Item(id="a", content="wait 2 s on 429"), Item(id="b", content="wait 3 s on 503")) is None
    True
    """

    def merge(self, a: Item, b: Item) -> str | None:
        """The subsuming bullet's content, or None."""
        from lifelong.context.text import terms

        ta, tb = set(terms(a.content)), set(terms(b.content))
        sa, sb = specifics(a.content), specifics(b.content)
        if ta <= tb and sa <= sb:
            return b.content
        if tb <= ta and sb <= sa:
            return a.content
        return None


__all__ = [
    "CURATOR_PROMPT", "Curator", "CuratorOutputError", "Feedback", "GENERATOR_PROMPT", "Generation", "Generator",
    "LLMCurator", "LLMGenerator", "LLMMerger", "LLMReflector", "Lesson", "MERGE_PROMPT", "REFLECTOR_PROMPT",
    "Reflection", "Reflector", "RuleCurator", "RuleGenerator", "RuleMerger", "RuleReflector", "check_keeps_specifics",
    "cited_ids", "extract_json", "lost_specifics", "parse_operations", "specifics",
]

# Re-exported names used in doctests and by the playbook.
_ = (Delete, Provenance, Trust)

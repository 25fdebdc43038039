"""Memory operations: proposed by anyone (an LLM role, a rule, a person), applied by code.

Six operations, each a small frozen record that carries its ``justification`` and ``evidence``:
ADD, UPDATE (same id, version bump), MERGE, SUPERSEDE, DELETE (soft by default) and TAG. There is no
"rewrite the store" operation, on purpose: a monolithic rewrite is how a playbook collapses (ACE).
Operations round-trip through plain JSON, so an LLM can emit them and the ledger can store them.

>>> ops = ops_from_json('[{"op": "ADD", "id": "r1", "content": "Retry 429s after 2 s", "section": "api"},'
...                     ' {"op": "TAG", "id": "r1", "tag": "helpful", "justification": "fixed task 7"}]')
>>> [type(o).__name__ for o in ops], ops[1].tag
(['Add', 'Tag'], <TagValue.HELPFUL: 'helpful'>)
>>> op_from_dict(op_to_dict(ops[0])) == ops[0]
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from lifelong.context.errors import InvalidOpError
from lifelong.context.items import ItemKind, Provenance, TagValue, _enum, check_text
from lifelong.core.scopes import Scope


@dataclass(frozen=True)
class Op:
    """Fields every operation carries: why (``justification``), on what grounds (``evidence``: trace
    ids, episode ids, quotes), and who proposed it (``proposer``).

    >>> Tag(id="a", tag="harmful", evidence="trace-9").evidence
    ('trace-9',)
    """

    OP: ClassVar[str] = ""

    def __post_init__(self) -> None:
        ev = self.evidence  # type: ignore[attr-defined]
        object.__setattr__(self, "evidence", (ev,) if isinstance(ev, str) else tuple(ev))
        check_text(self.justification, f"{self.OP}.justification")  # type: ignore[attr-defined]
        for e in self.evidence:  # type: ignore[attr-defined]
            check_text(e, f"{self.OP}.evidence")


@dataclass(frozen=True)
class Add(Op):
    """Create an item. ``id`` may be left out (one is generated from the section); ``vector`` is an
    optional precomputed embedding (else the store's embedder computes it).

    >>> Add("On 429 wait 2 s", section="api", kind="bullet").kind
    <ItemKind.BULLET: 'bullet'>
    """

    OP: ClassVar[str] = "ADD"
    content: str = ""
    id: str | None = None
    kind: ItemKind | str = ItemKind.NOTE
    section: str = "general"
    tags: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    scope: Scope | str = Scope.USER
    session: str | None = None
    provenance: Provenance = field(default_factory=Provenance)
    limit: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    valid_from: float | None = None
    valid_until: float | None = None
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    justification: str = ""
    evidence: tuple[str, ...] = ()
    proposer: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "kind", _enum(ItemKind, self.kind, "ADD.kind"))
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "links", tuple(self.links))
        if isinstance(self.provenance, Mapping):
            object.__setattr__(self, "provenance", Provenance.from_dict(self.provenance))


@dataclass(frozen=True)
class Update(Op):
    """Edit an item in place (same id, version + 1). Give at most one of ``content`` (replace all),
    ``append`` (add to the end) and ``replace`` ((old, new): ``old`` must occur exactly once, Letta's
    ``core_memory_replace`` with its empty-string bug closed). ``expected_version`` makes the edit fail
    if someone else changed the item first.

    >>> Update(id="b1", replace=("2 s", "3 s"), expected_version=4).replace
    ('2 s', '3 s')
    """

    OP: ClassVar[str] = "UPDATE"
    id: str = ""
    content: str | None = None
    append: str | None = None
    replace: tuple[str, str] | None = None
    section: str | None = None
    tags: tuple[str, ...] | None = None
    links: tuple[str, ...] | None = None
    meta: Mapping[str, Any] | None = None
    limit: int | None = None
    expected_version: int | None = None
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    justification: str = ""
    evidence: tuple[str, ...] = ()
    proposer: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("tags", "links"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.replace is not None:
            object.__setattr__(self, "replace", tuple(self.replace))


@dataclass(frozen=True)
class Merge(Op):
    """Fold several items into one (ACE's grow-and-refine, A-MEM consolidation). ``into`` (default: the
    first id) receives ``content``, the summed counters and the union of tags and links; the other
    items are superseded by it, never deleted.

    >>> Merge(ids=["a", "b"], content="merged").ids
    ('a', 'b')
    """

    OP: ClassVar[str] = "MERGE"
    ids: tuple[str, ...] = ()
    content: str = ""
    into: str | None = None
    justification: str = ""
    evidence: tuple[str, ...] = ()
    proposer: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "ids", tuple(self.ids))


@dataclass(frozen=True)
class Supersede(Op):
    """Close an item's validity interval because a newer one replaces it (a knowledge update: "my name
    is Y" after "my name is X"). Give either ``by`` (an existing id) or ``new`` (an ADD applied in the
    same step). The old item stays, with ``valid_until`` and ``superseded_by`` set.

    >>> Supersede(id="home", new={"content": "Alice lives in Berlin", "id": "home2"}).new.id
    'home2'
    """

    OP: ClassVar[str] = "SUPERSEDE"
    id: str = ""
    by: str | None = None
    new: Add | None = None
    at: float | None = None
    justification: str = ""
    evidence: tuple[str, ...] = ()
    proposer: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.new, Mapping):
            object.__setattr__(self, "new", op_from_dict({"op": "ADD", **self.new}))


@dataclass(frozen=True)
class Delete(Op):
    """Remove an item from retrieval. Soft by default (status ``deleted``: kept, auditable, restorable);
    ``hard=True`` removes the live row too (its version history stays, so rollbacks still work).

    >>> Delete(id="x").hard
    False
    """

    OP: ClassVar[str] = "DELETE"
    id: str = ""
    hard: bool = False
    justification: str = ""
    evidence: tuple[str, ...] = ()
    proposer: str = ""


@dataclass(frozen=True)
class Tag(Op):
    """Count a verdict on an item: helpful or harmful (+``count``), or neutral (recorded, no change).

    >>> Tag(id="x", tag="HELPFUL", count=2).tag
    <TagValue.HELPFUL: 'helpful'>
    """

    OP: ClassVar[str] = "TAG"
    id: str = ""
    tag: TagValue | str = TagValue.NEUTRAL
    count: int = 1
    justification: str = ""
    evidence: tuple[str, ...] = ()
    proposer: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "tag", _enum(TagValue, self.tag, "TAG.tag"))
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise InvalidOpError(f"TAG.count must be a positive integer, got {self.count!r}")


OP_TYPES: dict[str, type[Op]] = {cls.OP: cls for cls in (Add, Update, Merge, Supersede, Delete, Tag)}


_ALWAYS = ("id", "tag", "content", "ids")  # written even when equal to their default, for readable logs


def op_to_dict(op: Op) -> dict[str, Any]:
    """Plain-JSON form: ``{"op": "ADD", ...}`` with defaults left out (vectors are never included).

    >>> op_to_dict(Delete(id="x", justification="duplicate of y"))
    {'op': 'DELETE', 'id': 'x', 'justification': 'duplicate of y'}
    """
    out: dict[str, Any] = {"op": op.OP}
    for f in fields(op):
        if f.name == "vector":
            continue
        value = getattr(op, f.name)
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if (value == default and f.name not in _ALWAYS) or value is None or (f.name == "evidence" and not value):
            continue
        out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Op):
        return op_to_dict(value)
    if isinstance(value, Provenance):
        return value.to_dict()
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def op_from_dict(d: Mapping[str, Any], index: int | None = None) -> Op:
    """Parse one operation from JSON-like data, with errors that name the field (for LLM output).

    >>> op_from_dict({"op": "DELETE", "idd": "x"})
    Traceback (most recent call last):
    ...
    lifelong.context.errors.InvalidOpError: DELETE has no field 'idd'; its fields are: evidence, hard, id, justification, proposer
    """
    if not isinstance(d, Mapping):
        raise InvalidOpError(f"an operation must be a JSON object, got {type(d).__name__}", index)
    name = str(d.get("op", d.get("type", ""))).upper()
    if name not in OP_TYPES:
        raise InvalidOpError(f"unknown operation {name or None!r}; use one of {', '.join(OP_TYPES)}", index)
    cls = OP_TYPES[name]
    valid = {f.name for f in fields(cls)} - {"vector"}
    kwargs = {k: v for k, v in d.items() if k not in ("op", "type")}
    if "vector" in d:
        raise InvalidOpError(f"{name}: vectors are not read from JSON; pass them as numpy arrays in code", index)
    bad = sorted(set(kwargs) - valid)
    if bad:
        raise InvalidOpError(f"{name} has no field {bad[0]!r}; its fields are: {', '.join(sorted(valid))}", index)
    try:
        return cls(**kwargs)
    except InvalidOpError as err:
        raise InvalidOpError(str(err), index) from None
    except TypeError as err:
        raise InvalidOpError(f"{name}: {err}", index) from None


def ops_from_json(text: str | bytes) -> list[Op]:
    """Parse a JSON list of operations (or ``{"operations": [...]}``, ACE's curator format)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidOpError(f"operations are not valid JSON: {err}") from None
    if isinstance(data, Mapping) and "operations" in data:
        data = data["operations"]
    if not isinstance(data, list):
        raise InvalidOpError("expected a JSON list of operations, or an object with an 'operations' list")
    return [op_from_dict(d, i) for i, d in enumerate(data)]


def ops_to_json(ops: Sequence[Op]) -> list[dict[str, Any]]:
    """The JSON form of a batch, as the ledger stores it."""
    return [op_to_dict(o) for o in ops]

"""Validation: a batch of operations becomes a :class:`Plan` (the exact item versions it will write), or
is rejected with an error naming the operation and the field, before anything changes.

Operations in a batch see the effects of the ones before them (ADD then TAG of the same new id works);
each touched item gets one version bump per batch. Planning is pure: it reads items through ``lookup``
and never writes, so a plan can be inspected, put into a ledger change, gated, and only then applied.

>>> from lifelong.context.ops import Add, Tag
>>> from lifelong.context.embed import HashingEmbedder
>>> plan = plan_ops([Add("Retry 429s after 2 s", id="r1"), Tag(id="r1", tag="helpful")],
...                 tenant="t", at=100.0, lookup=lambda ids: {}, embedder=HashingEmbedder(16))
>>> after = plan.touched["r1"].after
>>> (after.version, after.helpful, after.created_at), plan.touched["r1"].vector.shape
((1, 1, 100.0), (16,))
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lifelong.context.embed import Embedder, check_vector
from lifelong.context.errors import (
    DimensionError,
    DuplicateIdError,
    InvalidOpError,
    ItemNotFoundError,
    MemoryStoreError,
)
from lifelong.context.items import (
    DEFAULT_BLOCK_LIMIT,
    Item,
    ItemKind,
    Provenance,
    Status,
    TagValue,
    check_id,
    check_text,
    validate_item,
)
from lifelong.context.ops import Add, Delete, Merge, Op, Supersede, Tag, Update, op_to_dict

# (live item or None, highest version ever stored for the id or 0)
Lookup = Callable[[Iterable[str]], Mapping[str, tuple[Item | None, int]]]


@dataclass(frozen=True)
class Touched:
    """One item a plan changes: its live version before, its version after (None: hard-deleted), and
    its new embedding when the content is new or changed.

    >>> Touched(None, Item(id="a", content="x")).before is None
    True
    """

    before: Item | None
    after: Item | None
    vector: np.ndarray | None = None
    tombstone_version: int | None = None  # the history version a hard delete records


@dataclass(frozen=True)
class Plan:
    """A validated batch: the operations, the time they apply at, and every item version they write.

    >>> from lifelong.context.ops import Add
    >>> from lifelong.context.embed import HashingEmbedder
    >>> p = plan_ops([Add("x", id="a")], tenant="t", at=1.0, lookup=lambda ids: {}, embedder=HashingEmbedder(8))
    >>> p.base_versions, p.to_record()["ops"]
    ({'a': None}, [{'op': 'ADD', 'content': 'x', 'id': 'a'}])
    """

    tenant: str
    ops: tuple[Op, ...]
    at: float
    touched: Mapping[str, Touched]
    id: str

    @property
    def base_versions(self) -> dict[str, int | None]:
        """The live version of each touched item the plan was computed against (None: did not exist)."""
        return {k: (t.before.version if t.before else None) for k, t in self.touched.items()}

    def to_record(self) -> dict[str, object]:
        """JSON for the ledger: the operations and the bodies they produce (so a ledger version can be
        rebuilt even where a store never applied it)."""
        return {
            "plan": self.id,
            "tenant": self.tenant,
            "at": self.at,
            "ops": [op_to_dict(o) for o in self.ops],
            "bodies": {k: (t.after.to_dict() if t.after else None) for k, t in self.touched.items()},
            "base": self.base_versions,
        }


def new_id(section: str, kind: ItemKind) -> str:
    """A fresh id: the section's slug and 10 random hex digits (ACE names bullets by section too)."""
    slug = re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")[:40] or kind.value
    return f"{slug}-{uuid.uuid4().hex[:10]}"


def _referenced(ops: Sequence[Op]) -> set[str]:
    ids: set[str] = set()
    for op in ops:
        for name in ("id", "by", "into"):
            v = getattr(op, name, None)
            if isinstance(v, str) and v:
                ids.add(v)
        ids.update(getattr(op, "ids", ()) or ())
        ids.update(getattr(op, "links", ()) or ())
        new = getattr(op, "new", None)
        if isinstance(new, Add):
            if new.id:
                ids.add(new.id)
            ids.update(new.links)
    return ids


class _Planner:
    def __init__(self, tenant: str, at: float, lookup: Lookup) -> None:
        self.tenant, self.at = tenant, at
        self.lookup = lookup
        self.origin: dict[str, Item | None] = {}
        self.max_version: dict[str, int] = {}
        self.state: dict[str, Item | None] = {}
        self.last_op: dict[str, int] = {}
        self.vectors: dict[str, np.ndarray] = {}
        self.order: list[str] = []

    def load(self, ids: Iterable[str]) -> None:
        missing = [i for i in ids if i not in self.origin]
        found = self.lookup(missing) if missing else {}
        for i in missing:
            item, maxv = found.get(i, (None, 0))
            self.origin[i], self.max_version[i], self.state[i] = item, maxv, item

    def get(self, id: str, i: int, what: str, *, active: bool = True, current: bool = False) -> Item:
        check_id(id, f"{what}.id")
        self.load([id])
        item = self.state.get(id)
        if item is None:
            raise ItemNotFoundError(
                f"{what}: no item {id!r} in tenant {self.tenant!r}; list ids with store.ids() or ADD it first", i
            )
        if active and item.status is not Status.ACTIVE:
            raise InvalidOpError(f"{what}: item {id!r} is deleted; roll back to restore it, or ADD a new item", i)
        if current and item.superseded_by is not None:
            raise InvalidOpError(
                f"{what}: item {id!r} was already superseded by {item.superseded_by!r}; act on that item instead", i
            )
        return item

    def put(self, item: Item | None, id: str, i: int) -> None:
        if item is not None:
            try:
                validate_item(item)
            except InvalidOpError as err:
                raise type(err)(str(err), i) from None
        if id not in self.order:
            self.order.append(id)
        self.state[id] = item
        self.last_op[id] = i

    # ------------------------------------------------------------------ operations
    def add(self, op: Add, i: int) -> str:
        id = op.id if op.id is not None else new_id(check_text(op.section, "ADD.section"), op.kind)  # type: ignore[arg-type]
        check_id(id, "ADD.id")
        self.load([id, *op.links])
        existing = self.state.get(id)
        if existing is not None:
            raise DuplicateIdError(
                f"ADD: id {id!r} already exists in tenant {self.tenant!r} (version {existing.version}, "
                f"{existing.status.value}); UPDATE that item, or ADD with another id",  # type: ignore[union-attr]
                i,
            )
        if id in self.order:  # added and hard-deleted earlier in this same batch
            raise DuplicateIdError(f"ADD: id {id!r} is used twice in this batch", i)
        limit = op.limit if op.limit is not None or op.kind is not ItemKind.BLOCK else DEFAULT_BLOCK_LIMIT
        item = Item(
            id=id, content=op.content, kind=op.kind, section=op.section, tags=op.tags, links=op.links,
            scope=op.scope, session=op.session, provenance=op.provenance, limit=limit, meta=op.meta,
            valid_from=self.at if op.valid_from is None else op.valid_from, valid_until=op.valid_until,
            created_at=self.at, updated_at=self.at,
        )
        self.put(item, id, i)
        if op.vector is not None:
            self.vectors[id] = op.vector
        return id

    def update(self, op: Update, i: int) -> None:
        item = self.get(op.id, i, "UPDATE", current=True)
        if op.expected_version is not None and self.origin[op.id] is not None \
                and self.origin[op.id].version != op.expected_version:  # type: ignore[union-attr]
            raise InvalidOpError(
                f"UPDATE: item {op.id!r} is at version {self.origin[op.id].version}, not the expected "  # type: ignore[union-attr]
                f"{op.expected_version}; someone changed it first: read it again and re-propose",
                i,
            )
        edits = [n for n in ("content", "append", "replace") if getattr(op, n) is not None]
        if len(edits) > 1:
            raise InvalidOpError(f"UPDATE: give only one of content, append, replace (got {', '.join(edits)})", i)
        content = item.content
        if op.content is not None:
            content = check_text(op.content, "UPDATE.content")
        elif op.append is not None:
            content = item.content + check_text(op.append, "UPDATE.append")
        elif op.replace is not None:
            if len(op.replace) != 2:
                raise InvalidOpError("UPDATE.replace must be a pair (old, new)", i)
            old, new = (check_text(s, "UPDATE.replace") for s in op.replace)
            if not old:
                raise InvalidOpError("UPDATE.replace: the text to replace is empty; give the exact text to change", i)
            n = item.content.count(old)
            if n != 1:
                raise InvalidOpError(
                    f"UPDATE.replace: {old[:40]!r} occurs {n} times in item {op.id!r}; it must occur exactly once "
                    "(quote more of the surrounding text)",
                    i,
                )
            content = item.content.replace(old, new)
        changes: dict[str, object] = {"content": content}
        for name in ("section", "tags", "links", "meta", "limit"):
            if getattr(op, name) is not None:
                changes[name] = getattr(op, name)
        if op.links is not None:
            self.load(op.links)
        self.put(item.evolve(**changes), op.id, i)
        if op.vector is not None:
            self.vectors[op.id] = op.vector
        elif content != item.content:
            self.vectors.pop(op.id, None)  # a vector given earlier in the batch is for the old text

    def merge(self, op: Merge, i: int) -> None:
        if len(op.ids) < 2 or len(set(op.ids)) != len(op.ids):
            raise InvalidOpError("MERGE needs at least two distinct ids", i)
        check_text(op.content, "MERGE.content", allow_empty=False)
        sources = [self.get(x, i, "MERGE", current=True) for x in op.ids]
        into = op.into or op.ids[0]
        check_id(into, "MERGE.into")
        tags = tuple(dict.fromkeys(t for s in sources for t in s.tags))
        links = tuple(dict.fromkeys(x for s in sources for x in s.links if x not in op.ids and x != into))
        helpful = sum(s.helpful for s in sources)
        harmful = sum(s.harmful for s in sources)
        if into in op.ids:
            target = self.state[into]
            assert target is not None
            self.put(target.evolve(content=op.content, tags=tags, links=links, helpful=helpful, harmful=harmful),
                     into, i)
        else:
            self.load([into])
            if self.state.get(into) is not None or into in self.order:
                raise DuplicateIdError(f"MERGE.into {into!r} already exists; merge into one of the ids, or a new id", i)
            first = sources[0]
            self.put(Item(id=into, content=op.content, kind=first.kind, section=first.section, tags=tags, links=links,
                          helpful=helpful, harmful=harmful, scope=first.scope, session=first.session,
                          provenance=Provenance(source=op.proposer or "merge", trust=first.provenance.trust),
                          limit=first.limit, valid_from=self.at, created_at=self.at, updated_at=self.at), into, i)
        for s in sources:
            if s.id != into:
                self.put(s.evolve(valid_until=max(self.at, s.valid_from), superseded_by=into), s.id, i)

    def supersede(self, op: Supersede, i: int) -> None:
        old = self.get(op.id, i, "SUPERSEDE", current=True)
        if (op.by is None) == (op.new is None):
            raise InvalidOpError("SUPERSEDE needs exactly one of by= (an existing id) or new= (an ADD)", i)
        if op.new is not None:
            by = self.add(op.new, i)
        else:
            by = op.by  # type: ignore[assignment]
            self.get(by, i, "SUPERSEDE.by", current=True)
        if by == op.id:
            raise InvalidOpError(f"SUPERSEDE: item {op.id!r} cannot supersede itself", i)
        at = self.at if op.at is None else op.at
        if at < old.valid_from:
            raise InvalidOpError(
                f"SUPERSEDE.at ({at}) is before item {op.id!r} became valid ({old.valid_from}); give a later time", i
            )
        self.put(old.evolve(valid_until=at, superseded_by=by), op.id, i)

    def delete(self, op: Delete, i: int) -> None:
        item = self.get(op.id, i, "DELETE", active=not op.hard)
        self.put(None if op.hard else item.evolve(status=Status.DELETED), op.id, i)

    def tag(self, op: Tag, i: int) -> None:
        item = self.get(op.id, i, "TAG")
        if op.tag is TagValue.HELPFUL:
            self.put(item.evolve(helpful=item.helpful + op.count), op.id, i)
        elif op.tag is TagValue.HARMFUL:
            self.put(item.evolve(harmful=item.harmful + op.count), op.id, i)
        # neutral: recorded in the op log, changes nothing

    def check_links(self) -> None:
        for id in self.order:
            item = self.state[id]
            if item is None:
                continue
            for link in item.links:
                if self.state.get(link) is None:
                    raise ItemNotFoundError(
                        f"item {id!r} links to {link!r}, which is not an item of tenant {self.tenant!r}; link to an "
                        "existing id (A-MEM's links once pointed at list positions, not ids)",
                        self.last_op[id],
                    )


def plan_ops(
    ops: Sequence[Op],
    *,
    tenant: str,
    at: float,
    lookup: Lookup,
    embedder: Embedder,
    dim: int | None = None,
) -> Plan:
    """Validate ``ops`` against the items ``lookup`` returns and compute every item version they write."""
    if isinstance(ops, Op):
        ops = [ops]
    ops = tuple(ops)
    for i, op in enumerate(ops):
        if not isinstance(op, Op):
            raise InvalidOpError(f"expected an operation (Add, Update, ...), got {type(op).__name__}", i)
    p = _Planner(tenant, at, lookup)
    p.load(_referenced(ops))
    handlers: dict[type, Callable[[Op, int], object]] = {
        Add: p.add, Update: p.update, Merge: p.merge, Supersede: p.supersede, Delete: p.delete, Tag: p.tag,  # type: ignore[dict-item]
    }
    for i, op in enumerate(ops):
        try:
            handlers[type(op)](op, i)
        except MemoryStoreError as err:
            if isinstance(err, InvalidOpError) and err.index is None:
                raise type(err)(str(err), i) from None
            raise
    p.check_links()
    dim = dim or embedder.dim
    touched: dict[str, Touched] = {}
    to_embed: list[str] = []
    for id in p.order:
        before, after = p.origin.get(id), p.state[id]
        if before is None and after is None:  # added and hard-deleted within the batch
            continue
        if before is not None and after is not None and after.to_dict() == before.to_dict():
            continue
        if after is not None:
            after = after.evolve(version=p.max_version.get(id, 0) + 1, updated_at=at)
            if before is not None and id not in p.vectors and after.content == before.content:
                touched[id] = Touched(before, after, None)
                continue
            if id not in p.vectors:
                to_embed.append(id)
        touched[id] = Touched(before, after, None)
    vectors: dict[str, np.ndarray] = {}
    for id, vec in p.vectors.items():
        if id in touched and touched[id].after is not None:
            try:
                vectors[id] = check_vector(vec, dim, f"vector of item {id!r}")
            except DimensionError as err:
                raise DimensionError(f"operation {p.last_op[id]}: {err}") from None
    if to_embed:
        embedded = np.asarray(embedder.embed([touched[i].after.content for i in to_embed]))  # type: ignore[union-attr]
        if embedded.ndim != 2 or embedded.shape[1] != dim:
            raise DimensionError(
                f"embedder {embedder.name!r} returned shape {embedded.shape}, the store needs {dim} dimensions"
            )
        for id, vec in zip(to_embed, embedded, strict=True):
            vectors[id] = check_vector(vec, dim, f"embedding of item {id!r}")
    final = {k: Touched(t.before, t.after, vectors.get(k), None if t.after else p.max_version.get(k, 0) + 1)
             for k, t in touched.items()}
    return Plan(tenant, ops, at, final, uuid.uuid4().hex)

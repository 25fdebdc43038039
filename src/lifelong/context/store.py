"""The memory store: one tenant's items on a backend, changed only through validated operations.

>>> from lifelong.context import open_store, Add, Update, Tag, HashingEmbedder
>>> store = open_store(":memory:", tenant="alice", create=True, embedder=HashingEmbedder(64))
>>> _ = store.apply([Add("On 429 wait 2 s and back off", id="retry", kind="bullet", section="api")])
>>> _ = store.apply([Update(id="retry", append=", only for idempotent endpoints", justification="incident 12"),
...                  Tag(id="retry", tag="helpful")])
>>> item = store.get("retry")
>>> item.version, item.helpful, [v.version for v in store.history("retry")]
(2, 1, [1, 2])
>>> store.search("what to do on HTTP 429", k=1)[0].item.id
'retry'
>>> open_store(":memory:", tenant="bob")  # tenants are created explicitly
Traceback (most recent call last):
...
lifelong.context.errors.UnknownTenantError: tenant 'bob' has no store in :memory:; tenants are none yet. Pass create=True to make one
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lifelong.context.backends.base import Backend, Filter, WriteBatch
from lifelong.context.embed import Embedder, MiniLMEmbedder, check_vector, embedder_from_name
from lifelong.context.errors import (
    EmbedderMismatchError,
    ItemNotFoundError,
    StoreFormatError,
    UnknownTenantError,
)
from lifelong.context.items import Item, check_id, check_text
from lifelong.context.ops import Op, op_to_dict
from lifelong.context.plan import Plan, plan_ops
from lifelong.context.ranking import Hit, Weights

TENANT_CHARS = 128


@dataclass(frozen=True)
class Applied:
    """What :meth:`MemoryStore.apply` did: the plan it wrote and the op-log sequence number it reached.

    >>> from lifelong.context import Add, HashingEmbedder
    >>> s = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(16))
    >>> s.apply([Add("x", id="a")]).ids
    ('a',)
    """

    plan: Plan
    seq: int

    @property
    def ids(self) -> tuple[str, ...]:
        """Ids of the items the batch changed."""
        return tuple(self.plan.touched)


class MemoryStore:
    """One tenant's memory. Reads are plain methods; every write goes through :meth:`apply` (operations)
    or :meth:`restore` (a recorded state: checkout, rollback, import).

    >>> from lifelong.context import Add, Delete, HashingEmbedder
    >>> s = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(16))
    >>> applied = s.apply([Add("a note", id="n1"), Add("another", id="n2")])
    >>> applied.ids, len(s), s.apply([Delete(id="n2")]).seq > applied.seq
    (('n1', 'n2'), 2, True)
    """

    def __init__(self, backend: Backend, tenant: str, embedder: Embedder) -> None:
        self.backend = backend
        self.tenant = tenant
        self.embedder = embedder

    def __repr__(self) -> str:
        return f"MemoryStore({self.backend.location!r}, tenant={self.tenant!r}, embedder={self.embedder.name!r})"

    # ------------------------------------------------------------------ tenants
    def tenants(self) -> list[str]:
        """Every tenant in this database."""
        return self.backend.tenants()

    def other(self, tenant: str, *, create: bool = False) -> MemoryStore:
        """Another tenant of the same database (sharing the connection)."""
        _check_tenant(tenant)
        if create:
            self.backend.create_tenant(tenant)
        elif tenant not in self.backend.tenants():
            raise UnknownTenantError(
                f"tenant {tenant!r} has no store in {self.backend.location}; tenants are "
                f"{self.backend.tenants() or 'none yet'}. Pass create=True to make one"
            )
        return MemoryStore(self.backend, tenant, self.embedder)

    def fork(self, tenant: str) -> MemoryStore:
        """Copy this tenant's live items (with vectors and history) into a new tenant: a sandbox to try
        a candidate batch in before gating it."""
        _check_tenant(tenant)
        if tenant in self.backend.tenants():
            raise StoreFormatError(f"tenant {tenant!r} already exists; fork into a new name")
        self.backend.copy_tenant(self.tenant, tenant)
        return MemoryStore(self.backend, tenant, self.embedder)

    # ------------------------------------------------------------------ writing
    def plan(self, ops: Sequence[Op] | Op, *, at: float | None = None) -> Plan:
        """Validate operations against the current items, without writing anything."""
        return plan_ops(ops if isinstance(ops, Sequence) else [ops], tenant=self.tenant,
                        at=time.time() if at is None else at,
                        lookup=lambda ids: self.backend.lookup(self.tenant, ids), embedder=self.embedder,
                        dim=self.backend.dim)

    def apply(self, ops: Sequence[Op] | Op | Plan, *, at: float | None = None) -> Applied:
        """Validate and apply a batch atomically: all of it or (on any error) none of it. A :class:`Plan`
        made earlier applies exactly as planned, or fails with :class:`StalePlanError` if an item it
        touches changed in between."""
        plan = ops if isinstance(ops, Plan) else self.plan(ops, at=at)
        if plan.tenant != self.tenant:
            raise StoreFormatError(f"the plan is for tenant {plan.tenant!r}, this store is {self.tenant!r}")
        batch = WriteBatch(
            upserts=[(t.after, t.vector) for t in plan.touched.values() if t.after is not None],
            removes=[k for k, t in plan.touched.items() if t.after is None],
            tombstones=[(k, t.tombstone_version) for k, t in plan.touched.items()  # type: ignore[misc]
                        if t.after is None and t.tombstone_version is not None],
            ops=[op_to_dict(o) for o in plan.ops], expect=plan.base_versions, batch=plan.id, at=plan.at,
        )
        return Applied(plan, self.backend.write(self.tenant, batch))

    def restore(self, state: Mapping[str, Item | None], *, op: Mapping[str, Any],
                vectors: Mapping[str, np.ndarray] | None = None) -> int:
        """Write item versions as recorded (a checkout, a rollback, an import): each id gets exactly the
        given body (None removes the live row). Vectors come from ``vectors``, else from the store's
        own live or archived embeddings of the same content, else from the embedder."""
        ids = list(state)
        live = self.backend.lookup(self.tenant, ids)
        need = {i: it for i, it in state.items() if it is not None
                and (live[i][0] is None or live[i][0].content != it.content or (vectors and i in vectors))}
        found: dict[str, np.ndarray] = {}
        for i in need:
            if vectors is not None and i in vectors:
                found[i] = check_vector(vectors[i], self.backend.dim, f"vector of item {i!r}")
        by_content = self.backend.vectors_for_content(self.tenant, [it.content_hash for i, it in need.items()
                                                                    if i not in found])
        for i, it in need.items():
            if i not in found and it.content_hash in by_content:
                found[i] = by_content[it.content_hash]
        todo = [i for i in need if i not in found]
        if todo:
            for i, v in zip(todo, self.embedder.embed([need[i].content for i in todo]), strict=True):
                found[i] = check_vector(v, self.backend.dim, f"embedding of item {i!r}")
        batch = WriteBatch(
            upserts=[(it, found.get(i)) for i, it in state.items() if it is not None],
            removes=[i for i, it in state.items() if it is None and live[i][0] is not None],
            ops=[dict(op)], batch=str(op.get("op", "restore")).lower(), at=time.time(),
        )
        return self.backend.write(self.tenant, batch)

    # ------------------------------------------------------------------ reading
    def get(self, item_id: str, *, with_embedding: bool = False) -> Item:
        """The live version of an item (any status); :class:`ItemNotFoundError` if there is none."""
        check_id(item_id)
        found = self.backend.fetch_ids(self.tenant, [item_id])
        if item_id not in found:
            raise ItemNotFoundError(f"no item {item_id!r} in tenant {self.tenant!r}")
        key, item = found[item_id]
        if with_embedding:
            vec = self.backend.vectors_for_content(self.tenant, [item.content_hash]).get(item.content_hash)
            item = item.evolve(embedding=vec)
        return item

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and bool(self.backend.fetch_ids(self.tenant, [item_id]))

    def __len__(self) -> int:
        return self.backend.count(self.tenant)

    def items(self, *, with_embeddings: bool = False) -> Iterator[Item]:
        """Every live item (any status), ordered by id."""
        return self.backend.iter_items(self.tenant, with_embeddings=with_embeddings)

    def ids(self) -> list[str]:
        """Ids of every live item, sorted."""
        return [i.id for i in self.items()]

    def history(self, item_id: str) -> list[Item]:
        """Every version of an item, oldest first, including versions after which it was hard-deleted."""
        return self.backend.history(self.tenant, check_id(item_id))

    def ops(self, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The operation log: every applied operation with its justification and evidence."""
        return self.backend.ops_log(self.tenant, since, limit)

    @property
    def seq(self) -> int:
        """Sequence number of the last write to this tenant."""
        return self.backend.seq(self.tenant)

    # ------------------------------------------------------------------ search
    def search(
        self,
        query: str | None = None,
        *,
        vector: np.ndarray | Sequence[float] | None = None,
        k: int = 10,
        kinds: Sequence[str] | None = None,
        sections: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        session: str | None = None,
        as_of: float | None = None,
        include_inactive: bool = False,
        tags: Sequence[str] = (),
        expand_links: int = 0,
        weights: Weights | None = None,
        now: float | None = None,
    ) -> list[Hit]:
        """Hybrid search (see :mod:`lifelong.context.retrieval`). Filters: ``kinds``, ``sections``,
        ``scopes``; ``session`` (session-scoped items show only in their own session); ``as_of`` (what
        was valid then); ``include_inactive`` (deleted and superseded items too). ``tags`` boosts items
        with those tags or entities."""
        from lifelong.context.retrieval import search

        where = Filter(_tuple(kinds), _tuple(sections), _tuple(scopes), session, as_of, include_inactive)
        return search(self, query, vector=vector, k=k, where=where, tags=tags, expand_links=expand_links,
                      weights=weights, now=now)

    def nearest(self, vector: np.ndarray | Sequence[float], k: int = 10) -> list[tuple[str, float]]:
        """Dense search only: the ``k`` current items most similar to a vector, as (id, cosine)."""
        q = check_vector(vector, self.backend.dim, "query vector")
        hits = self.backend.dense(self.tenant, q, k, Filter(), time.time())
        ids = self.backend.ids(self.tenant, list(hits))
        return [(ids[key], sim) for key, sim in hits.items() if key in ids]

    def close(self) -> None:
        """Close the database (and save the vector index)."""
        self.backend.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tuple(values: Sequence[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    if isinstance(values, str):
        return (values,)
    return tuple(str(getattr(v, "value", v)) for v in values)


def _check_tenant(tenant: str) -> str:
    check_text(tenant, "tenant", allow_empty=False)
    if len(tenant) > TENANT_CHARS:
        raise StoreFormatError(f"tenant name is longer than {TENANT_CHARS} characters")
    return tenant


def open_backend(location: str | os.PathLike[str], *, dim: int, embedder_name: str, **options: Any) -> Backend:
    """A SQLite file path (or ``":memory:"``), or a ``postgresql://`` URI."""
    loc = os.fspath(location)
    if loc.startswith(("postgresql://", "postgres://")):
        from lifelong.context.backends.postgres import PostgresBackend

        return PostgresBackend(loc, dim=dim, embedder_name=embedder_name, **options)
    from lifelong.context.backends.sqlite import SQLiteBackend

    return SQLiteBackend(loc, dim=dim, embedder_name=embedder_name, **options)


def recorded_embedder(location: str | os.PathLike[str]) -> str | None:
    """The embedder name a store recorded, or None for a new store (read without creating anything)."""
    loc = os.fspath(location)
    if loc.startswith(("postgresql://", "postgres://")):
        from lifelong.context.backends.postgres import recorded_embedder as pg_recorded

        return pg_recorded(loc)
    if loc == ":memory:" or not os.path.exists(loc) or os.path.getsize(loc) == 0:
        return None
    from lifelong.context.backends.sqlite import _connect

    conn = _connect(loc, 5.0)
    try:
        rows = conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchall()
    except Exception:
        return None
    finally:
        conn.close()
    return rows[0][0] if rows else None


def open_store(
    location: str | os.PathLike[str],
    *,
    tenant: str,
    create: bool = False,
    embedder: Embedder | None = None,
    **options: Any,
) -> MemoryStore:
    """Open one tenant's store. ``location`` is a SQLite path (WAL; ``":memory:"`` for a throwaway) or a
    ``postgresql://`` URI. The embedder defaults to the one the store recorded, or all-MiniLM-L6-v2
    for a new store. ``create=True`` makes the tenant if it has no store; otherwise asking for an
    unknown tenant is an :class:`UnknownTenantError`. Backend options: ``lock_timeout`` (seconds a
    writer waits for another process, default 10), and for SQLite ``exact_below`` (tenants with fewer
    searchable items are scanned exactly instead of through the HNSW index, default 2000)."""
    _check_tenant(tenant)
    if embedder is None:
        name = recorded_embedder(location)
        embedder = embedder_from_name(name) if name else MiniLMEmbedder()
    if not isinstance(getattr(embedder, "dim", None), int):
        raise EmbedderMismatchError("embedder must have an integer .dim and an .embed(texts) method")
    backend = open_backend(location, dim=embedder.dim, embedder_name=embedder.name, **options)
    store = MemoryStore(backend, tenant, embedder)
    try:
        return store.other(tenant, create=create)
    except UnknownTenantError:
        backend.close()
        raise

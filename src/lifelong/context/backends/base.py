"""What a storage backend provides: transactions over items, versions and the op log, and the two
search primitives (dense and BM25). The store's logic lives above this line and is shared; each backend
keeps all of its SQL in one module.

A backend holds many tenants; every statement is filtered by tenant, so tenants never see each other's
items (nor each other's BM25 statistics).

>>> shard_of("retry-1"), shard_of("retry-1") == shard_of("retry-1")
(57, True)
>>> Filter(kinds=("bullet",)).admits(Item(id="x", content="y", kind="bullet"), at=0.0)
True
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lifelong.context.items import Item, Status

# Every memory database (SQLite or PostgreSQL) carries this marker and schema version in its meta table.
MAGIC = "lifelong-memory"
SCHEMA_VERSION = "1"
N_SHARDS = 256  # ledger manifests split item hashes over this many records (see versioning.py)


def shard_of(item_id: str) -> int:
    """The manifest shard of an id: the first byte of its SHA-256."""
    return hashlib.sha256(item_id.encode("utf-8")).digest()[0] % N_SHARDS


@dataclass(frozen=True)
class Filter:
    """Which items a search may return. Validity is a filter (a superseded fact is not current), while
    recency and utility only re-rank (see ranking.py)."""

    kinds: tuple[str, ...] | None = None
    sections: tuple[str, ...] | None = None
    scopes: tuple[str, ...] | None = None
    session: str | None = None  # session-scoped items are visible only to their own session
    as_of: float | None = None  # None: now
    include_inactive: bool = False  # also deleted and superseded items (audits)

    def admits(self, item: Item, at: float) -> bool:
        """The same rule the backends apply in SQL, in Python (for ANN post-filtering and tests)."""
        if self.kinds is not None and item.kind.value not in self.kinds:  # type: ignore[union-attr]
            return False
        if self.sections is not None and item.section not in self.sections:
            return False
        if self.scopes is not None and item.scope.value not in self.scopes:  # type: ignore[union-attr]
            return False
        if item.session is not None and item.session != self.session:
            return False
        if self.include_inactive:
            return True
        return item.is_current(self.as_of if self.as_of is not None else at)


@dataclass
class WriteBatch:
    """Everything one transaction writes. ``upserts`` pair a live item with its new vector (None: keep
    the stored one, the content did not change); ``removes`` are ids leaving the live table (their
    history stays); ``expect`` maps ids to the live version the writer saw (None: must not exist), and a
    mismatch aborts the whole batch."""

    upserts: list[tuple[Item, np.ndarray | None]] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)
    tombstones: list[tuple[str, int]] = field(default_factory=list)  # (id, version) of hard deletes
    ops: list[dict[str, Any]] = field(default_factory=list)
    expect: dict[str, int | None] = field(default_factory=dict)
    batch: str = ""
    at: float = 0.0
    record_versions: bool = True  # False for restores: the bodies are already in the history


class Backend(ABC):
    """The storage surface of a memory store."""

    location: str
    dim: int
    embedder_name: str

    # ------------------------------------------------------------------ tenants
    @abstractmethod
    def tenants(self) -> list[str]:
        """Every tenant, sorted."""

    @abstractmethod
    def create_tenant(self, tenant: str) -> None:
        """Create a tenant (a no-op if it exists)."""

    # ------------------------------------------------------------------ reads
    @abstractmethod
    def lookup(self, tenant: str, ids: Iterable[str]) -> dict[str, tuple[Item | None, int]]:
        """For each id: its live item (or None) and the highest version ever stored (0 if none)."""

    @abstractmethod
    def iter_items(self, tenant: str, *, with_embeddings: bool = False, batch: int = 1000) -> Iterator[Item]:
        """Every live item (any status), ordered by id."""

    @abstractmethod
    def count(self, tenant: str, *, current_only: bool = False) -> int:
        """Number of live rows (or of active, not superseded ones)."""

    @abstractmethod
    def history(self, tenant: str, item_id: str) -> list[Item]:
        """Every stored version of an item, oldest first (hard-deleted ones included)."""

    @abstractmethod
    def bodies(self, tenant: str, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Item bodies by item-version hash (from the version history)."""

    @abstractmethod
    def vectors_for_content(self, tenant: str, content_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored embeddings by content hash: live ones and archived ones (of edited-away content)."""

    @abstractmethod
    def manifest(self, tenant: str, shards: Iterable[int] | None = None) -> dict[int, dict[str, str]]:
        """shard -> {id: item-version hash} for the live items (only the given shards, if any)."""

    @abstractmethod
    def shards_since(self, tenant: str, seq: int) -> set[int]:
        """Shards holding items written after op sequence number ``seq`` (removals included)."""

    @abstractmethod
    def seq(self, tenant: str) -> int:
        """The sequence number of the tenant's last write (0 if none)."""

    @abstractmethod
    def ops_log(self, tenant: str, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The op log after ``since``: seq, batch, at, op."""

    @abstractmethod
    def get_head(self, tenant: str, ref: str) -> tuple[str, int] | None:
        """(ledger version, op seq) the tenant was last synced to for ``ref``."""

    @abstractmethod
    def set_head(self, tenant: str, ref: str, version: str, seq: int) -> None:
        """Remember that the tenant's state at ``seq`` is ledger version ``version`` of ``ref``."""

    # ------------------------------------------------------------------ writes
    @abstractmethod
    def write(self, tenant: str, batch: WriteBatch) -> int:
        """Apply a batch atomically under the write lock (with a timeout); returns the new sequence number."""

    @abstractmethod
    def write_lock(self, tenant: str) -> AbstractContextManager[None]:
        """Hold the tenant's write lock (maintenance jobs; tests of lock handling)."""

    @abstractmethod
    def copy_tenant(self, source: str, target: str) -> None:
        """Copy every live item and vector of ``source`` into the new, empty tenant ``target``."""

    # ------------------------------------------------------------------ search
    @abstractmethod
    def dense(self, tenant: str, vector: np.ndarray, n: int, where: Filter, at: float) -> dict[int, float]:
        """Up to ``n`` admitted rows nearest to a unit vector: row key -> cosine similarity."""

    @abstractmethod
    def similarity(self, tenant: str, vector: np.ndarray, keys: Sequence[int]) -> dict[int, float]:
        """Exact cosine similarity of given rows to a unit vector."""

    @abstractmethod
    def bm25(self, tenant: str, terms: Sequence[str], n: int, where: Filter, at: float,
             keys: Sequence[int] | None = None) -> dict[int, float]:
        """Okapi BM25 (k1 = 1.2, b = 0.75, FTS5's formula) of admitted rows; positive, higher is better."""

    @abstractmethod
    def fetch(self, tenant: str, keys: Sequence[int]) -> dict[int, Item]:
        """Live items by row key."""

    @abstractmethod
    def ids(self, tenant: str, keys: Sequence[int]) -> dict[int, str]:
        """Item ids by row key (cheaper than :meth:`fetch` when only ids are needed)."""

    @abstractmethod
    def fetch_ids(self, tenant: str, ids: Sequence[str]) -> dict[str, tuple[int, Item]]:
        """Live items and their row keys by id."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (and persist any index)."""


def item_row(item: Item) -> dict[str, Any]:
    """The columns both backends store for a live item (the body is the source of truth; the other
    columns exist to filter in SQL)."""
    from lifelong.core.hashing import sha256_hex

    body = item.to_dict()
    text = item.body_json()
    return {
        "id": item.id,
        "version": item.version,
        "hash": sha256_hex(text.encode("utf-8")),
        "chash": item.content_hash,
        "shard": shard_of(item.id),
        "kind": body["kind"],
        "section": item.section,
        "scope": body["scope"],
        "session": item.session,
        "status": body["status"],
        "in_index": int(item.status is Status.ACTIVE and item.superseded_by is None),
        "valid_from": item.valid_from,
        "valid_until": item.valid_until,
        "body": text,
    }


def filter_sql(where: Filter, at: float, alias: str = "i", param: str = "?") -> tuple[str, list[Any]]:
    """A WHERE fragment for a filter, with ``param`` as the placeholder style (``?`` or ``%s``).

    >>> filter_sql(Filter(kinds=("fact",)), at=5.0)[0]
    "i.kind IN (?) AND i.session IS NULL AND i.status = 'active' AND i.valid_from <= ? AND (i.valid_until IS NULL OR i.valid_until > ?)"
    """
    parts: list[str] = []
    params: list[Any] = []
    for col, values in (("kind", where.kinds), ("section", where.sections), ("scope", where.scopes)):
        if values is not None:
            parts.append(f"{alias}.{col} IN ({', '.join([param] * len(values))})" if values else "0 = 1")
            params.extend(values)
    if where.session is None:
        parts.append(f"{alias}.session IS NULL")
    else:
        parts.append(f"({alias}.session IS NULL OR {alias}.session = {param})")
        params.append(where.session)
    if not where.include_inactive:
        t = where.as_of if where.as_of is not None else at
        parts.append(f"{alias}.status = 'active' AND {alias}.valid_from <= {param} AND "
                     f"({alias}.valid_until IS NULL OR {alias}.valid_until > {param})")
        params.extend([t, t])
    return " AND ".join(parts), params


def items_from_bodies(rows: Iterable[tuple[Any, ...]]) -> Iterator[Item]:
    """Items from (body json[, embedding bytes]) rows."""
    import json

    for row in rows:
        emb = np.frombuffer(row[1], dtype=np.float32).copy() if len(row) > 1 and row[1] is not None else None
        yield Item.from_stored(json.loads(row[0]), embedding=emb)

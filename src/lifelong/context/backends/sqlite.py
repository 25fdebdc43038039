"""The default backend: one SQLite file (WAL), FTS5 for BM25, sqlite-vec for vectors, and an HNSW
cache (usearch) for tenants too large to scan.

The system ``sqlite3`` module cannot load extensions, so this backend runs on ``pysqlite3-binary``
(SQLite 3.51). Writers take the write lock up front (``BEGIN IMMEDIATE``) and wait at most
``lock_timeout`` seconds for another process; past that they raise :class:`StoreLockedError` having
written nothing. Readers never wait (WAL). Every statement is below, in :class:`SQL`.

>>> import tempfile, os
>>> b = SQLiteBackend(os.path.join(tempfile.mkdtemp(), "m.db"), dim=4, embedder_name="test-4")
>>> b.create_tenant("alice"); b.tenants()
['alice']
>>> b.close()
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.context.backends import ann as ann_mod
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

CHUNK = 500  # ids per IN (...) list


class SQL:
    """Every statement the SQLite backend runs."""

    SCHEMA = (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE tenants (no INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL,
            created_at REAL NOT NULL, seq INTEGER NOT NULL DEFAULT 0)""",
        # The body (canonical JSON) is the truth; the other columns exist to filter in SQL. AUTOINCREMENT:
        # row ids key the vector index and must never be reused.
        """CREATE TABLE items (rowid INTEGER PRIMARY KEY AUTOINCREMENT, tenant INTEGER NOT NULL, id TEXT NOT NULL,
            version INTEGER NOT NULL, hash TEXT NOT NULL, chash TEXT NOT NULL, shard INTEGER NOT NULL,
            kind TEXT NOT NULL, section TEXT NOT NULL, scope TEXT NOT NULL, session TEXT, status TEXT NOT NULL,
            in_index INTEGER NOT NULL, valid_from REAL NOT NULL, valid_until REAL, body TEXT NOT NULL,
            seq INTEGER NOT NULL, UNIQUE (tenant, id))""",
        "CREATE INDEX items_seq ON items (tenant, seq)",
        "CREATE INDEX items_shard ON items (tenant, shard)",
        "CREATE INDEX items_chash ON items (tenant, chash)",
        # Every version of every item, append-only; a NULL body is a hard-delete tombstone.
        """CREATE TABLE versions (tenant INTEGER NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
            hash TEXT NOT NULL, body TEXT, seq INTEGER NOT NULL, PRIMARY KEY (tenant, id, version))""",
        "CREATE INDEX versions_hash ON versions (tenant, hash)",
        "CREATE TABLE removed (tenant INTEGER NOT NULL, row INTEGER NOT NULL, shard INTEGER NOT NULL, seq INTEGER NOT NULL)",
        "CREATE INDEX removed_seq ON removed (tenant, seq)",
        # Embeddings of content that was edited away, so a rollback restores the exact vector.
        """CREATE TABLE vector_archive (tenant INTEGER NOT NULL, chash TEXT NOT NULL, embedding BLOB NOT NULL,
            PRIMARY KEY (tenant, chash))""",
        """CREATE TABLE ops (seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant INTEGER NOT NULL, batch TEXT NOT NULL,
            at REAL NOT NULL, op TEXT NOT NULL)""",
        "CREATE INDEX ops_tenant ON ops (tenant, seq)",
        """CREATE TABLE heads (tenant INTEGER NOT NULL, ref TEXT NOT NULL, version TEXT NOT NULL,
            seq INTEGER NOT NULL, PRIMARY KEY (tenant, ref))""",
    )
    VEC_TABLE = ("CREATE VIRTUAL TABLE items_vec USING vec0(tenant INTEGER PARTITION KEY, "
                 "embedding float[{dim}] distance_metric=cosine)")
    FTS_TABLE = "CREATE VIRTUAL TABLE fts_{no} USING fts5(terms, content='', contentless_delete=1)"
    META_GET = "SELECT key, value FROM meta"
    META_PUT = "INSERT INTO meta (key, value) VALUES (?, ?)"
    TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"

    TENANTS = "SELECT name FROM tenants ORDER BY name"
    TENANT_NO = "SELECT no, seq FROM tenants WHERE name = ?"
    TENANT_ADD = "INSERT INTO tenants (name, created_at) VALUES (?, ?)"
    TENANT_SEQ = "SELECT seq FROM tenants WHERE no = ?"
    TENANT_SET_SEQ = "UPDATE tenants SET seq = ? WHERE no = ?"

    LOOKUP = "SELECT id, body FROM items WHERE tenant = ? AND id IN ({q})"
    MAX_VERSIONS = "SELECT id, MAX(version) FROM versions WHERE tenant = ? AND id IN ({q}) GROUP BY id"
    LIVE_VERSIONS = "SELECT id, version FROM items WHERE tenant = ? AND id IN ({q})"
    ITER = "SELECT body FROM items WHERE tenant = ? AND id > ? ORDER BY id LIMIT ?"
    ITER_EMB = ("SELECT i.body, v.embedding FROM items i LEFT JOIN items_vec v ON v.rowid = i.rowid "
                "WHERE i.tenant = ? AND i.id > ? ORDER BY i.id LIMIT ?")
    COUNT = "SELECT COUNT(*) FROM items WHERE tenant = ?"
    COUNT_INDEXED = "SELECT COUNT(*) FROM items WHERE tenant = ? AND in_index = 1"
    HISTORY = "SELECT body FROM versions WHERE tenant = ? AND id = ? AND body IS NOT NULL ORDER BY version"
    BODIES = "SELECT hash, body FROM versions WHERE tenant = ? AND body IS NOT NULL AND hash IN ({q})"
    LIVE_VECTORS = ("SELECT i.chash, v.embedding FROM items i JOIN items_vec v ON v.rowid = i.rowid "
                    "WHERE i.tenant = ? AND i.chash IN ({q})")
    ARCHIVED_VECTORS = "SELECT chash, embedding FROM vector_archive WHERE tenant = ? AND chash IN ({q})"
    MANIFEST = "SELECT shard, id, hash FROM items WHERE tenant = ?"
    SHARDS_SINCE = ("SELECT shard FROM items WHERE tenant = ? AND seq > ? "
                    "UNION SELECT shard FROM removed WHERE tenant = ? AND seq > ?")
    OPS = "SELECT seq, batch, at, op FROM ops WHERE tenant = ? AND seq > ? ORDER BY seq"
    HEAD_GET = "SELECT version, seq FROM heads WHERE tenant = ? AND ref = ?"
    HEAD_SET = ("INSERT INTO heads (tenant, ref, version, seq) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, ref) DO UPDATE SET version = excluded.version, seq = excluded.seq")

    OP_ADD = "INSERT INTO ops (tenant, batch, at, op) VALUES (?, ?, ?, ?)"
    LAST_SEQ = "SELECT seq FROM sqlite_sequence WHERE name = ?"
    ITEMS_FIND = "SELECT id, rowid, chash FROM items WHERE tenant = ? AND id IN ({q})"
    ITEM_INSERT = ("INSERT INTO items (rowid, tenant, id, version, hash, chash, shard, kind, section, scope, session,"
                   " status, in_index, valid_from, valid_until, body, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                   " ?, ?, ?)")
    ITEM_UPDATE = ("UPDATE items SET version = ?, hash = ?, chash = ?, kind = ?, section = ?, scope = ?, session = ?,"
                   " status = ?, in_index = ?, valid_from = ?, valid_until = ?, body = ?, seq = ? WHERE rowid = ?")
    ITEM_DELETE = "DELETE FROM items WHERE rowid = ?"
    ITEM_FOR_REMOVE = "SELECT rowid, shard, chash FROM items WHERE tenant = ? AND id = ?"
    VERSION_ADD = "INSERT OR IGNORE INTO versions (tenant, id, version, hash, body, seq) VALUES (?, ?, ?, ?, ?, ?)"
    REMOVED_ADD = "INSERT INTO removed (tenant, row, shard, seq) VALUES (?, ?, ?, ?)"
    VEC_INSERT = "INSERT INTO items_vec (rowid, tenant, embedding) VALUES (?, ?, ?)"
    VEC_DELETE = "DELETE FROM items_vec WHERE rowid = ?"
    VEC_ARCHIVE = ("INSERT OR IGNORE INTO vector_archive (tenant, chash, embedding) "
                   "SELECT ?, ?, embedding FROM items_vec WHERE rowid = ?")
    VEC_GET = "SELECT rowid, embedding FROM items_vec WHERE rowid IN ({q})"
    FTS_INSERT = "INSERT INTO fts_{no} (rowid, terms) VALUES (?, ?)"
    FTS_DELETE = "DELETE FROM fts_{no} WHERE rowid = ?"

    KNN = ("SELECT rowid, distance FROM items_vec WHERE embedding MATCH ? AND k = ? AND tenant = ? "
           "ORDER BY distance")
    SCAN = ("SELECT i.rowid, vec_distance_cosine(v.embedding, ?) AS d FROM items i JOIN items_vec v ON v.rowid = i.rowid"
            " WHERE i.tenant = ? AND {where} ORDER BY d LIMIT ?")
    SIMILARITY = "SELECT rowid, vec_distance_cosine(embedding, ?) FROM items_vec WHERE rowid IN ({q})"
    # "+i.tenant": the row ids are the selective part; without the + SQLite scans the tenant's index.
    ADMIT = "SELECT i.rowid FROM items i WHERE +i.tenant = ? AND i.rowid IN ({q}) AND {where}"
    BM25 = ("SELECT f.rowid, -bm25(fts_{no}) AS s FROM fts_{no} f JOIN items i ON i.rowid = f.rowid "
            "WHERE fts_{no} MATCH ? AND +i.tenant = ? AND {where}{keys} ORDER BY s DESC LIMIT ?")
    FETCH = "SELECT rowid, body FROM items WHERE +tenant = ? AND rowid IN ({q})"
    IDS = "SELECT rowid, id FROM items WHERE +tenant = ? AND rowid IN ({q})"
    FETCH_IDS = "SELECT rowid, id, body FROM items WHERE tenant = ? AND id IN ({q})"
    INDEXED_SINCE = "SELECT rowid, in_index FROM items WHERE tenant = ? AND seq > ?"
    REMOVED_SINCE = "SELECT row FROM removed WHERE tenant = ? AND seq > ?"

    COPY_ITEMS = ("INSERT INTO items (tenant, id, version, hash, chash, shard, kind, section, scope, session, status,"
                  " in_index, valid_from, valid_until, body, seq) SELECT ?, id, version, hash, chash, shard, kind,"
                  " section, scope, session, status, in_index, valid_from, valid_until, body, ? FROM items WHERE tenant = ?")
    COPY_VERSIONS = ("INSERT INTO versions (tenant, id, version, hash, body, seq) "
                     "SELECT ?, id, version, hash, body, ? FROM versions WHERE tenant = ?")
    COPY_PAIRS = ("SELECT n.rowid, o.rowid, n.body FROM items o JOIN items n ON n.id = o.id AND n.tenant = ? "
                  "WHERE o.tenant = ?")
    VEC_ONE = "SELECT embedding FROM items_vec WHERE rowid = ?"


def _connect(path: str, timeout: float) -> Any:
    try:
        import pysqlite3.dbapi2 as sqlite3
        import sqlite_vec
    except ImportError as err:
        raise StoreFormatError(
            f"the SQLite memory backend needs `pip install pysqlite3-binary sqlite-vec` ({err}): the system sqlite3 "
            "module cannot load the vector extension"
        ) from None
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return conn


def _q(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(seq: Sequence[Any], n: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def index_terms(item: Item) -> str:
    """The text FTS5 indexes for an item: its content and tags as normalised terms."""
    return " ".join(terms(item.content) + terms(" ".join(item.tags)))


class SQLiteBackend(Backend):
    """Memory on one SQLite file (``":memory:"`` for a throwaway store)."""

    def __init__(self, path: str | os.PathLike[str], *, dim: int, embedder_name: str, lock_timeout: float = 10.0,
                 exact_below: int = 2000, ann_dtype: str = "bf16", threads: int = 1) -> None:
        self.location = os.fspath(path)
        self.lock_timeout = lock_timeout
        self.exact_below = exact_below
        self.ann_dtype = ann_dtype
        self.threads = threads
        self._lock = threading.RLock()
        self._ann: dict[int, ann_mod.AnnIndex] = {}
        self._small_at: dict[int, int] = {}  # tenant -> seq at which it was last counted below exact_below
        self._nos: dict[str, int] = {}
        if self.location != ":memory:":
            Path(self.location).parent.mkdir(parents=True, exist_ok=True)
        self._conn = _connect(self.location, lock_timeout)
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
        except Exception as err:  # a locked or foreign file
            raise self._translate(err) from None
        # NORMAL is durable against a killed process; FULL would add durability against power loss.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of page cache per connection
        self._conn.execute("PRAGMA mmap_size = 1073741824")  # reads through the OS page cache, without copies
        self._init_schema(dim, embedder_name)

    # ------------------------------------------------------------------ plumbing
    def _translate(self, err: Exception) -> Exception:
        msg = str(err)
        if "locked" in msg or "busy" in msg:
            return StoreLockedError(
                f"{self.location} is locked by another process (held for more than {self.lock_timeout:g} s); "
                "nothing was written and every stored item is unchanged: retry later, or open the store with a "
                "longer lock_timeout"
            )
        if "not a database" in msg or "malformed" in msg:
            return StoreFormatError(f"{self.location} is not a memory store ({msg}); it was left untouched")
        return err

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except Exception as err:
                raise self._translate(err) from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except Exception as err:
                self._conn.execute("ROLLBACK")
                raise self._translate(err) from None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except Exception as err:
                raise self._translate(err) from None

    def _init_schema(self, dim: int, embedder_name: str) -> None:
        tables = {r[0] for r in self._read(SQL.TABLES)}
        if not tables:
            with self._tx() as c:
                if not {r[0] for r in c.execute(SQL.TABLES)}:  # another process may have won the race
                    for stmt in SQL.SCHEMA:
                        c.execute(stmt)
                    c.execute(SQL.VEC_TABLE.format(dim=int(dim)))
                    for k, v in (("magic", MAGIC), ("schema", SCHEMA_VERSION), ("dim", str(dim)),
                                 ("embedder", embedder_name)):
                        c.execute(SQL.META_PUT, (k, v))
        meta = dict(self._read(SQL.META_GET)) if "meta" in {r[0] for r in self._read(SQL.TABLES)} else {}
        if meta.get("magic") != MAGIC:
            self._conn.close()
            raise StoreFormatError(
                f"{self.location} is an SQLite database but not a lifelong memory store; it was left untouched. "
                "Pass a new path to create a store"
            )
        if meta.get("schema") != SCHEMA_VERSION:
            raise StoreFormatError(f"{self.location} has memory schema {meta.get('schema')}, this code reads {SCHEMA_VERSION}")
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
        if tenant in self._nos:
            return self._nos[tenant]
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
        with self._tx() as c:
            if c.execute(SQL.TENANT_NO, (tenant,)).fetchall():
                return
            no = c.execute(SQL.TENANT_ADD, (tenant, time.time())).lastrowid
            c.execute(SQL.FTS_TABLE.format(no=int(no)))

    # ------------------------------------------------------------------ reads
    def lookup(self, tenant: str, ids: Iterable[str]) -> dict[str, tuple[Item | None, int]]:
        no, ids = self._no(tenant), list(dict.fromkeys(ids))
        out: dict[str, tuple[Item | None, int]] = {i: (None, 0) for i in ids}
        for chunk in _chunks(ids):
            maxv = dict(self._read(SQL.MAX_VERSIONS.format(q=_q(len(chunk))), (no, *chunk)))
            for id in chunk:
                out[id] = (None, int(maxv.get(id, 0)))
            for id, body in self._read(SQL.LOOKUP.format(q=_q(len(chunk))), (no, *chunk)):
                out[id] = (Item.from_stored(json.loads(body)), out[id][1])
        return out

    def iter_items(self, tenant: str, *, with_embeddings: bool = False, batch: int = 1000) -> Iterator[Item]:
        no, last = self._no(tenant), ""
        sql = SQL.ITER_EMB if with_embeddings else SQL.ITER
        while True:
            rows = self._read(sql, (no, last, batch))
            if not rows:
                return
            items = list(items_from_bodies(rows))
            yield from items
            last = items[-1].id

    def count(self, tenant: str, *, current_only: bool = False) -> int:
        return int(self._read(SQL.COUNT_INDEXED if current_only else SQL.COUNT, (self._no(tenant),))[0][0])

    def history(self, tenant: str, item_id: str) -> list[Item]:
        return list(items_from_bodies(self._read(SQL.HISTORY, (self._no(tenant), item_id))))

    def bodies(self, tenant: str, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        no, hashes, out = self._no(tenant), list(set(hashes)), {}
        for chunk in _chunks(hashes):
            for h, body in self._read(SQL.BODIES.format(q=_q(len(chunk))), (no, *chunk)):
                out[h] = json.loads(body)
        return out

    def vectors_for_content(self, tenant: str, content_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        no, hashes, out = self._no(tenant), list(set(content_hashes)), {}
        for chunk in _chunks(hashes):
            for sql in (SQL.ARCHIVED_VECTORS, SQL.LIVE_VECTORS):
                for h, emb in self._read(sql.format(q=_q(len(chunk))), (no, *chunk)):
                    out[h] = np.frombuffer(emb, dtype=np.float32).copy()
        return out

    def manifest(self, tenant: str, shards: Iterable[int] | None = None) -> dict[int, dict[str, str]]:
        no, out = self._no(tenant), {}
        wanted = None if shards is None else set(shards)
        if wanted is not None and not wanted:
            return {}
        sql, params = SQL.MANIFEST, [no]
        if wanted is not None:
            sql += f" AND shard IN ({_q(len(wanted))})"
            params += sorted(wanted)
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
        return [{"seq": s, "batch": b, "at": at, "op": json.loads(op)}
                for s, b, at, op in self._read(sql, (self._no(tenant), since))]

    def get_head(self, tenant: str, ref: str) -> tuple[str, int] | None:
        rows = self._read(SQL.HEAD_GET, (self._no(tenant), ref))
        return (rows[0][0], int(rows[0][1])) if rows else None

    def set_head(self, tenant: str, ref: str, version: str, seq: int) -> None:
        with self._tx() as c:
            c.execute(SQL.HEAD_SET, (self._no(tenant), ref, version, seq))

    # ------------------------------------------------------------------ writes
    @contextmanager
    def write_lock(self, tenant: str) -> Iterator[None]:
        self._no(tenant)
        with self._tx():
            yield

    def write(self, tenant: str, batch: WriteBatch) -> int:
        no = self._no(tenant)
        with self._tx() as c:
            self._check_expected(c, no, batch.expect)
            c.executemany(SQL.OP_ADD, [(no, batch.batch, batch.at, json.dumps(op, sort_keys=True)) for op in batch.ops])
            seq = int(c.execute(SQL.LAST_SEQ, ("ops",)).fetchone()[0])
            maybe_old = [i.id for i, _ in batch.upserts if not (i.id in batch.expect and batch.expect[i.id] is None)]
            found: dict[str, tuple[int, str]] = {}
            for chunk in _chunks(maybe_old):
                found.update({r[0]: (r[1], r[2]) for r in c.execute(SQL.ITEMS_FIND.format(q=_q(len(chunk))), (no, *chunk))})
            rows = {item.id: item_row(item) for item, _ in batch.upserts}
            new = [(item, vec) for item, vec in batch.upserts if item.id not in found]
            # New rows get their row ids here (we hold the write lock), so each table is one executemany.
            last = c.execute(SQL.LAST_SEQ, ("items",)).fetchone()
            first = (int(last[0]) if last else 0) + 1
            if any(vec is None for _, vec in new):
                raise DimensionError(f"items {[i.id for i, v in new if v is None][:3]} are new but have no embedding")
            c.executemany(SQL.ITEM_INSERT, [
                (first + k, no, r["id"], r["version"], r["hash"], r["chash"], r["shard"], r["kind"], r["section"],
                 r["scope"], r["session"], r["status"], r["in_index"], r["valid_from"], r["valid_until"], r["body"], seq)
                for k, r in enumerate(rows[item.id] for item, _ in new)])
            c.executemany(SQL.VEC_INSERT, [(first + k, no, np.asarray(vec, dtype=np.float32).tobytes())
                                           for k, (_, vec) in enumerate(new)])
            fts_insert, fts_delete = SQL.FTS_INSERT.format(no=no), SQL.FTS_DELETE.format(no=no)
            c.executemany(fts_insert, [(first + k, index_terms(item)) for k, (item, _) in enumerate(new)])
            for item, vec in batch.upserts:
                if item.id not in found:
                    continue
                r, (row, old_chash) = rows[item.id], found[item.id]
                c.execute(SQL.ITEM_UPDATE, (r["version"], r["hash"], r["chash"], r["kind"], r["section"], r["scope"],
                                            r["session"], r["status"], r["in_index"], r["valid_from"],
                                            r["valid_until"], r["body"], seq, row))
                if vec is not None:
                    if old_chash != r["chash"]:
                        c.execute(SQL.VEC_ARCHIVE, (no, old_chash, row))
                    c.execute(SQL.VEC_DELETE, (row,))
                    c.execute(SQL.VEC_INSERT, (row, no, np.asarray(vec, dtype=np.float32).tobytes()))
                c.execute(fts_delete, (row,))
                c.execute(fts_insert, (row, index_terms(item)))
            if batch.record_versions:
                c.executemany(SQL.VERSION_ADD, [(no, r["id"], r["version"], r["hash"], r["body"], seq)
                                                for r in rows.values()])
            for id in batch.removes:
                gone = c.execute(SQL.ITEM_FOR_REMOVE, (no, id)).fetchone()
                if gone is None:
                    continue
                row, shard, chash = gone
                c.execute(SQL.VEC_ARCHIVE, (no, chash, row))
                c.execute(SQL.VEC_DELETE, (row,))
                c.execute(fts_delete, (row,))
                c.execute(SQL.ITEM_DELETE, (row,))
                c.execute(SQL.REMOVED_ADD, (no, row, shard, seq))
            c.executemany(SQL.VERSION_ADD, [(no, id, version, "", None, seq) for id, version in batch.tombstones])
            c.execute(SQL.TENANT_SET_SEQ, (seq, no))
        self._sync_ann(no)  # keeps the HNSW cost on the write path, where Chroma pays it too
        return seq

    def _check_expected(self, c: Any, no: int, expect: dict[str, int | None]) -> None:
        ids = list(expect)
        live: dict[str, int] = {}
        for chunk in _chunks(ids):
            live.update(c.execute(SQL.LIVE_VERSIONS.format(q=_q(len(chunk))), (no, *chunk)).fetchall())
        stale = [i for i in ids if live.get(i) != expect[i]]
        if stale:
            raise StalePlanError(
                f"items {stale[:5]} changed after this plan was made (expected versions "
                f"{[expect[i] for i in stale[:5]]}, found {[live.get(i) for i in stale[:5]]}); nothing was written. "
                "Plan the operations again against the current store"
            )

    def copy_tenant(self, source: str, target: str) -> None:
        src = self._no(source)
        self.create_tenant(target)
        dst = self._no(target)
        with self._tx() as c:
            seq = c.execute(SQL.OP_ADD, (dst, "fork", time.time(), json.dumps({"op": "FORK", "from": source}))).lastrowid
            c.execute(SQL.COPY_ITEMS, (dst, seq, src))
            c.execute(SQL.COPY_VERSIONS, (dst, seq, src))
            fts_insert = SQL.FTS_INSERT.format(no=dst)
            for new_row, old_row, body in c.execute(SQL.COPY_PAIRS, (dst, src)).fetchall():
                emb = c.execute(SQL.VEC_ONE, (old_row,)).fetchone()[0]
                c.execute(SQL.VEC_INSERT, (new_row, dst, emb))
                c.execute(fts_insert, (new_row, index_terms(Item.from_stored(json.loads(body)))))
            c.execute(SQL.TENANT_SET_SEQ, (seq, dst))

    # ------------------------------------------------------------------ the HNSW cache
    def _ann_path(self, no: int) -> Path | None:
        return None if self.location == ":memory:" else Path(self.location + ".ann") / f"tenant-{no}.usearch"

    def _sync_ann(self, no: int, build: bool = True) -> ann_mod.AnnIndex | None:
        """The tenant's HNSW index, caught up with the database; None when the tenant is small enough to
        scan exactly (or usearch is missing). With ``build=False`` only an index already open is updated."""
        ann = self._ann.get(no)
        if ann is None:
            if not build or not ann_mod.available():
                return None
            seq = int(self._read(SQL.TENANT_SEQ, (no,))[0][0])
            if self._small_at.get(no) == seq:
                return None
            path = self._ann_path(no)
            if path is None or not path.exists():
                if int(self._read(SQL.COUNT_INDEXED, (no,))[0][0]) < self.exact_below:
                    self._small_at[no] = seq
                    return None
            ann = ann_mod.AnnIndex.load(self.dim, path, dtype=self.ann_dtype) if path is not None else \
                ann_mod.AnnIndex(self.dim, None, dtype=self.ann_dtype)
            self._ann[no] = ann
        seq = int(self._read(SQL.TENANT_SEQ, (no,))[0][0])
        if ann.watermark >= seq:
            return ann
        changed = self._read(SQL.INDEXED_SINCE, (no, ann.watermark))
        gone = [r[0] for r in self._read(SQL.REMOVED_SINCE, (no, ann.watermark))]
        ann.remove(np.asarray(gone + [r for r, ok in changed if not ok], dtype=np.int64))
        keep = [r for r, ok in changed if ok]
        for chunk in _chunks(keep, 4096):
            rows = self._read(SQL.VEC_GET.format(q=_q(len(chunk))), chunk)
            keys = np.asarray([r[0] for r in rows], dtype=np.int64)
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            ann.upsert(keys, vecs, threads=self.threads)
        ann.watermark = seq
        if len(keep) > 50_000:
            ann.save()  # a large catch-up is worth keeping even if this process dies before close()
        return ann

    def ann_size(self, tenant: str) -> int | None:
        """Rows in the tenant's HNSW index, or None when the tenant is searched exactly."""
        ann = self._sync_ann(self._no(tenant))
        return None if ann is None else len(ann)

    # ------------------------------------------------------------------ search
    def dense(self, tenant: str, vector: np.ndarray, n: int, where: Filter, at: float) -> dict[int, float]:
        no = self._no(tenant)
        q = np.asarray(vector, dtype=np.float32)
        clause, params = filter_sql(where, at)
        ann = None if where.include_inactive else self._sync_ann(no)
        if ann is not None:
            fetch = max(2 * n, n + 20)
            while True:
                keys, sims = ann.search(q, fetch)
                ok = self._admit(no, keys.tolist(), clause, params)
                hits = {int(k): float(s) for k, s in zip(keys, sims, strict=True) if int(k) in ok}
                if len(hits) >= n or fetch >= len(ann):
                    return dict(list(hits.items())[:n])
                if fetch >= 8 * n + 200:
                    break  # a selective filter: scanning the admitted rows exactly is cheaper
                fetch *= 4
        else:
            # Unfiltered-looking queries first try sqlite-vec's KNN over the tenant's partition.
            total = self.count(tenant)
            k = min(max(2 * n, n + 20), total, 4096)
            if k > 0:
                rows = self._read(SQL.KNN, (q.tobytes(), k, no))
                ok = self._admit(no, [r[0] for r in rows], clause, params)
                hits = {int(r[0]): 1.0 - float(r[1]) for r in rows if r[0] in ok}
                if len(hits) >= n or k >= total:
                    return dict(list(hits.items())[:n])
        rows = self._read(SQL.SCAN.format(where=clause), (q.tobytes(), no, *params, n))
        return {int(r): 1.0 - float(d) for r, d in rows}

    def _admit(self, no: int, keys: list[int], clause: str, params: list[Any]) -> set[int]:
        out: set[int] = set()
        for chunk in _chunks(keys):
            out.update(r[0] for r in self._read(SQL.ADMIT.format(q=_q(len(chunk)), where=clause), (no, *chunk, *params)))
        return out

    def similarity(self, tenant: str, vector: np.ndarray, keys: Sequence[int]) -> dict[int, float]:
        q, out = np.asarray(vector, dtype=np.float32).tobytes(), {}
        for chunk in _chunks(list(keys)):
            for r, d in self._read(SQL.SIMILARITY.format(q=_q(len(chunk))), (q, *chunk)):
                out[int(r)] = 1.0 - float(d)
        return out

    def bm25(self, tenant: str, terms: Sequence[str], n: int, where: Filter, at: float,
             keys: Sequence[int] | None = None) -> dict[int, float]:
        if not terms or (keys is not None and not keys):
            return {}
        no = self._no(tenant)
        clause, params = filter_sql(where, at)
        match = " OR ".join(f'"{t}"' for t in terms)  # terms are \w+ runs: quoting makes AND/NOT/NEAR literal
        key_sql = "" if keys is None else f" AND f.rowid IN ({_q(len(keys))})"
        sql = SQL.BM25.format(no=no, where=clause, keys=key_sql)
        rows = self._read(sql, (match, no, *params, *(keys or ()), n))
        return {int(r): float(s) for r, s in rows}

    def fetch(self, tenant: str, keys: Sequence[int]) -> dict[int, Item]:
        no, out = self._no(tenant), {}
        for chunk in _chunks(list(keys)):
            for r, body in self._read(SQL.FETCH.format(q=_q(len(chunk))), (no, *chunk)):
                out[int(r)] = Item.from_stored(json.loads(body))
        return out

    def ids(self, tenant: str, keys: Sequence[int]) -> dict[int, str]:
        no, out = self._no(tenant), {}
        for chunk in _chunks(list(keys)):
            out.update({int(r): i for r, i in self._read(SQL.IDS.format(q=_q(len(chunk))), (no, *chunk))})
        return out

    def fetch_ids(self, tenant: str, ids: Sequence[str]) -> dict[str, tuple[int, Item]]:
        no, out = self._no(tenant), {}
        for chunk in _chunks(list(ids)):
            for r, id, body in self._read(SQL.FETCH_IDS.format(q=_q(len(chunk))), (no, *chunk)):
                out[id] = (int(r), Item.from_stored(json.loads(body)))
        return out

    def close(self) -> None:
        with self._lock:
            for ann in self._ann.values():
                try:
                    ann.save()
                except OSError:
                    pass  # the index is a cache: the next open rebuilds it from the database
            self._ann.clear()
            try:
                self._conn.close()
            except Exception:  # already closed
                pass

"""Storage backends for the ledger: the small SQL surface the ledger needs, and SQLite's implementation.

The ledger speaks portable SQL with ``?`` placeholders through :class:`SQLBackend`; a backend owns the
connection, transactions and schema. SQLite (WAL mode) is the default; the PostgreSQL backend
(:mod:`lifelong.control.ledger.postgres`) implements the same surface over the same schema, so the
ledger's SQL stays portable: ``INSERT ... ON CONFLICT``, ``RETURNING``, no SQLite-only syntax.

>>> import tempfile, os
>>> b = SQLiteBackend(os.path.join(tempfile.mkdtemp(), "x.db"), create=True)
>>> with b.transaction() as tx:
...     _ = tx.execute("CREATE TABLE t (x INTEGER)")
...     _ = tx.execute("INSERT INTO t VALUES (?)", (1,))
>>> b.query("SELECT x FROM t")
[(1,)]
"""

from __future__ import annotations

import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from lifelong.core.errors import NotALedgerError

MAGIC = "lifelong-ledger"
MIN_SQLITE = (3, 35, 0)  # INSERT ... RETURNING, which the ledger uses on both databases
SCHEMA_VERSION = "1"

APPEND_ONLY_TABLES = ("blobs", "versions", "changes", "verdicts", "events")

SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Blobs live in the database itself: one file to back up, and one transaction covers a whole commit.
    "CREATE TABLE blobs (hash TEXT PRIMARY KEY, media_type TEXT NOT NULL, size INTEGER NOT NULL, data BLOB NOT NULL)",
    "CREATE TABLE versions (id TEXT PRIMARY KEY, manifest TEXT NOT NULL, meta TEXT NOT NULL, created_at REAL NOT NULL)",
    """CREATE TABLE changes (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, scope TEXT NOT NULL, learner TEXT NOT NULL, ref TEXT NOT NULL,
        base_version TEXT, candidate_version TEXT NOT NULL, provenance TEXT NOT NULL, cost TEXT NOT NULL,
        created_at REAL NOT NULL)""",
    """CREATE TABLE verdicts (
        id TEXT PRIMARY KEY, change_id TEXT NOT NULL, accepted INTEGER NOT NULL, summary TEXT NOT NULL,
        evidence TEXT NOT NULL, created_at REAL NOT NULL)""",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, type TEXT NOT NULL, ref TEXT,
        from_version TEXT, to_version TEXT, change_id TEXT, verdict_id TEXT, actor TEXT NOT NULL,
        message TEXT NOT NULL, data TEXT NOT NULL)""",
    "CREATE TABLE refs (name TEXT PRIMARY KEY, version_id TEXT NOT NULL, event_seq INTEGER NOT NULL)",
    "CREATE INDEX events_ref ON events (ref, seq)",
    "CREATE INDEX changes_candidate ON changes (candidate_version)",
    "CREATE INDEX verdicts_change ON verdicts (change_id)",
]


def append_only_triggers() -> list[str]:
    """SQLite triggers that refuse UPDATE and DELETE on the history tables."""
    out = []
    for table in APPEND_ONLY_TABLES:
        for op in ("UPDATE", "DELETE"):
            out.append(
                f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: {op} on {table} is refused'); END"
            )
    return out


class Tx(Protocol):
    """What a transaction offers: execute a statement, fetch rows."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class SQLBackend(ABC):
    """The storage surface of a ledger. Implementations must make :meth:`transaction` atomic and
    serialised against other writers (other threads and other processes)."""

    location: str

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction: all statements inside commit together or not at all."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read outside any write transaction."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""


class _SQLiteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, tuple(params))

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(params)).fetchall()


class SQLiteBackend(SQLBackend):
    """SQLite in WAL mode. Writers take the database lock up front (``BEGIN IMMEDIATE``) and wait up to
    ``timeout`` seconds for another process, so concurrent commits queue instead of failing."""

    def __init__(self, path: str | os.PathLike[str], create: bool = True, timeout: float = 60.0) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise NotALedgerError(
                f"the ledger needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer (INSERT ... RETURNING); this "
                f"Python links SQLite {sqlite3.sqlite_version}. Use a newer Python build, or a PostgreSQL ledger"
            )
        self.location = os.fspath(path)
        exists = os.path.exists(self.location) and os.path.getsize(self.location) > 0
        if not exists and not create:
            raise NotALedgerError(
                f"no ledger at {self.location}; check the path, or run `lifelong demo` to create one"
            )
        if not exists:
            os.makedirs(os.path.dirname(os.path.abspath(self.location)), exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(self.location, timeout=timeout, isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as err:
            raise NotALedgerError(
                f"{self.location} is not a lifelong ledger ({err}); pass the path of a ledger file, "
                "or a new path to create one"
            ) from None
        if not tables:
            self._create_schema()
        else:
            self._check_magic(tables)
        # WAL lets readers proceed while one process writes; NORMAL sync is durable against a killed
        # process (the case tested here), FULL would add durability against power loss.
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")

    def _check_magic(self, tables: set[str]) -> None:
        magic = None
        if "meta" in tables:
            rows = self._conn.execute("SELECT value FROM meta WHERE key='magic'").fetchall()
            magic = rows[0][0] if rows else None
        if magic != MAGIC:
            self._conn.close()
            raise NotALedgerError(
                f"{self.location} is an SQLite database but not a lifelong ledger (no '{MAGIC}' marker); "
                "it was left untouched. Pass the path of a ledger file, or a new path to create one"
            )
        version = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchall()[0][0]
        if version != SCHEMA_VERSION:
            self._conn.close()
            raise NotALedgerError(
                f"{self.location} is a lifelong ledger of schema {version}, this lifelong reads schema "
                f"{SCHEMA_VERSION}; upgrade lifelong to read it"
            )

    def _create_schema(self) -> None:
        with self.transaction() as tx:
            # Another process may have created it between our check and our lock.
            if tx.fetchall("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'"):
                return
            for stmt in SCHEMA + append_only_triggers():
                tx.execute(stmt)
            tx.execute("INSERT INTO meta VALUES ('magic', ?)", (MAGIC,))
            tx.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

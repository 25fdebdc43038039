"""The ledger on PostgreSQL, for deployments where several hosts share one history.

:class:`PostgresBackend` keeps the SQLite backend's schema and rules in a PostgreSQL database (psycopg 3;
``pip install lifelong[memory]``): the same tables, with ``BYTEA`` for blobs, ``BIGSERIAL`` for the event
sequence and ``DOUBLE PRECISION`` for times; the same ``meta`` table whose marker and schema version are
checked on open; and the same append-only rule, enforced by a PL/pgSQL trigger that refuses UPDATE,
DELETE and TRUNCATE on the history tables with SQLite's message. The ledger's ``?`` placeholders are
translated to psycopg's ``%s`` (a literal ``%`` is escaped).

Concurrency: every write transaction (READ COMMITTED) first takes one transaction-scoped advisory lock
per ledger (``pg_advisory_xact_lock``), so writers from any number of processes and hosts run one after
another, exactly like SQLite's ``BEGIN IMMEDIATE``: a commit reads the head and moves the ref with no
other writer in between, so no commit is lost and every commit's parent is the head the one before left.
The lock is released by COMMIT or ROLLBACK, also when a writer's connection dies.
Reads run outside any transaction and never wait. A writer waits at most ``timeout`` seconds for the
lock, then gets :class:`~lifelong.core.errors.LedgerBusyError` with nothing written.

Give the ledger a database of its own (the memory store's tables would make it "not a ledger"), or a
schema of its own through libpq's ``options`` (``...?options=-csearch_path%3Dledger``, with the schema
created beforehand). ``Ledger.open`` picks this backend for ``postgresql://`` and ``postgres://`` URLs:

>>> from lifelong.control.ledger import Ledger
>>> ledger = Ledger.open("postgresql://lifelong@db.internal/ledger")  # doctest: +SKIP
>>> ledger.backend.query("SELECT value FROM meta WHERE key = ?", ("magic",))  # doctest: +SKIP
[('lifelong-ledger',)]

The statements run as written below; the translation is visible without a server:

>>> to_psycopg("SELECT id FROM versions WHERE id LIKE ? AND note = '?%'")
"SELECT id FROM versions WHERE id LIKE %s AND note = '?%%'"
>>> postgres_schema()[1]
'CREATE TABLE blobs (hash TEXT PRIMARY KEY, media_type TEXT NOT NULL, size BIGINT NOT NULL, data BYTEA NOT NULL)'
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from lifelong.control.ledger.backend import APPEND_ONLY_TABLES, MAGIC, SCHEMA, SCHEMA_VERSION, SQLBackend, Tx
from lifelong.core.errors import LedgerBusyError, NotALedgerError

URL_PREFIXES = ("postgresql://", "postgres://")

# SQLite column types and their PostgreSQL equivalents; the schema itself is written once, in backend.py.
_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
)

APPEND_ONLY_FUNCTION = """CREATE FUNCTION lifelong_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$"""

_LOCK_CLASS = zlib.crc32(MAGIC.encode()) - 2**31  # first key of the two-key advisory lock space


def is_postgres_url(location: object) -> bool:
    """Whether a ledger location names a PostgreSQL database.

    >>> is_postgres_url("postgresql://host/db"), is_postgres_url("runs/demo/ledger.db")
    (True, False)
    """
    return isinstance(location, str) and location.startswith(URL_PREFIXES)


def redact(url: str) -> str:
    """The URL with its password hidden, for messages.

    >>> redact("postgresql://app:s3cret@db:5432/ledger")
    'postgresql://app:***@db:5432/ledger'
    """
    return re.sub(r"^([a-z]+://[^:/@?]*):[^@/?]*@", r"\1:***@", url)


def postgres_schema() -> list[str]:
    """The ledger's tables and indexes (backend.SCHEMA) in PostgreSQL's types."""
    out = []
    for stmt in SCHEMA:
        for pattern, replacement in _TYPES:
            stmt = pattern.sub(replacement, stmt)
        out.append(stmt)
    return out


def append_only_triggers() -> list[str]:
    """The trigger function and triggers that refuse UPDATE, DELETE and TRUNCATE on the history tables,
    with the same names (``<table>_no_update``...) and message as the SQLite triggers."""
    out = [APPEND_ONLY_FUNCTION]
    for table in APPEND_ONLY_TABLES:
        for op in ("UPDATE", "DELETE"):
            out.append(f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION lifelong_ledger_append_only()")
        out.append(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION lifelong_ledger_append_only()")
    return out


_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?")


@lru_cache(maxsize=512)
def to_psycopg(sql: str) -> str:
    """``?`` placeholders (outside string literals) to ``%s``; every literal ``%`` doubled."""
    return _PLACEHOLDER.sub(lambda m: "%s" if m.group(0) == "?" else m.group(0), sql.replace("%", "%%"))


def _rows(rows: list[Any]) -> list[tuple[Any, ...]]:
    # BYTEA comes back as bytes from psycopg 3's default loader; a memoryview (another loader) is normalised.
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]


class _PostgresTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(to_psycopg(sql), tuple(params))

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return _rows(self._conn.execute(to_psycopg(sql), tuple(params)).fetchall())


class PostgresBackend(SQLBackend):
    """The ledger in a PostgreSQL database. Writers serialise on an advisory lock (waiting at most
    ``timeout`` seconds); a connection lost between calls is reopened."""

    def __init__(self, url: str, create: bool = True, timeout: float = 60.0) -> None:
        self.location = url
        self.timeout = timeout
        self._lock = threading.RLock()
        self._depth = 0  # open write transactions on this thread (the lock is reentrant)
        self._conn = self._connect()
        tables = self._tables()
        if not tables:
            if not create:
                self._conn.close()
                raise NotALedgerError(
                    f"no ledger in {redact(url)}: the database holds no tables; check the URL, or open it with "
                    "create=True to make a new ledger there"
                )
            self._create_schema()
        else:
            self._check_magic(tables)

    # ------------------------------------------------------------------ plumbing
    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as err:
            raise NotALedgerError(
                f"the PostgreSQL ledger needs psycopg 3: `pip install lifelong[memory]` ({err})"
            ) from None
        try:
            conn = psycopg.connect(self.location, autocommit=True)
        except psycopg.Error as err:
            raise NotALedgerError(f"cannot connect to the ledger at {redact(self.location)}: {err}") from None
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        if schema is None:
            conn.close()
            raise NotALedgerError(
                f"{redact(self.location)} has no schema on its search_path to hold a ledger; create the schema "
                "the URL's options name, or leave search_path alone"
            )
        # Two-key advisory locks live apart from the memory store's one-key locks; one ledger per schema.
        self._lock_key = (_LOCK_CLASS, zlib.crc32(f"{schema}".encode()) - 2**31)
        return conn

    def _live(self) -> Any:
        if self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _tables(self) -> set[str]:
        rows = self.query("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {r[0] for r in rows}

    def _check_magic(self, tables: set[str]) -> None:
        meta: dict[str, str] = {}
        if "meta" in tables:
            import psycopg

            try:
                meta = dict(self.query("SELECT key, value FROM meta"))
            except psycopg.Error:  # a table named meta, but not ours
                meta = {}
        if meta.get("magic") != MAGIC:
            self._conn.close()
            raise NotALedgerError(
                f"{redact(self.location)} is a PostgreSQL database but not a lifelong ledger (no '{MAGIC}' marker); "
                "it was left untouched. Pass the URL of a ledger, or of an empty database to create one"
            )
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            self._conn.close()
            raise NotALedgerError(
                f"{redact(self.location)} is a lifelong ledger of schema {version}, this lifelong reads schema "
                f"{SCHEMA_VERSION}; upgrade lifelong to read it"
            )

    def _create_schema(self) -> None:
        with self.transaction() as tx:
            # Another process may have created it between our check and our lock.
            if tx.fetchall("SELECT to_regclass('meta') IS NOT NULL")[0][0]:
                return
            for stmt in postgres_schema() + append_only_triggers():
                tx.execute(stmt)
            # Tensors do not compress: store blobs out of line without pglz's wasted effort.
            tx.execute("ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL")
            tx.execute("INSERT INTO meta VALUES ('magic', ?)", (MAGIC,))
            tx.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))

    # ------------------------------------------------------------------ the SQLBackend surface
    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            conn = self._begin()
            self._depth += 1
            try:
                yield _PostgresTx(conn)
            except BaseException:
                if not conn.broken:
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                self._depth -= 1

    def _begin(self) -> Any:
        """Open a transaction holding the ledger's write lock. A connection found dead at ``BEGIN`` (nothing
        done yet) is reopened once; waiting longer than ``timeout`` for the lock is LedgerBusyError."""
        import psycopg

        for attempt in (0, 1):
            conn = self._live()
            try:
                # READ COMMITTED whatever the server's default: each statement after the lock sees the
                # previous writer's commit (a REPEATABLE READ snapshot would predate the lock wait).
                conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            except psycopg.OperationalError:
                if attempt or not conn.broken:
                    raise
                continue
            try:
                conn.execute(f"SET LOCAL lock_timeout = '{max(1, int(self.timeout * 1000))}ms'")
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", self._lock_key)
            except BaseException as err:
                if not conn.broken:
                    conn.execute("ROLLBACK")
                if isinstance(err, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
                    raise LedgerBusyError(
                        f"the ledger at {redact(self.location)} is locked by another writer (held for more than "
                        f"{self.timeout:g} s); nothing was written: retry later"
                    ) from None
                raise
            return conn
        raise AssertionError("unreachable")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with self._lock:
            try:
                return _rows(self._live().execute(to_psycopg(sql), tuple(params), binary=True).fetchall())
            except psycopg.OperationalError:
                # A read outside a transaction is safe to repeat once on a new connection (the server
                # restarted, or dropped an idle connection); inside a transaction the error stands.
                if not self._conn.broken or self._depth:
                    raise
            return _rows(self._live().execute(to_psycopg(sql), tuple(params), binary=True).fetchall())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

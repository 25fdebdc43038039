"""The service's own records on SQLite: hashed API keys, sessions and traces, every row owned by a tenant.

Every read takes the tenant and filters on it, so another tenant's session or trace is simply not
found. Keys are stored as SHA-256 digests: an API key is 32 random bytes, so a fast hash is enough
(nothing to brute-force), and a stolen ``service.db`` reveals no usable key.

>>> import os, tempfile
>>> db = ServiceDB(os.path.join(tempfile.mkdtemp(), "service.db"))
>>> key = db.create_key("acme")
>>> db.tenant_for(key), db.tenant_for("ll-wrong-key")
('acme', None)
>>> s = db.create_session("acme", user="alice")
>>> db.get_session("acme", s.id).user, db.get_session("other", s.id)
('alice', None)
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lifelong.service.config import check_tenant_name

KEY_PREFIX = "ll-"

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS api_keys (hash TEXT PRIMARY KEY, tenant TEXT NOT NULL, label TEXT NOT NULL,"
    " created_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, user TEXT NOT NULL,"
    " meta TEXT NOT NULL, created_at REAL NOT NULL, ended_at REAL)",
    "CREATE TABLE IF NOT EXISTS traces (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, session TEXT, user TEXT NOT NULL,"
    " kind TEXT NOT NULL, model TEXT NOT NULL, messages TEXT NOT NULL, context TEXT NOT NULL, reply TEXT NOT NULL,"
    " status TEXT NOT NULL, error TEXT NOT NULL, latency_s REAL NOT NULL, created_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS traces_session ON traces (tenant, session, created_at)",
    "CREATE INDEX IF NOT EXISTS sessions_tenant ON sessions (tenant, created_at)",
]


def hash_key(key: str) -> str:
    """The stored form of an API key.

    >>> hash_key("ll-example")[:16]
    'f37bb82ddcf3931d'
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh API key: ``ll-`` and 43 URL-safe characters (32 random bytes).

    >>> k = new_key(); k.startswith("ll-"), len(k)
    (True, 46)
    """
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Session:
    """A conversation of one user of a tenant."""

    id: str
    tenant: str
    user: str
    meta: dict[str, Any]
    created_at: float
    ended_at: float | None

    @property
    def active(self) -> bool:
        """Whether the session has not been ended."""
        return self.ended_at is None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (without the tenant, which the caller knows)."""
        return {"id": self.id, "user": self.user, "meta": self.meta, "created_at": self.created_at,
                "ended_at": self.ended_at, "active": self.active}


@dataclass(frozen=True)
class Trace:
    """One served completion: what was asked, which memory went in, what came out, and how it went."""

    id: str
    tenant: str
    session: str | None
    user: str
    kind: str  # "chat" (a session chat) or "completions" (the OpenAI-compatible endpoint)
    model: str
    messages: list[dict[str, Any]]
    context: dict[str, Any]
    reply: str
    status: str  # "ok", "timeout", "error", or "disconnected" (a streaming client went away mid-answer)
    error: str
    latency_s: float
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (without the tenant)."""
        out = dict(self.__dict__)
        out.pop("tenant")
        return out


class ServiceDB:
    """Keys, sessions and traces in one SQLite file (WAL). Writes are committed before a method returns,
    so whatever the service acknowledged survives a killed process."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 30.0) -> None:
        self.location = os.fspath(path)
        if self.location != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.location)), exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.location, timeout=timeout, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            for stmt in SCHEMA:
                self._conn.execute(stmt)
            self._conn.execute("COMMIT")

    def _write(self, sql: str, params: Sequence[Any]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(sql, tuple(params))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    # ------------------------------------------------------------------ keys
    def create_key(self, tenant: str, label: str = "") -> str:
        """Make a key for ``tenant`` and return it; only its hash is stored, so show it once."""
        key = new_key()
        self.add_key(key, tenant, label)
        return key

    def add_key(self, key: str, tenant: str, label: str = "") -> None:
        """Register a given plaintext key for ``tenant`` (stored hashed). Re-adding the same key for the
        same tenant is a no-op; for another tenant it is an error."""
        check_tenant_name(tenant)
        digest = hash_key(key)
        rows = self._read("SELECT tenant FROM api_keys WHERE hash = ?", (digest,))
        if rows:
            if rows[0][0] != tenant:
                from lifelong.service.config import ServiceConfigError

                raise ServiceConfigError("this API key is already registered for another tenant; use a new key")
            return
        self._write("INSERT INTO api_keys (hash, tenant, label, created_at) VALUES (?, ?, ?, ?)",
                    (digest, tenant, label, time.time()))

    def tenant_for(self, key: str) -> str | None:
        """The tenant a key belongs to, or None for an unknown key."""
        rows = self._read("SELECT tenant FROM api_keys WHERE hash = ?", (hash_key(key),))
        return rows[0][0] if rows else None

    def tenants(self) -> list[str]:
        """Every tenant that has a key, in name order."""
        return [r[0] for r in self._read("SELECT DISTINCT tenant FROM api_keys ORDER BY tenant")]

    def key_count(self) -> int:
        """How many keys are registered."""
        return int(self._read("SELECT COUNT(*) FROM api_keys")[0][0])

    # ------------------------------------------------------------------ sessions
    def create_session(self, tenant: str, user: str, meta: dict[str, Any] | None = None) -> Session:
        """Open a session for ``user``."""
        s = Session("s-" + uuid.uuid4().hex, tenant, user, dict(meta or {}), time.time(), None)
        self._write("INSERT INTO sessions (id, tenant, user, meta, created_at, ended_at) VALUES (?, ?, ?, ?, ?, NULL)",
                    (s.id, tenant, user, json.dumps(s.meta), s.created_at))
        return s

    def get_session(self, tenant: str, session_id: str) -> Session | None:
        """The session if it exists and belongs to ``tenant``."""
        rows = self._read("SELECT id, tenant, user, meta, created_at, ended_at FROM sessions WHERE id = ? AND tenant = ?",
                          (session_id, tenant))
        if not rows:
            return None
        r = rows[0]
        return Session(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5])

    def end_session(self, tenant: str, session_id: str) -> Session | None:
        """Mark a session ended (idempotent); None if it is not the tenant's."""
        self._write("UPDATE sessions SET ended_at = ? WHERE id = ? AND tenant = ? AND ended_at IS NULL",
                    (time.time(), session_id, tenant))
        return self.get_session(tenant, session_id)

    # ------------------------------------------------------------------ traces
    def add_trace(self, trace: Trace) -> None:
        """Store a trace (committed when this returns)."""
        self._write(
            "INSERT INTO traces (id, tenant, session, user, kind, model, messages, context, reply, status, error,"
            " latency_s, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (trace.id, trace.tenant, trace.session, trace.user, trace.kind, trace.model, json.dumps(trace.messages),
             json.dumps(trace.context), trace.reply, trace.status, trace.error, trace.latency_s, trace.created_at))

    _TRACE_COLUMNS = ("id, tenant, session, user, kind, model, messages, context, reply, status, error, latency_s,"
                      " created_at")

    @staticmethod
    def _trace(r: tuple[Any, ...]) -> Trace:
        return Trace(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), json.loads(r[7]), r[8], r[9], r[10],
                     r[11], r[12])

    def get_trace(self, tenant: str, trace_id: str) -> Trace | None:
        """The trace if it exists and belongs to ``tenant``."""
        rows = self._read(f"SELECT {self._TRACE_COLUMNS} FROM traces WHERE id = ? AND tenant = ?", (trace_id, tenant))
        return self._trace(rows[0]) if rows else None

    def traces(self, tenant: str, session: str | None = None, limit: int = 50, status: str | None = None) -> list[Trace]:
        """The tenant's traces, newest first (optionally of one session, of one status)."""
        sql = f"SELECT {self._TRACE_COLUMNS} FROM traces WHERE tenant = ?"
        params: list[Any] = [tenant]
        if session is not None:
            sql += " AND session = ?"
            params.append(session)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        params.append(int(limit))
        return [self._trace(r) for r in self._read(sql, params)]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

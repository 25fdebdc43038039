"""Fixtures: one store factory parametrised over SQLite and a real PostgreSQL (with pgvector) that the
tests start themselves in a temporary folder and stop at the end (``pg_server`` and
``new_pg_database`` live in tests/conftest.py, shared with the ledger's tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lifelong.context import HashingEmbedder, MemoryStore, open_store

DIM = 64


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store location on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "memory.db")
    return request.getfixturevalue("new_pg_database")()


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


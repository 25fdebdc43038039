"""The ledger on a real PostgreSQL server: what only PostgreSQL has to show.

The ledger's behaviours (bit-exact commit and checkout, rollback, log/show/diff, verdicts and their
evidence, stale changes, two processes committing at once, a writer killed mid-commit) run on both
backends in test_ledger.py; here: the append-only triggers, the format check, the types, the write
lock's timeout, and the service and CLI taking a ``postgresql://`` URL. The server is started once per
session (tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from lifelong.control.gate import Gate, PairedScores
from lifelong.control.ledger import Ledger, PostgresBackend
from lifelong.control.ledger.postgres import redact, to_psycopg
from lifelong.core import BlobCorruptedError, Change, LedgerBusyError, NotALedgerError, VersionNotFoundError

psycopg = pytest.importorskip("psycopg")


@pytest.fixture()
def url(new_pg_database: Callable[[], str]) -> str:
    return new_pg_database()


@pytest.fixture()
def ledger(url: str) -> Iterator[Ledger]:
    with Ledger.open(url) as led:
        yield led


def sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the database directly, from outside lifelong."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def test_a_url_selects_postgres_and_the_schema_uses_its_types(ledger: Ledger, url: str) -> None:
    assert isinstance(ledger.backend, PostgresBackend)
    types = dict(sql(url, "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                          "WHERE table_schema = 'public'"))
    assert types["blobs.data"] == "bytea"
    assert types["events.seq"] == "bigint"
    assert types["events.at"] == types["versions.created_at"] == "double precision"
    assert sql(url, "SELECT key, value FROM meta ORDER BY key") == [("magic", "lifelong-ledger"), ("schema_version", "1")]
    v = ledger.commit("m", tensors={"w": torch.arange(5.0)})
    data = ledger.backend.query("SELECT data FROM blobs WHERE hash = ?", (v.manifest["w"].hash,))[0][0]
    assert type(data) is bytes
    assert ledger.verify() == []
    assert ledger.stats() == {"versions": 1, "changes": 0, "verdicts": 0, "events": 1, "blobs": 1, "refs": 1}


def test_verdict_evidence_and_show_round_trip(ledger: Ledger) -> None:
    base = ledger.commit("m", tensors={"w": torch.zeros(4)}, message="base")
    verdict = Gate(n_resamples=200).decide(PairedScores("t", [0] * 30 + [1] * 70, [1] * 100))
    change = Change("weights", "global", "test", tensors={"w": torch.ones(4)}, base_version=base.id,
                    provenance={"events": ["fb-1"], "note": "100% of 'quoted' ?"})
    result = ledger.record_change("m", change, verdict)
    assert result.accepted and ledger.head("m").id == result.version.id
    assert ledger.verdict(result.verdict_id).to_dict() == verdict.to_dict()
    (record,) = ledger.changes_producing(result.version.id)
    assert record.provenance["note"] == "100% of 'quoted' ?" and record.base_version == base.id
    assert [v.to_dict() for _, v in ledger.verdicts_for_change(change.id)] == [verdict.to_dict()]
    assert ledger.resolve(result.version.id[:6]).id == result.version.id
    assert [e.type for e in ledger.log("m", types=["commit"], limit=1)] == ["commit"]


def test_history_tables_are_append_only(ledger: Ledger, url: str) -> None:
    ledger.commit("m", tensors={"w": torch.zeros(3)})
    for statement, message in (("UPDATE events SET message = 'x'", "UPDATE on events"),
                               ("DELETE FROM versions", "DELETE on versions"),
                               ("DELETE FROM blobs", "DELETE on blobs"),
                               ("TRUNCATE changes", "TRUNCATE on changes")):
        with pytest.raises(psycopg.Error, match=f"the ledger is append-only: {message} is refused"):
            sql(url, statement)
    assert ledger.stats()["events"] == 1 and ledger.verify() == []
    sql(url, "UPDATE refs SET event_seq = event_seq")  # refs move; only the history is frozen


def test_corrupted_blob_is_detected_by_its_hash(ledger: Ledger, url: str) -> None:
    v = ledger.commit("m", tensors={"w": torch.randn(16)})
    digest = v.manifest["w"].hash
    sql(url, "DROP TRIGGER blobs_no_update ON blobs")  # damage from outside lifelong
    sql(url, "UPDATE blobs SET data = overlay(data placing '\\xff'::bytea from length(data)) WHERE hash = %s",
        (digest,))
    with pytest.raises(BlobCorruptedError, match=digest[:12]):
        ledger.checkout(v.id)
    assert any("does not match" in p for p in ledger.verify())


def test_a_failed_transaction_writes_nothing(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError, match="boom"), ledger.backend.transaction() as tx:
        tx.execute("INSERT INTO meta VALUES (?, ?)", ("k", "v"))
        raise RuntimeError("boom")
    assert ledger.backend.query("SELECT COUNT(*) FROM meta")[0][0] == 2


def test_not_a_ledger_is_refused_and_left_untouched(new_pg_database: Callable[[], str]) -> None:
    other = new_pg_database()
    sql(other, "CREATE TABLE users (name TEXT)")
    with pytest.raises(NotALedgerError, match="not a lifelong ledger.*left untouched"):
        Ledger.open(other)
    assert sql(other, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'") == [("users",)]

    memory = new_pg_database()  # a meta table with another marker (the memory store's)
    sql(memory, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    sql(memory, "INSERT INTO meta VALUES ('magic', 'lifelong-memory')")
    with pytest.raises(NotALedgerError, match="no 'lifelong-ledger' marker"):
        Ledger.open(memory)

    newer = new_pg_database()
    Ledger.open(newer).close()
    sql(newer, "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(NotALedgerError, match="schema 2.*upgrade lifelong"):
        Ledger.open(newer)

    empty = new_pg_database()
    with pytest.raises(NotALedgerError, match="no ledger in .*create=True"):
        Ledger.open(empty, create=False)
    assert sql(empty, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'") == [(0,)]

    missing = empty.replace("/db_", "/nosuchdb_", 1)
    with pytest.raises(NotALedgerError, match="cannot connect"):
        Ledger.open(missing)


def test_a_writer_waits_for_the_lock_then_gives_up_cleanly(ledger: Ledger, url: str) -> None:
    impatient = Ledger(PostgresBackend(url, create=False, timeout=0.2))
    try:
        with ledger.backend.transaction():  # another writer holds the lock
            with pytest.raises(LedgerBusyError, match="locked by another writer"):
                impatient.commit("m", tensors={"w": torch.zeros(2)})
        assert impatient.refs() == {}
        v = impatient.commit("m", tensors={"w": torch.zeros(2)})  # free again
        assert ledger.head("m").id == v.id
    finally:
        impatient.close()


def test_concurrent_writers_serialise_whatever_the_servers_default_isolation(url: str) -> None:
    # Two connections (one per Ledger) committing from two threads; with the database defaulting to
    # REPEATABLE READ, a snapshot taken before the lock wait would see a stale head.
    name = sql(url, "SELECT current_database()")[0][0]
    sql(url, f"ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'")
    ledgers = [Ledger.open(url) for _ in range(2)]
    try:
        assert ledgers[0].backend.query("SHOW default_transaction_isolation") == [("repeatable read",)]

        def commits(led: Ledger, tag: str) -> None:
            for i in range(15):
                led.commit("shared", tensors={f"{tag}.w": torch.full((8,), float(i))}, message=f"{tag}-{i}")

        threads = [threading.Thread(target=commits, args=(led, tag)) for led, tag in zip(ledgers, "ab", strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        chain = list(reversed(ledgers[0].log("shared")))
        assert len(chain) == 30
        assert all(nxt.from_version == prev.to_version for prev, nxt in zip(chain, chain[1:], strict=False))
    finally:
        for led in ledgers:
            led.close()


def test_a_lost_connection_is_reopened(ledger: Ledger, url: str) -> None:
    ledger.commit("m", tensors={"w": torch.zeros(2)})
    sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
             "AND pid <> pg_backend_pid()")
    ledger.commit("m", tensors={"w": torch.ones(2)})  # a write reconnects before it begins...
    sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
             "AND pid <> pg_backend_pid()")
    assert list(ledger.refs()) == ["m"]  # ...and so does a read
    assert len(ledger.log("m")) == 2


def test_placeholders_and_percent_signs_translate() -> None:
    assert to_psycopg("SELECT ? WHERE x LIKE '10%' AND y = '?'") == "SELECT %s WHERE x LIKE '10%%' AND y = '?'"
    assert redact("postgresql://app:pw@host/db") == "postgresql://app:***@host/db"


def test_tenant_windows_work_on_postgres(ledger: Ledger) -> None:
    from lifelong.service.tenancy import TenantLedger

    a, b = TenantLedger(ledger, "a"), TenantLedger(ledger, "b")
    v = ledger.commit(a.full_ref("config"), records={"x": 1}, message="first")
    assert a.resolve(v.id[:8]).id == v.id
    with pytest.raises(VersionNotFoundError):
        b.resolve(v.id[:8])
    assert [e["ref"] for e in a.log(types=["commit"])] == ["config"] and b.log() == []
    verdict = Gate(n_resamples=100).decide(PairedScores("t", [1] * 50, [1] * 50))
    result = ledger.record_change(a.full_ref("config"), Change("scaffold", "global", "test", records={"x": 2}), verdict)
    assert a.verdict(result.verdict_id)["accepted"] is False
    with pytest.raises(VersionNotFoundError):
        b.verdict(result.verdict_id)
    assert a.show(result.version.id[:8])["changes"][0]["id"] == result.change_id


def test_the_service_runs_on_a_postgres_ledger_and_memory(tmp_path: Path, new_pg_database: Callable[[], str]) -> None:
    from lifelong.context import HashingEmbedder
    from lifelong.models.chat import ScriptedChat
    from lifelong.service.config import ServiceConfig
    from lifelong.service.core import Service

    ledger_url, memory_url = new_pg_database(), new_pg_database()
    config = ServiceConfig(tmp_path / "svc", chat=ScriptedChat(["ok"]), embedder=HashingEmbedder(64),
                           ledger=ledger_url, memory=memory_url)
    assert config.ledger_path == ledger_url and config.memory_path == memory_url
    service = Service(config)
    try:
        session = service.create_session("acme", user="ann")
        ack = service.record_feedback("acme", "correction", session.id, text="Invoices are due in 30 days.")
        assert ack["memory"] is not None
        assert [f["id"] for f in service.feedback("acme")] == [ack["id"]]
        assert service.tenant_ledger("acme").resolve(ack["memory"]["version"][:8]).id == ack["memory"]["version"]
    finally:
        service.close()
    assert not (tmp_path / "svc" / "ledger.db").exists()
    again = Service(config)  # a second instance on the same databases finds them in sync
    try:
        assert again.recovered == {}
        assert again.tenant_ledger("acme").refs()["memory"] == ack["memory"]["version"]
    finally:
        again.close()


def test_the_cli_reads_a_postgres_ledger(ledger: Ledger, url: str) -> None:
    from typer.testing import CliRunner

    from lifelong.cli import app

    ledger.commit("model/global", tensors={"w": torch.zeros(4)}, message="base")
    ledger.commit("model/global", tensors={"w": torch.ones(4)}, message="tuned")
    runner = CliRunner()
    log = runner.invoke(app, ["log", "--ledger", url], env={"COLUMNS": "200"})
    assert log.exit_code == 0 and "tuned" in log.output
    assert runner.invoke(app, ["rollback", "--ledger", url, "--reason", "cli"]).exit_code == 0
    assert runner.invoke(app, ["verify", "--ledger", url]).exit_code == 0
    assert [e.type for e in ledger.log("model/global")] == ["rollback", "commit", "commit"]

"""The ledger: append-only history, bit-exact rollback, crash safety and concurrent writers.

Tests taking ``ledger`` or ``ledger_location`` run on SQLite and on a real PostgreSQL server (started
once per session, tests/conftest.py); PostgreSQL-only checks are in test_ledger_postgres.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lifelong.control.gate import Gate, PairedScores
from lifelong.control.ledger import Ledger
from lifelong.core import (
    BlobCorruptedError,
    Change,
    InvalidChangeError,
    NotALedgerError,
    VersionNotFoundError,
)
from lifelong.core.tensors import tensor_bytes_equal

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh ledger location on each backend: a SQLite file, and an empty database on the test session's
    PostgreSQL server (tests/conftest.py)."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    return request.getfixturevalue("new_pg_database")()


@pytest.fixture()
def ledger(ledger_location: str) -> Iterator[Ledger]:
    """A new ledger, on SQLite and on PostgreSQL: the behaviours below hold on both."""
    with Ledger.open(ledger_location) as led:
        yield led


@pytest.fixture()
def sqlite_ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A new SQLite ledger, for the tests that reach into the file (PostgreSQL's: test_ledger_postgres.py)."""
    with Ledger.open(tmp_path / "ledger.db") as led:
        yield led


def weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(4, 1, 3, 3, generator=g),
        "fc.weight": torch.randn(10, 16, generator=g),
        "fc.bias": torch.randn(10, generator=g).to(torch.bfloat16),
    }


def test_commit_checkout_roundtrip_is_bit_exact(ledger: Ledger) -> None:
    w = weights(0)
    w["odd"] = torch.tensor([float("-0.0"), 1e-45, 3.4e38])  # signed zero and a subnormal survive
    v = ledger.commit("m/global", tensors=w, message="base")
    back = ledger.checkout(v.id)
    assert set(back) == set(w)
    for name in w:
        assert tensor_bytes_equal(back[name], w[name]), name


def test_versions_are_content_addressed(ledger: Ledger) -> None:
    a = ledger.commit("a", tensors=weights(1))
    b = ledger.commit("b", tensors=weights(1))
    assert a.id == b.id
    assert ledger.stats()["versions"] == 1
    assert ledger.stats()["blobs"] == 3  # shared blobs are stored once


def test_rollback_restores_bit_identical_tensors(ledger: Ledger) -> None:
    v1 = ledger.commit("m", tensors=weights(1), message="v1")
    ledger.commit("m", tensors=weights(2), message="v2")
    ledger.commit("m", tensors=weights(3), message="v3")
    back = ledger.rollback("m", to=v1.id[:8], reason="regression")
    assert back.id == v1.id
    assert ledger.head("m").id == v1.id
    restored = ledger.checkout("m")
    for name, t in weights(1).items():
        assert tensor_bytes_equal(restored[name], t)
    events = ledger.log("m")
    assert events[0].type == "rollback" and events[0].message == "regression"
    assert [e.type for e in events] == ["rollback", "commit", "commit", "commit"]


def test_rollback_without_target_goes_to_previous_and_refuses_foreign_versions(ledger: Ledger) -> None:
    v1 = ledger.commit("m", tensors=weights(1))
    ledger.commit("m", tensors=weights(2))
    assert ledger.rollback("m").id == v1.id
    other = ledger.commit("other", tensors=weights(9))
    with pytest.raises(VersionNotFoundError, match="never been at"):
        ledger.rollback("m", to=other.id)


def test_diff_reports_which_tensors_changed_and_by_how_much(ledger: Ledger) -> None:
    w = weights(1)
    v1 = ledger.commit("m", tensors=w)
    w2 = dict(w)
    w2["fc.weight"] = w["fc.weight"] + 0.5
    v2 = ledger.commit("m", tensors=w2)
    d = {x.name: x for x in ledger.diff(v1.id, v2.id)}
    assert d["conv.weight"].status == "same"
    assert d["fc.weight"].status == "changed"
    assert d["fc.weight"].l2 == pytest.approx(0.5 * (160**0.5), rel=1e-6)
    assert d["fc.weight"].max_abs == pytest.approx(0.5, rel=1e-6)


def test_records_are_versioned_and_diffed(ledger: Ledger) -> None:
    v1 = ledger.commit("mem", records={"items": {"a": "x", "b": "y"}})
    v2 = ledger.commit("mem", records={"items": {"a": "x", "b": "z", "c": "w"}})
    assert ledger.records(v2)["items"]["c"] == "w"
    (d,) = ledger.diff(v1, v2)
    assert d.detail.startswith("+1 -0 ~1")


def test_record_change_accept_moves_ref_and_reject_keeps_champion(ledger: Ledger) -> None:
    base = ledger.commit("m", tensors=weights(1))
    gate = Gate(n_resamples=200)
    good = gate.decide(PairedScores("t", [0] * 30 + [1] * 70, [1] * 30 + [1] * 70))
    bad = gate.decide(PairedScores("t", [1] * 100, [1] * 100))
    c1 = Change("weights", "global", "test", tensors={"fc.bias": torch.zeros(10)}, base_version=base.id)
    r1 = ledger.record_change("m", c1, good)
    assert r1.accepted and ledger.head("m").id == r1.version.id
    c2 = Change("weights", "global", "test", tensors={"fc.bias": torch.ones(10)}, base_version=r1.version.id)
    r2 = ledger.record_change("m", c2, bad)
    assert not r2.accepted and ledger.head("m").id == r1.version.id
    stored = ledger.verdict(r2.verdict_id)
    assert stored.target is not None and stored.target.n == 100 and stored.target.test == "mcnemar-exact"
    assert [e.type for e in ledger.log("m")][:2] == ["reject", "commit"]
    # The rejected candidate is stored and can be inspected.
    assert torch.equal(ledger.checkout(r2.version)["fc.bias"], torch.ones(10))


def test_stale_change_is_rejected(ledger: Ledger) -> None:
    base = ledger.commit("m", tensors=weights(1))
    ledger.commit("m", tensors=weights(2))  # someone else promoted in between
    good = Gate(n_resamples=200).decide(PairedScores("t", [0] * 50, [1] * 50))
    c = Change("weights", "global", "test", tensors={"fc.bias": torch.zeros(10)}, base_version=base.id)
    r = ledger.record_change("m", c, good)
    assert not r.accepted
    assert "stale" in ledger.verdict(r.verdict_id).reasons[0]


def test_non_finite_tensors_are_never_committed(ledger: Ledger) -> None:
    v = ledger.commit("m", tensors=weights(1))
    with pytest.raises(InvalidChangeError, match="NaN or Inf"):
        ledger.commit("m", tensors={"fc.weight": torch.full((10, 16), float("nan"))})
    assert ledger.head("m").id == v.id
    assert ledger.stats()["versions"] == 1


def test_history_tables_are_append_only(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    sqlite_ledger.commit("m", tensors=weights(1))
    conn = sqlite3.connect(sqlite_ledger.location)
    for sql in ("UPDATE events SET message = 'x'", "DELETE FROM versions", "DELETE FROM blobs"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_corrupted_blob_is_detected_by_its_hash(sqlite_ledger: Ledger) -> None:
    v = sqlite_ledger.commit("m", tensors=weights(1))
    conn = sqlite3.connect(sqlite_ledger.location)
    conn.execute("DROP TRIGGER blobs_no_update")  # simulate damage from outside lifelong
    digest = v.manifest["fc.weight"].hash
    data = bytearray(conn.execute("SELECT data FROM blobs WHERE hash = ?", (digest,)).fetchone()[0])
    data[-1] ^= 0xFF
    conn.execute("UPDATE blobs SET data = ? WHERE hash = ?", (bytes(data), digest))
    conn.commit()
    conn.close()
    with pytest.raises(BlobCorruptedError, match=digest[:12]):
        sqlite_ledger.checkout(v.id)
    assert any("does not match" in p for p in sqlite_ledger.verify())


def test_not_a_ledger_is_refused_and_left_untouched(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"hello, this is not a database" * 10)
    with pytest.raises(NotALedgerError, match="not a lifelong ledger"):
        Ledger.open(text)
    assert text.read_bytes() == b"hello, this is not a database" * 10
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(NotALedgerError, match="left untouched"):
        Ledger.open(other)
    tables = sqlite3.connect(other).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("users",)]
    with pytest.raises(NotALedgerError, match="no ledger at"):
        Ledger.open(tmp_path / "missing.db", create=False)


def test_unknown_versions_get_clear_errors(ledger: Ledger) -> None:
    ledger.commit("m", tensors=weights(1))
    with pytest.raises(VersionNotFoundError, match="no version starts with"):
        ledger.resolve("deadbeef")
    with pytest.raises(VersionNotFoundError, match="neither a ref nor a version id"):
        ledger.resolve("nope!")
    with pytest.raises(VersionNotFoundError, match="has no version yet"):
        ledger.head("missing/ref")


CHILD_COMMITTER = textwrap.dedent(
    """
    import os, sys, time, torch
    sys.path.insert(0, {src!r})
    from lifelong.control.ledger import Ledger
    led = Ledger.open(sys.argv[1])
    tag, n, go = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    print("READY", flush=True)
    while not os.path.exists(go):  # both start committing at once, after their slow imports
        time.sleep(0.002)
    for i in range(n):
        led.commit("shared", tensors={{f"{{tag}}.w": torch.full((64,), float(i))}}, message=f"{{tag}}-{{i}}")
    """
)


def test_two_processes_committing_lose_no_commit(ledger_location: str, tmp_path: Path) -> None:
    path = ledger_location
    Ledger.open(path).close()
    script = tmp_path / "child.py"
    script.write_text(CHILD_COMMITTER.format(src=SRC))
    n = 40
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), path, tag, str(n), str(go)], stdout=subprocess.PIPE,
                              text=True) for tag in ("a", "b")]
    assert [p.stdout.readline().strip() for p in procs] == ["READY", "READY"]
    go.touch()
    for p in procs:
        assert p.wait(timeout=120) == 0
    with Ledger.open(path, create=False) as led:
        commits = [e for e in led.log("shared") if e.type == "commit"]
        assert len(commits) == 2 * n
        messages = {e.message for e in commits}
        assert messages == {f"{t}-{i}" for t in "ab" for i in range(n)}
        # Each commit's parent is the head left by the one before: no interleaving lost a write.
        chain = list(reversed(commits))
        for prev, nxt in zip(chain, chain[1:], strict=False):
            assert nxt.from_version == prev.to_version
        assert led.verify() == []


CHILD_KILLED_MID_COMMIT = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, {src!r})
    from lifelong.control.ledger import Ledger
    from lifelong.control.ledger import ledger as ledger_module
    led = Ledger.open(sys.argv[1])
    led.commit("m", tensors={{"w": torch.zeros(1000)}}, message="good")
    original = ledger_module.Ledger._insert_version

    def stall(tx, manifest, meta):
        version = original(tx, manifest, meta)
        print("IN_COMMIT", flush=True)   # blobs and the version row are written, the transaction is open
        time.sleep(60)
        return version

    ledger_module.Ledger._insert_version = staticmethod(stall)
    led.commit("m", tensors={{"w": torch.ones(1000)}}, message="never lands")
    """
)


def test_sigkill_mid_commit_leaves_previous_version_intact(ledger_location: str, tmp_path: Path) -> None:
    path = ledger_location
    script = tmp_path / "child.py"
    script.write_text(CHILD_KILLED_MID_COMMIT.format(src=SRC))
    proc = subprocess.Popen([sys.executable, str(script), path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "IN_COMMIT"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with Ledger.open(path, create=False) as led:
        assert led.verify() == []
        assert [e.message for e in led.log("m")] == ["good"]
        assert torch.equal(led.checkout("m")["w"], torch.zeros(1000))
        assert led.stats()["versions"] == 1
        # And the ledger still takes writes.
        led.commit("m", tensors={"w": torch.ones(1000)}, message="after crash")
        assert led.head("m").id != ""


CHILD_COMMIT_LOOP = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {src!r})
    from lifelong.control.ledger import Ledger
    led = Ledger.open(sys.argv[1])
    i = 0
    print("READY", flush=True)
    while True:
        led.commit("m", tensors={{"w": torch.full((20000,), float(i))}}, message=str(i))
        i += 1
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.45])
def test_sigkill_at_random_points_keeps_ledger_consistent(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "ledger.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD_COMMIT_LOOP.format(src=SRC))
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with Ledger.open(path, create=False) as led:
        assert led.verify() == []
        events = led.log("m")
        if events:  # the head holds exactly the tensor its last commit message names
            head = led.checkout("m")["w"]
            assert torch.equal(head, torch.full((20000,), float(events[0].message)))


def test_log_with_no_types_is_empty_and_a_negative_limit_is_refused(ledger: Ledger) -> None:
    ledger.commit("m/global", {"w": torch.zeros(2)}, message="base")
    assert ledger.log(types=[]) == []
    assert len(ledger.log(limit=0)) == 0 and len(ledger.log()) == 1
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        ledger.log(limit=-1)

"""Memory states in the ledger, on both backends: commit, readable diff, rollback restores items and
vectors exactly, gated promotion through the governor, and commits that touch only changed shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lifelong.context import Add, Delete, MemoryStore, Supersede, Tag, Update
from lifelong.context.versioning import MemoryLedger, shard_record
from lifelong.control.gate import Gate, Suite
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger


def state(store: MemoryStore) -> list[tuple[dict[str, Any], list[float] | None]]:
    return [(i.to_dict(), None if i.embedding is None else i.embedding.tolist()) for i in store.items(with_embeddings=True)]


@pytest.fixture
def mem(store: MemoryStore, tmp_path: Path) -> MemoryLedger:
    return MemoryLedger(store, Ledger.open(tmp_path / "ledger.db"))


def test_commit_diff_rollback_round_trip(mem: MemoryLedger) -> None:
    store = mem.store
    v1 = mem.commit([Add("Invoices are due in 30 days", id="due"), Add("Use metric units", id="units"),
                     Add("Alice lives in Paris", id="home", kind="fact")], learner="curator", message="seed").version
    s1 = state(store)
    v2 = mem.commit([Update(id="due", content="Invoices are due in 45 days"), Tag(id="units", tag="helpful"),
                     Delete(id="units"),
                     Supersede(id="home", new=Add("Alice lives in Berlin", id="home2", kind="fact")),
                     Add("New rule", id="new")], learner="curator").version
    d = mem.diff(v1.id, v2.id)
    assert sorted(i.id for i in d.added) == ["home2", "new"] and not d.removed
    changed = {c.after.id: c.fields for c in d.changed}
    assert changed["due"] == ("content",) and set(changed["units"]) == {"helpful", "status"}
    assert set(changed["home"]) == {"valid_until", "superseded_by"}
    text = str(d)
    assert "+ new [general] New rule" in text and "~ due v1 -> v2: content" in text
    assert mem.in_sync() and not mem.diff(v2.id)  # live store equals the head

    mem.rollback(reason="regression on the billing suite")
    assert state(store) == s1  # bodies and embeddings exactly as committed
    assert mem.ledger.head(mem.ref).id == v1.id and mem.in_sync()
    assert [h.item.id for h in store.search("where does Alice live", kinds=["fact"])] == ["home"]
    assert store.ops()[-1]["op"]["op"] == "RESTORE"
    assert [v.version for v in store.history("due")] == [1, 2]  # history is append-only

    # after a rollback, the next edit bumps past every version ever stored
    mem.commit([Update(id="due", content="Invoices are due in 60 days")], learner="curator")
    assert store.get("due").version == 3


def test_rollback_restores_hard_deleted_items(mem: MemoryLedger) -> None:
    store = mem.store
    v1 = mem.commit([Add("keep me", id="k"), Add("drop me", id="d")], learner="t").version
    before = state(store)
    mem.commit([Delete(id="d", hard=True)], learner="t")
    assert "d" not in store
    assert [i.id for i in mem.diff(v1.id).removed] == ["d"]
    mem.rollback(to=v1.id, reason="the drop was wrong")
    assert state(store) == before


def test_snapshot_commit_of_ops_applied_earlier(mem: MemoryLedger) -> None:
    store = mem.store
    store.apply([Add("applied without a commit", id="a")])
    v = mem.commit(learner="operator", message="snapshot").version
    assert set(mem.manifest(v)) == {"a"}
    ops = mem.ledger.records(v)["ops"]
    assert ops["snapshot"] is True and ops["uncommitted"]["ops"] == 1


def test_commit_writes_only_touched_shards(mem: MemoryLedger) -> None:
    v1 = mem.commit([Add(f"item number {i}", id=f"i{i}") for i in range(60)], learner="t").version
    v2 = mem.commit([Update(id="i7", content="changed")], learner="t").version
    changed = [n for n, ref in v2.manifest.items() if v1.manifest.get(n) != ref]
    from lifelong.context.backends.base import shard_of

    assert sorted(changed) == sorted({"ops", shard_record(shard_of("i7"))})
    records = [d.name for d in mem.ledger.diff(v1.id, v2.id) if d.status != "same"]
    assert shard_record(shard_of("i7")) in records


def test_gated_promotion_applies_only_when_accepted(store: MemoryStore, tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger.db")
    mem = MemoryLedger(store, ledger)
    mem.commit([Add("base rule", id="base")], learner="operator")
    gov = Governor(ledger, mem.ref, gate=Gate(n_resamples=200))
    suite = Suite("toy", tuple(map(str, range(40))), lambda system: system(), content_hash="v1")

    good = store.plan([Add("a rule that helps", id="good")])
    result = mem.promote(gov, good, learner="curator", champion=lambda: [0.0] * 40, candidate=lambda: [1.0] * 40,
                         target=suite)
    assert result.accepted and "good" in store and mem.in_sync()
    change = ledger.changes_producing(result.version.id)[0]
    assert change.kind == "context"

    bad = store.plan([Add("a rule that hurts", id="bad")])
    result = mem.promote(gov, bad, learner="curator", champion=lambda: [1.0] * 40, candidate=lambda: [0.0] * 40,
                         target=suite)
    assert not result.accepted and "bad" not in store
    # the rejected candidate is still inspectable: its ops record carries the bodies it would have written
    assert [i.id for i in mem.diff(ledger.head(mem.ref).id, result.version.id).added] == ["bad"]


def test_checkout_rebuilds_a_version_the_store_never_applied(store: MemoryStore, tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger.db")
    mem = MemoryLedger(store, ledger)
    mem.commit([Add("base", id="base")], learner="operator")
    plan = store.plan([Add("only in the ledger", id="ghost", vector=np.ones(64))])
    from lifelong.core.verdict import Verdict

    result = ledger.record_change(mem.ref, mem.change(plan, learner="remote"), Verdict(True, ["accepted elsewhere"]))
    assert result.accepted and "ghost" not in store and not mem.in_sync()
    mem.checkout()
    assert store.get("ghost").content == "only in the ledger" and mem.in_sync()

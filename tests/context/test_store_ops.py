"""Operations and their validation, on both backends (one shared suite): every invalid batch is
rejected before anything changes, with an error that subclasses LifelongError."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lifelong.context import (
    Add,
    BlockLimitError,
    Delete,
    DimensionError,
    DuplicateIdError,
    InvalidOpError,
    ItemNotFoundError,
    MemoryStore,
    Merge,
    StalePlanError,
    Supersede,
    Tag,
    TextEncodingError,
    UnknownTenantError,
    Update,
    VectorsOnly,
)
from lifelong.core.errors import LifelongError

DIM = 64  # the conftest's HashingEmbedder


def snapshot(store: MemoryStore) -> list[dict[str, Any]]:
    """Every live item's body and embedding, for 'nothing changed' assertions."""
    return [{**i.to_dict(), "embedding": None if i.embedding is None else i.embedding.tolist()}
            for i in store.items(with_embeddings=True)]


def seed(store: MemoryStore) -> None:
    store.apply([
        Add("On 429 wait 2 s and back off exponentially", id="retry", kind="bullet", section="api"),
        Add("Reports use metric units", id="units", kind="bullet", section="style"),
        Add("Alice lives in Paris", id="home", kind="fact", tags=("Alice", "Paris")),
        Add("Persona: terse and precise", id="persona", kind="block", limit=40),
    ], at=1000.0)


def test_add_get_update_history(store: MemoryStore) -> None:
    seed(store)
    assert len(store) == 4 and "retry" in store and "nope" not in store
    store.apply([Update(id="retry", append=", only for idempotent endpoints", justification="incident 12",
                        evidence=("trace-7",))], at=2000.0)
    item = store.get("retry")
    assert item.version == 2 and item.content.endswith("idempotent endpoints") and item.updated_at == 2000.0
    assert item.created_at == 1000.0
    assert [v.content for v in store.history("retry")] == [
        "On 429 wait 2 s and back off exponentially",
        "On 429 wait 2 s and back off exponentially, only for idempotent endpoints",
    ]
    logged = [e["op"] for e in store.ops()]
    assert logged[-1] == {"op": "UPDATE", "id": "retry", "append": ", only for idempotent endpoints",
                          "justification": "incident 12", "evidence": ["trace-7"]}


def test_batch_sees_its_own_adds_and_bumps_once(store: MemoryStore) -> None:
    store.apply([Add("x", id="a"), Tag(id="a", tag="helpful"), Tag(id="a", tag="helpful"), Tag(id="a", tag="harmful")])
    a = store.get("a")
    assert (a.version, a.helpful, a.harmful) == (1, 2, 1)
    store.apply([Tag(id="a", tag="neutral", justification="not used")])
    assert store.get("a").version == 1  # neutral changes nothing but is logged
    assert store.ops()[-1]["op"]["tag"] == "neutral"


def test_merge_keeps_sources_superseded_and_sums_counters(store: MemoryStore) -> None:
    store.apply([Add("retry 429 after 2s", id="a", tags=("http",)), Add("on 429 wait two seconds", id="b", tags=("retry",)),
                 Tag(id="a", tag="helpful"), Tag(id="b", tag="helpful"), Tag(id="b", tag="harmful")], at=1000.0)
    store.apply([Merge(ids=("a", "b"), content="On 429 wait 2 s, then retry", justification="duplicates (0.93)")],
                at=5000.0)
    a, b = store.get("a"), store.get("b")
    assert (a.content, a.helpful, a.harmful, a.tags) == ("On 429 wait 2 s, then retry", 2, 1, ("http", "retry"))
    assert b.superseded_by == "a" and b.valid_until == 5000.0 and b.status.value == "active"
    assert [h.item.id for h in store.search("429 retry", k=5, now=6000.0)] == ["a"]
    with pytest.raises(ItemNotFoundError):
        store.apply([Merge(ids=("a", "nope"), content="z")])


def test_supersede_keeps_history_and_answers_as_of(store: MemoryStore) -> None:
    seed(store)
    store.apply([Supersede(id="home", new=Add("Alice lives in Berlin", id="home2", kind="fact"), at=3000.0,
                           justification="user said she moved")], at=3000.0)
    old = store.get("home")
    assert old.superseded_by == "home2" and old.valid_until == 3000.0
    now = [h.item.id for h in store.search("where does Alice live", k=3, kinds=["fact"], now=4000.0)]
    then = [h.item.id for h in store.search("where does Alice live", k=3, kinds=["fact"], as_of=2000.0, now=4000.0)]
    assert now == ["home2"] and then == ["home"]
    audit = {h.item.id for h in store.search("Alice lives", k=5, include_inactive=True, now=4000.0)}
    assert {"home", "home2"} <= audit
    with pytest.raises(InvalidOpError, match="already superseded"):
        store.apply([Supersede(id="home", by="home2")])


def test_delete_soft_then_hard(store: MemoryStore) -> None:
    seed(store)
    store.apply([Delete(id="units", justification="obsolete")])
    assert store.get("units").status.value == "deleted"
    assert "units" not in [h.item.id for h in store.search("metric units reports", k=5)]
    with pytest.raises(InvalidOpError, match="deleted"):
        store.apply([Update(id="units", content="x")])
    store.apply([Delete(id="units", hard=True)])
    assert "units" not in store
    assert [v.version for v in store.history("units")] == [1, 2]  # history survives a hard delete


def test_block_limit_checked_before_the_edit_applies(store: MemoryStore) -> None:
    seed(store)
    before = snapshot(store)
    with pytest.raises(BlockLimitError, match="over its limit of 40"):
        store.apply([Tag(id="retry", tag="helpful"),
                     Update(id="persona", append=" and always cites the playbook bullet ids")])
    assert snapshot(store) == before
    store.apply([Update(id="persona", replace=("terse", "brief"))])
    assert store.get("persona").content == "Persona: brief and precise"
    with pytest.raises(InvalidOpError, match="exactly once"):
        store.apply([Update(id="persona", replace=("e", "x"))])
    with pytest.raises(InvalidOpError, match="empty"):
        store.apply([Update(id="persona", replace=("", "x"))])
    assert store.get("persona").limit == 40


def test_duplicate_ids_rejected_and_nothing_changes(store: MemoryStore) -> None:
    seed(store)
    before = snapshot(store)
    with pytest.raises(DuplicateIdError, match="already exists"):
        store.apply([Add("new", id="fresh"), Add("again", id="retry")])
    with pytest.raises(DuplicateIdError):
        store.apply([Add("one", id="twin"), Add("two", id="twin")])
    assert snapshot(store) == before and "fresh" not in store
    with pytest.raises(LifelongError):
        store.apply([Add("x", id="bad id!")])


def test_non_utf8_text_rejected(store: MemoryStore) -> None:
    seed(store)
    before = snapshot(store)
    with pytest.raises(TextEncodingError, match="not valid UTF-8"):
        store.apply([Add(b"caf\xe9 au lait", id="latin1")])  # type: ignore[arg-type]
    with pytest.raises(TextEncodingError, match="surrogate"):
        store.apply([Update(id="retry", content=b"wait \xff".decode("utf-8", "surrogateescape"))])
    with pytest.raises(TextEncodingError):
        store.search(b"\xff\xfe".decode("utf-8", "surrogateescape"))
    assert snapshot(store) == before
    store.apply([Add("café au lait, 東京, emoji 🙂", id="unicode")])
    assert store.get("unicode").content == "café au lait, 東京, emoji 🙂"


def test_wrong_dimension_rejected(store: MemoryStore) -> None:
    seed(store)
    before = snapshot(store)
    with pytest.raises(DimensionError, match=f"{DIM}-dimensional"):
        store.apply([Add("vec", id="v", vector=np.ones(DIM + 1))])
    with pytest.raises(DimensionError):
        store.apply([Add("vec", id="v", vector=np.full(DIM, np.nan))])
    with pytest.raises(DimensionError):
        store.search(vector=np.ones(3))
    assert snapshot(store) == before
    store.apply([Add("with a vector", id="v", vector=np.ones(DIM))])
    assert store.nearest(np.ones(DIM), k=1)[0][0] == "v"


def test_unknown_tenant_and_isolation(make_store: Any) -> None:
    alice = make_store("alice")
    seed(alice)
    with pytest.raises(UnknownTenantError, match="has no store"):
        make_store("mallory", create=False)
    with pytest.raises(UnknownTenantError):
        alice.other("mallory")
    bob = alice.other("bob", create=True)
    bob.apply([Add("Bob's secret: the vault code is 1234", id="retry")])  # same id, other tenant
    assert [h.item.id for h in bob.search("vault code", k=5)] == ["retry"]
    assert all("vault" not in h.item.content for h in alice.search("vault code secret", k=10))
    assert alice.get("retry").content.startswith("On 429") and len(alice) == 4 and len(bob) == 1
    assert sorted(alice.tenants()) == ["alice", "bob"]


def test_links_must_exist_and_expand(store: MemoryStore) -> None:
    seed(store)
    with pytest.raises(ItemNotFoundError, match="links to 'ghost'"):
        store.apply([Add("x", id="n1", links=("ghost",))])
    store.apply([Add("Backoff doubles the wait each time", id="backoff", links=("retry",))])
    hits = store.search("how does the wait grow", k=1, expand_links=1)
    assert [h.item.id for h in hits] == ["backoff", "retry"] and hits[1].via == "backoff"
    assert hits[1].score == pytest.approx(hits[0].score * 0.5)


def test_stale_plan_rejected(store: MemoryStore) -> None:
    seed(store)
    plan = store.plan([Update(id="retry", content="planned edit")])
    store.apply([Update(id="retry", content="someone else's edit")])
    with pytest.raises(StalePlanError):
        store.apply(plan)
    assert store.get("retry").content == "someone else's edit"
    with pytest.raises(InvalidOpError, match="expected"):
        store.apply([Update(id="retry", content="x", expected_version=1)])


def test_session_scope_is_private_to_its_session(store: MemoryStore) -> None:
    store.apply([Add("scratch note about the current task", id="s1", scope="session", session="s-1"),
                 Add("global note about tasks", id="g1", scope="global")])
    assert [h.item.id for h in store.search("note about task", k=5)] == ["g1"]
    assert {h.item.id for h in store.search("note about task", k=5, session="s-1")} == {"s1", "g1"}
    with pytest.raises(InvalidOpError, match="session"):
        store.apply([Add("x", id="bad", scope="session")])


def test_vectors_only_store(make_store: Any) -> None:
    s = make_store("ext", embedder=VectorsOnly(8))
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((5, 8))
    s.apply([Add(f"item {i}", id=f"i{i}", vector=vecs[i]) for i in range(5)])
    assert s.nearest(vecs[3], k=1)[0][0] == "i3"
    with pytest.raises(LifelongError, match="precomputed vectors"):
        s.apply([Add("no vector", id="x")])


def test_reopen_keeps_everything(make_store: Any, location: str) -> None:
    s = make_store()
    seed(s)
    before = snapshot(s)
    s.close()
    from lifelong.context import open_store

    again = open_store(location, tenant="alice")  # the embedder is rebuilt from its recorded name
    try:
        assert snapshot(again) == before and again.embedder.name == f"hashing-{DIM}"
    finally:
        again.close()

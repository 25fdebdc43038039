"""Hybrid retrieval on both backends: BM25 catches rare tokens, dense catches paraphrase, tags boost,
recency and utility re-rank without filtering, and the two backends score BM25 identically."""

from __future__ import annotations

from typing import Any

import pytest

from lifelong.context import Add, HashingEmbedder, MemoryStore, Tag, Weights, open_store
from lifelong.context.backends.base import Filter

DAY = 86400.0

CORPUS = [
    ("e1", "Error code E-4471 means the ledger file is locked by another process"),
    ("e2", "When an error happens, read the message and check the logs"),
    ("e3", "Errors from the network layer are retried three times"),
    ("p1", "Use metric units in every report"),
    ("p2", "Dates are written as ISO 8601, year first"),
    ("p3", "Round currency to two decimals"),
]


def fill(store: MemoryStore, at: float = 0.0) -> None:
    store.apply([Add(text, id=i) for i, text in CORPUS], at=at)


def test_bm25_finds_the_rare_token(store: MemoryStore) -> None:
    fill(store)
    hits = store.search("what does E-4471 mean", k=3, now=DAY)
    assert hits[0].item.id == "e1" and hits[0].bm25 == 1.0
    assert all(0.0 <= h.relevance <= 1.0 for h in hits)


def test_scores_are_explained_and_sorted(store: MemoryStore) -> None:
    fill(store)
    hits = store.search("errors and retries", k=6, now=DAY)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        assert h.score == pytest.approx(h.relevance * h.recency * h.utility)


def test_utility_reranks_but_never_filters(store: MemoryStore) -> None:
    store.apply([Add("retry the request after a pause", id="good"), Add("retry the request after a pause!", id="bad")],
                at=0.0)
    store.apply([Tag(id="bad", tag="harmful", count=5), Tag(id="good", tag="helpful", count=5)], at=0.0)
    hits = store.search("retry the request", k=5, now=1.0)
    assert [h.item.id for h in hits] == ["good", "bad"]  # the harmful one is ranked last, still returned
    assert hits[1].utility < 1.0 < hits[0].utility


def test_recency_reranks_but_never_filters(store: MemoryStore) -> None:
    store.apply([Add("the office wifi password is in the wiki", id="old")], at=0.0)
    store.apply([Add("the office wifi password is in the wiki.", id="new")], at=400 * DAY)
    hits = store.search("office wifi password", k=5, now=401 * DAY)
    assert [h.item.id for h in hits] == ["new", "old"]
    assert hits[1].recency >= Weights().recency_floor  # bounded: a year-old item keeps most of its score
    only_old = store.search("office wifi password", k=5, now=401 * DAY, weights=Weights(recency_floor=0.0))
    assert {h.item.id for h in only_old} == {"new", "old"}


def test_tag_boost(store: MemoryStore) -> None:
    store.apply([Add("She moved last spring", id="moved", tags=("Alice", "Berlin")),
                 Add("He moved last spring", id="other", tags=("Bob",))], at=0.0)
    hits = store.search("when did Alice move", k=2, now=1.0)
    assert hits[0].item.id == "moved" and hits[0].tags > 0 and hits[1].tags == 0
    explicit = store.search("moved last spring", tags=["Bob"], k=2, now=1.0)
    assert explicit[0].item.id == "other"


def test_filters_by_kind_section_scope(store: MemoryStore) -> None:
    store.apply([Add("alpha rule", id="a", kind="bullet", section="s1", scope="global"),
                 Add("alpha fact", id="b", kind="fact", section="s2", scope="user")], at=0.0)
    assert [h.item.id for h in store.search("alpha", kinds=["fact"], now=1.0)] == ["b"]
    assert [h.item.id for h in store.search("alpha", sections=["s1"], now=1.0)] == ["a"]
    assert [h.item.id for h in store.search("alpha", scopes=["global"], now=1.0)] == ["a"]
    assert store.search("alpha", kinds=[], now=1.0) == []


def test_empty_store_and_empty_query(store: MemoryStore) -> None:
    assert store.search("anything") == []
    fill(store)
    assert store.search("", k=3) == []  # no text, no vector: nothing to rank by


def test_both_backends_compute_the_same_bm25(tmp_path: Any, new_pg_database: Any) -> None:
    scores = []
    for loc in (str(tmp_path / "m.db"), new_pg_database()):
        s = open_store(loc, tenant="t", create=True, embedder=HashingEmbedder(32))
        fill(s)
        s.apply([Add("errors errors everywhere, error codes too", id="e4")], at=0.0)
        keys = {it.id: k for it in s.items() for k, _ in [s.backend.fetch_ids("t", [it.id])[it.id]]}
        raw = s.backend.bm25("t", ["error", "code", "the"], 10, Filter(), at=1.0)
        scores.append({i: round(raw[k], 9) for i, k in keys.items() if k in raw})
        s.close()
    assert scores[0] == scores[1] and len(scores[0]) >= 4

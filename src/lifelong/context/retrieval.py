"""Hybrid retrieval over a backend: dense + BM25 candidates, exact scores for their union, tag/entity
boosts, recency and utility re-ranking, and optional link expansion.

Both retrievers return their top candidates; every candidate then gets *both* exact scores (so a
ranking never depends on which list an item came from). Used through :meth:`MemoryStore.search`.

>>> from lifelong.context.store import open_store
>>> from lifelong.context.ops import Add
>>> from lifelong.context.embed import HashingEmbedder
>>> s = open_store(":memory:", tenant="t", create=True, embedder=HashingEmbedder(64))
>>> _ = s.apply([Add("Invoices are due within 30 days", id="a"), Add("Use metric units in reports", id="b")])
>>> [h.item.id for h in s.search("when are invoices due", k=1)]
['a']
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lifelong.context.backends.base import Filter
from lifelong.context.embed import VectorsOnly, check_vector
from lifelong.context.ranking import Hit, Weights, recency_factor, relevance, tag_score, utility_factor
from lifelong.context.text import query_terms, terms

if TYPE_CHECKING:
    from lifelong.context.store import MemoryStore


def search(
    store: MemoryStore,
    query: str | None = None,
    *,
    vector: np.ndarray | Sequence[float] | None = None,
    k: int = 10,
    where: Filter | None = None,
    tags: Sequence[str] = (),
    expand_links: int = 0,
    weights: Weights | None = None,
    now: float | None = None,
) -> list[Hit]:
    """The top ``k`` hits (plus linked items when ``expand_links`` > 0), best first."""
    from lifelong.context.items import check_text

    w = weights or Weights()
    where = where or Filter()
    at = time.time() if now is None else now
    backend, tenant = store.backend, store.tenant
    if query is not None:
        query = check_text(query, "query")
    qvec = None
    if vector is not None:
        qvec = check_vector(vector, backend.dim, "query vector")
    elif query and not isinstance(store.embedder, VectorsOnly):
        qvec = check_vector(store.embedder.embed([query])[0], backend.dim, "query embedding")
    qterms = query_terms(query) if query else []
    qtags = {t for tag in tags for t in terms(tag)} | set(qterms)
    n = max(w.candidates, 4 * k)
    dense = backend.dense(tenant, qvec, n, where, at) if qvec is not None else {}
    lexical = backend.bm25(tenant, qterms, n, where, at) if qterms else {}
    keys = sorted(set(dense) | set(lexical))
    if not keys:
        return []
    if qvec is not None:
        missing = [x for x in keys if x not in dense]
        dense.update(backend.similarity(tenant, qvec, missing) if missing else {})
    if qterms:
        missing = [x for x in keys if x not in lexical]
        lexical.update(backend.bm25(tenant, qterms, len(missing), where, at, keys=missing) if missing else {})
    items = backend.fetch(tenant, keys)
    top_bm25 = max(lexical.values(), default=0.0)
    hits = []
    for key in keys:
        item = items.get(key)
        if item is None:  # removed between the two reads
            continue
        hits.append(_score(item, dense.get(key, 0.0), lexical.get(key, 0.0) / top_bm25 if top_bm25 > 0 else 0.0,
                           qtags, qvec is not None, bool(qterms), bool(qtags), at, w))
    hits.sort(key=lambda h: (-h.score, h.item.id))
    hits = hits[:k]
    if expand_links > 0:
        hits += _expand(store, hits, expand_links, where, at, w)
    return hits


def _score(item, dense, bm25, qtags, has_vector, has_text, has_tags, at, w) -> Hit:  # type: ignore[no-untyped-def]
    tag = tag_score(item.tags, qtags) if has_tags else 0.0
    rel = relevance(dense=dense, bm25=bm25, tags=tag, has_vector=has_vector, has_text=has_text, has_tags=has_tags, w=w)
    rec = recency_factor(at - item.updated_at, w)
    util = utility_factor(item.helpful, item.harmful, w)
    return Hit(item, rel * rec * util, rel, max(dense, 0.0), bm25, tag, rec, util)


def _expand(store: MemoryStore, hits: list[Hit], depth: int, where: Filter, at: float, w: Weights) -> list[Hit]:
    """Breadth-first over links (A-MEM's ``search_agentic``): a linked item scores its parent's score
    times ``link_decay`` per hop and is admitted by the same filter as the search."""
    seen = {h.item.id for h in hits}
    frontier, out = hits, []
    for _ in range(depth):
        wanted = {link: h for h in frontier for link in h.item.links if link not in seen}
        if not wanted:
            break
        found = store.backend.fetch_ids(store.tenant, sorted(wanted))
        layer = []
        for link_id, (_, item) in sorted(found.items()):
            if not where.admits(item, at):
                continue
            parent = wanted[link_id]
            seen.add(link_id)
            layer.append(Hit(item, parent.score * w.link_decay, parent.relevance * w.link_decay,
                             recency=recency_factor(at - item.updated_at, w),
                             utility=utility_factor(item.helpful, item.harmful, w), via=parent.item.id))
        layer.sort(key=lambda h: (-h.score, h.item.id))
        out += layer
        frontier = layer
    return out

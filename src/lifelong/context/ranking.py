"""Scoring for hybrid retrieval, as pure functions.

``relevance`` fuses dense similarity, BM25 (divided by the best BM25 among the candidates) and tag or
entity overlap, as a weighted mean of the signals the query has (mem0's division by the maximum
possible). ``recency`` and ``utility`` are bounded multiplicative factors: they re-rank and never
filter, so an old or unproven item that is the only match is still returned.

>>> w = Weights()
>>> round(recency_factor(0.0, w), 3), round(recency_factor(30 * 86400.0, w), 3)
(1.0, 0.9)
>>> utility_factor(0, 0, w), utility_factor(9, 0, w), utility_factor(0, 9, w)
(1.0, 1.4090909090909092, 0.5909090909090909)
>>> relevance(dense=0.8, bm25=1.0, tags=0.0, has_vector=True, has_text=True, has_tags=False, w=w)
0.9
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lifelong.context.items import Item
from lifelong.context.text import terms


@dataclass(frozen=True)
class Weights:
    """Knobs of the hybrid scorer, with their defaults.

    - ``dense``, ``bm25``, ``tags``: weights of the three relevance signals.
    - ``half_life_days``, ``recency_floor``: recency = floor + (1 - floor) * 0.5 ** (age / half-life), on
      the time since the item last changed (Generative Agents decay by 0.995 an hour; mem0 bounds its
      decay to [0.3, 1.5]: here the floor keeps it within [0.8, 1]).
    - ``utility_span``: utility factor = 1 + span * (2 * posterior - 1), in [1 - span, 1 + span], with
      posterior the Beta(1, 1) mean (helpful + 1) / (helpful + harmful + 2): 1 for an untested item.
    - ``link_decay``: an item reached through a link scores its parent's score times this.
    - ``candidates``: how many candidates each retriever returns (at least 4k, mem0 over-retrieves).

    >>> Weights(bm25=2.0).dense, Weights().recency_floor
    (1.0, 0.8)
    """

    dense: float = 1.0
    bm25: float = 1.0
    tags: float = 0.5
    half_life_days: float = 30.0
    recency_floor: float = 0.8
    utility_span: float = 0.5
    link_decay: float = 0.5
    candidates: int = 50


@dataclass(frozen=True)
class Hit:
    """One retrieved item with every component of its score (so a ranking can be explained).

    >>> Hit(Item(id="a", content="x"), score=0.45, relevance=0.5, utility=0.9).via is None
    True
    """

    item: Item
    score: float
    relevance: float
    dense: float = 0.0
    bm25: float = 0.0
    tags: float = 0.0
    recency: float = 1.0
    utility: float = 1.0
    via: str | None = None  # the item whose link brought this one in


def recency_factor(age_seconds: float, w: Weights) -> float:
    """Bounded exponential decay with the item's age; future timestamps count as age 0."""
    age_days = max(age_seconds, 0.0) / 86400.0
    return w.recency_floor + (1.0 - w.recency_floor) * 0.5 ** (age_days / w.half_life_days)


def utility_factor(helpful: int, harmful: int, w: Weights) -> float:
    """Utility from the helpful/harmful counters (Beta posterior mean), mapped to a bounded factor."""
    posterior = (helpful + 1) / (helpful + harmful + 2)
    return 1.0 + w.utility_span * (2.0 * posterior - 1.0)


def tag_score(item_tags: Iterable[str], query: set[str]) -> float:
    """Overlap of an item's tags (entities, keywords) with the query's terms and tags, saturating:
    one matching tag gives 0.5, two 0.67, three 0.75.

    >>> tag_score(["Paris", "Eiffel Tower"], set(terms("a trip to Paris")))
    0.5
    """
    matched = 0
    for tag in item_tags:
        tag_terms = terms(tag)
        if tag_terms and all(t in query for t in tag_terms):
            matched += 1
    return matched / (matched + 1)


def relevance(*, dense: float, bm25: float, tags: float, has_vector: bool, has_text: bool, has_tags: bool,
              w: Weights) -> float:
    """Weighted mean of the signals the query carries, each in [0, 1]."""
    num = den = 0.0
    if has_vector:
        num, den = num + w.dense * max(dense, 0.0), den + w.dense
    if has_text:
        num, den = num + w.bm25 * bm25, den + w.bm25
    if has_tags:
        num, den = num + w.tags * tags, den + w.tags
    return num / den if den > 0 else 0.0

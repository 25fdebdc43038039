"""Hierarchical voting over augmented predictions: a pure, deterministic function returning the top 2.

After MARC's ``arclib/voting.py`` as the reference notes describe it: candidates carry the category of
the transform that produced them (identity, transpose, flip0, rot90 ...). Within every category (and in
an "all" category holding every candidate) the 3 most frequent grids are kept; when a category has fewer
than 3 distinct grids it is topped up with its row-wise and column-wise majority grids. A global vote
over those short lists then ranks a grid by the number of lists it appears in, then by its total count,
and returns the best ``top`` (2: ARC's pass@2 rule).

Ties are broken by a canonical order of the grids (shape, then cells), never by the order of the input,
so the result depends only on the multiset of (category, grid) pairs.

>>> a, b, c = (np.full((1, 1), v, np.int8) for v in (1, 2, 3))
>>> [g.item() for g in vote([("identity", a), ("identity", a), ("rot90", b), ("rot90", a), ("flip0", c)])]
[1, 2]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from lifelong.arc.grids import grid_key

PER_CATEGORY = 3  # MARC keeps the top 3 per transform category
TOP = 2  # ARC scores the best of two attempts


def _ranked(grids: Sequence[np.ndarray]) -> list[tuple[bytes, int]]:
    """Distinct grids as (key, count), most frequent first, ties in canonical key order."""
    counts = Counter(grid_key(g) for g in grids)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _majority(grids: Sequence[np.ndarray], axis: int) -> np.ndarray | None:
    """Row-wise (axis 0) or column-wise (axis 1) majority grid over the grids of the most common shape."""
    if not grids:
        return None
    shapes = Counter(g.shape for g in grids)
    shape = min(shapes, key=lambda s: (-shapes[s], s))
    same = [g if axis == 0 else g.T for g in grids if g.shape == shape]
    lines = []
    for i in range(same[0].shape[0]):
        votes = Counter(bytes(g[i].astype(np.int8).tobytes()) for g in same)
        best = min(votes, key=lambda k: (-votes[k], k))
        lines.append(np.frombuffer(best, dtype=np.int8))
    out = np.stack(lines)
    return np.ascontiguousarray(out if axis == 0 else out.T)


def category_shortlist(grids: Sequence[np.ndarray], size: int = PER_CATEGORY) -> list[bytes]:
    """The keys of a category's top ``size`` grids, topped up with its row- and column-wise majorities.

    >>> g = [np.array([[1], [9]], np.int8), np.array([[5], [2]], np.int8)]
    >>> [_from_key(k).ravel().tolist() for k in category_shortlist(g)]   # two votes, then the row-wise majority
    [[1, 9], [5, 2], [1, 2]]
    """
    short = [k for k, _ in _ranked(grids)[:size]]
    for axis in (0, 1):
        if len(short) >= size:
            break
        m = _majority(grids, axis)
        if m is not None and grid_key(m) not in short:
            short.append(grid_key(m))
    return short


def _from_key(key: bytes) -> np.ndarray:
    h, w = key[0], key[1]
    return np.frombuffer(key[2:], dtype=np.int8).reshape(h, w).copy()


def vote(candidates: Sequence[tuple[str, np.ndarray]], top: int = TOP, per_category: int = PER_CATEGORY) -> list[np.ndarray]:
    """The ``top`` grids chosen by hierarchical voting over ``(category, grid)`` candidates (possibly
    fewer when fewer distinct grids exist; none for no candidates).

    >>> vote([])
    []
    """
    if not candidates:
        return []
    by_cat: dict[str, list[np.ndarray]] = {}
    for cat, g in candidates:
        by_cat.setdefault(cat, []).append(np.asarray(g, dtype=np.int8))
    everything = [np.asarray(g, dtype=np.int8) for _, g in candidates]
    lists = [category_shortlist(gs, per_category) for _, gs in sorted(by_cat.items())]
    lists.append(category_shortlist(everything, per_category))
    total = Counter(grid_key(g) for g in everything)
    appearances: Counter[bytes] = Counter()
    for short in lists:
        appearances.update(set(short))
    ranked = sorted(appearances, key=lambda k: (-appearances[k], -total[k], k))
    return [_from_key(k) for k in ranked[:top]]

"""Turning constructed tasks into padded tensors for the per-cell model.

An *entry* is one query to predict with its context: ``(context demonstrations, query input, query
output or None, shape rule)``. :func:`prepare` lifts every grid onto its output's cells once (numpy);
:func:`collate` pads a list of prepared entries into one :class:`Batch` (zero padding, a validity mask,
``-100`` targets on padding so the loss ignores it). Context pairs are gathered across the batch and a
``(queries, pairs)`` weight matrix averages each query's own pairs (a zero row: empty context).

>>> from lifelong.arc.grids import Example
>>> from lifelong.arc.shapes import ShapeRule
>>> g = np.ones((2, 3), np.int8)
>>> e = prepare([Example(g, g)], g, g, ShapeRule())
>>> b = collate([e, prepare([], g[:1], g[:1], ShapeRule())])
>>> tuple(b.query_x.shape), tuple(b.ctx_weight.shape), b.ctx_weight.sum(1).tolist()
((2, 3, 2, 3), (2, 1), [1.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lifelong.arc.grids import ArcInputError, Example
from lifelong.arc.shapes import ShapeRule

IGNORE = -100


@dataclass(frozen=True, eq=False)
class Prepared:
    """One query, lifted: ``x`` (3, H, W), ``y`` (H, W) or None, and lifted context pairs.

    >>> from lifelong.arc.shapes import ShapeRule
    >>> prepare([], np.zeros((2, 5), np.int8), None, ShapeRule("scale", 2, 1)).shape
    (4, 5)
    """

    x: np.ndarray
    y: np.ndarray | None
    ctx: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def shape(self) -> tuple[int, int]:
        """The output shape predicted for this query."""
        return int(self.x.shape[1]), int(self.x.shape[2])


def prepare(context: Sequence[Example], query_input: np.ndarray, query_output: np.ndarray | None,
            rule: ShapeRule, cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> Prepared:
    """Lift a query (and its context pairs) onto output cells under ``rule``.

    With a ``cache`` (keyed by the demonstration object), a demonstration shared by many constructed
    tasks is lifted once, and :func:`collate` then encodes it once per batch.

    >>> from lifelong.arc.shapes import ShapeRule
    >>> d = Example(np.ones((2, 2), np.int8), np.zeros((2, 2), np.int8))
    >>> cache: dict = {}
    >>> a = prepare([d], d.input, None, ShapeRule(), cache)
    >>> b = prepare([d], d.input, None, ShapeRule(), cache)
    >>> a.ctx[0][0] is b.ctx[0][0]
    True
    """
    x = rule.lift(query_input)
    if query_output is not None and query_output.shape != x.shape[1:]:
        raise ArcInputError(
            f"a {query_input.shape} input has a {query_output.shape} output, but the task's shape rule "
            f"{rule} predicts {x.shape[1:]}; the per-cell model cannot express this pair"
        )
    ctx = []
    for e in context:
        if cache is not None and id(e) in cache:
            ctx.append(cache[id(e)])
            continue
        if e.output is None:
            raise ArcInputError("a context demonstration has no output; demonstrations need both grids")
        cx = rule.lift(e.input)
        if cx.shape[1:] != e.output.shape:
            raise ArcInputError(f"a context pair {e.input.shape}->{e.output.shape} breaks the shape rule {rule}")
        ctx.append((cx, e.output))
        if cache is not None:
            cache[id(e)] = ctx[-1]
    return Prepared(x, query_output, tuple(ctx))


@dataclass
class Batch:
    """Padded tensors; masks are 1.0 on real cells.

    >>> from lifelong.arc.shapes import ShapeRule
    >>> b = collate([prepare([], np.zeros((2, 3), np.int8), None, ShapeRule())])
    >>> b.query_mask.sum().item(), b.query_y is None, b.to("cpu").shapes
    (6.0, True, [(2, 3)])
    """

    query_x: torch.Tensor  # (Q, 3, H, W) long
    query_mask: torch.Tensor  # (Q, 1, H, W) float
    query_y: torch.Tensor | None  # (Q, H, W) long, IGNORE on padding
    ctx_x: torch.Tensor  # (P, 3, Hc, Wc) long
    ctx_y: torch.Tensor  # (P, Hc, Wc) long
    ctx_mask: torch.Tensor  # (P, 1, Hc, Wc) float
    ctx_weight: torch.Tensor  # (Q, P) float; each row averages that query's context pairs
    shapes: list[tuple[int, int]]

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.query_x), move(self.query_mask), move(self.query_y), move(self.ctx_x),
                     move(self.ctx_y), move(self.ctx_mask), move(self.ctx_weight), self.shapes)


def _pad(arrays: Sequence[np.ndarray], fill: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack arrays of shape (..., h, w) into (n, ..., H, W) with ``fill`` and a (n, 1, H, W) mask."""
    if not arrays:
        return np.zeros((0, 1, 1), np.int64), np.zeros((0, 1, 1, 1), np.float32)
    H = max(a.shape[-2] for a in arrays)
    W = max(a.shape[-1] for a in arrays)
    lead = arrays[0].shape[:-2]
    out = np.full((len(arrays), *lead, H, W), fill, dtype=np.int64)
    mask = np.zeros((len(arrays), 1, H, W), dtype=np.float32)
    for i, a in enumerate(arrays):
        h, w = a.shape[-2:]
        out[i, ..., :h, :w] = a
        mask[i, 0, :h, :w] = 1.0
    return out, mask


def collate(entries: Sequence[Prepared]) -> Batch:
    """Pad prepared entries into one batch (context pairs of all entries gathered, then averaged per query).

    >>> from lifelong.arc.shapes import ShapeRule
    >>> d = Example(np.ones((2, 2), np.int8), np.zeros((2, 2), np.int8))
    >>> cache: dict = {}
    >>> e = [prepare([d], np.ones((3, 3), np.int8), None, ShapeRule(), cache) for _ in range(2)]
    >>> collate(e).ctx_x.shape[0]          # the shared demonstration is encoded once
    1
    """
    if not entries:
        raise ValueError("collate needs at least one entry")
    qx, qmask = _pad([e.x for e in entries], 0)
    has_y = all(e.y is not None for e in entries)
    qy = _pad([e.y for e in entries], IGNORE)[0] if has_y else None  # type: ignore[misc]
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    index: dict[int, int] = {}  # a pair shared by several queries (same lifted array) is encoded once
    owner: list[tuple[int, int]] = []
    for q, e in enumerate(entries):
        for pair in e.ctx:
            if id(pair[0]) not in index:
                index[id(pair[0])] = len(pairs)
                pairs.append(pair)
            owner.append((q, index[id(pair[0])]))
    if pairs:
        cx, cmask = _pad([p[0] for p in pairs], 0)
        cy = _pad([p[1] for p in pairs], 0)[0]
    else:  # no query has context: one dummy pair with zero weight keeps shapes valid
        cx, cmask, cy = np.zeros((1, 3, 1, 1), np.int64), np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1), np.int64)
    weight = np.zeros((len(entries), max(len(pairs), 1)), dtype=np.float32)
    for q, p in owner:
        weight[q, p] += 1.0
    counts = weight.sum(1, keepdims=True)
    weight = np.divide(weight, counts, out=np.zeros_like(weight), where=counts > 0)
    return Batch(
        torch.from_numpy(qx), torch.from_numpy(qmask), None if qy is None else torch.from_numpy(qy),
        torch.from_numpy(cx), torch.from_numpy(cy), torch.from_numpy(cmask), torch.from_numpy(weight),
        [e.shape for e in entries],
    )

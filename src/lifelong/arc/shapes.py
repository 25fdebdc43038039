"""Output sizes, and what the per-cell model can express at all.

The model predicts one colour per output cell from features aligned with that cell, so it needs (1) the
output's shape before it predicts and (2) an input laid out on the output's cells. A :class:`ShapeRule`
read off the demonstrations provides both, for two families:

* ``same``: every output has its input's shape (262 of 400 training and 270 of 400 evaluation tasks of
  ARC-AGI-1);
* ``scale``: every output is the input scaled by the same integer factors (``fy``, ``fx``) (24 and 26
  tasks): the input is laid onto the output three times: upscaled (each cell a block), tiled, and tiled
  with every other tile mirrored (the kaleidoscope tilings common in ARC).

Every other task (crops, counts, constant-size outputs, object extraction: about 26% of the evaluation
split) has no rule: the model family cannot express it, and the benchmark counts it as unsolved.

>>> from lifelong.arc.grids import ArcTask
>>> t = ArcTask.from_pairs([([[1, 2]], [[1, 2, 1, 2], [1, 2, 1, 2]])], [[[3, 4]]])
>>> rule = infer_shape_rule(t.train)
>>> rule, rule.out_shape((1, 2))
(ShapeRule(kind='scale', fy=2, fx=2), (2, 4))
>>> rule.lift(np.array([[3, 4]], dtype=np.int8))[1].tolist()   # the tiled layer
[[3, 4, 3, 4], [3, 4, 3, 4]]
>>> rule.lift(np.array([[3, 4]], dtype=np.int8))[2].tolist()   # the mirror-tiled layer
[[3, 4, 4, 3], [3, 4, 4, 3]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lifelong.arc.grids import MAX_SIDE, Example


@dataclass(frozen=True)
class ShapeRule:
    """How an output's shape follows from its input's: ``same`` or integer ``scale`` (fy, fx).

    >>> ShapeRule("scale", 3, 1).out_shape((2, 2))
    (6, 2)
    """

    kind: str = "same"
    fy: int = 1
    fx: int = 1

    def out_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The output shape for an input of ``shape``.

        >>> ShapeRule().out_shape((3, 5))
        (3, 5)
        """
        return shape[0] * self.fy, shape[1] * self.fx

    def lift(self, grid: np.ndarray) -> np.ndarray:
        """The input laid onto the output's cells: ``(3, H, W)`` with the upscaled grid, the tiled grid and
        the mirror-tiled grid (tile (i, j) flipped vertically when i is odd, horizontally when j is odd).
        For ``same`` all three layers are the input itself.

        >>> ShapeRule("scale", 1, 2).lift(np.array([[1, 2]], np.int8))[2].tolist()
        [[1, 2, 2, 1]]
        """
        up = np.repeat(np.repeat(grid, self.fy, axis=0), self.fx, axis=1)
        tiled = np.tile(grid, (self.fy, self.fx))
        variants = [[grid, grid[:, ::-1]], [grid[::-1], grid[::-1, ::-1]]]
        mirror = np.block([[variants[i % 2][j % 2] for j in range(self.fx)] for i in range(self.fy)])
        return np.stack([up, tiled, mirror]).astype(np.int8)

    def fits(self, grid: np.ndarray) -> bool:
        """Whether the predicted output for ``grid`` stays within 30x30."""
        return max(self.out_shape(grid.shape)) <= MAX_SIDE


def infer_shape_rule(demonstrations: Sequence[Example]) -> ShapeRule | None:
    """The rule every demonstration agrees on, or None when the model family cannot express the task.

    >>> infer_shape_rule([Example(np.zeros((2, 2), np.int8), np.zeros((1, 1), np.int8))]) is None
    True
    """
    if not demonstrations or any(e.output is None for e in demonstrations):
        return None
    if all(e.input.shape == e.output.shape for e in demonstrations):  # type: ignore[union-attr]
        return ShapeRule()
    factors = set()
    for e in demonstrations:
        (hi, wi), (ho, wo) = e.input.shape, e.output.shape  # type: ignore[union-attr]
        if ho % hi or wo % wi:
            return None
        factors.add((ho // hi, wo // wi))
    if len(factors) != 1:
        return None
    fy, fx = factors.pop()
    if fy < 1 or fx < 1:
        return None
    return ShapeRule("scale", fy, fx)

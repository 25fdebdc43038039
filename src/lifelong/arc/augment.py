"""Grid augmenters with exact inverses, after MARC's ``arclib/augmenters.py``.

* :class:`Dihedral`: the 8 rotations and reflections of the square (the group D8; transposition is one
  of them). Closed under :meth:`Dihedral.compose`, each with an inverse in the group.
* :class:`ColourPermutation`: a permutation of the colours, keeping black (0) fixed by default, as MARC's
  ``PermuteColors`` does (black is the background in most ARC tasks). Also a group (S9, or S10).
* :class:`Upscale` (MARC's ``IncreaseResolution``/``IncreaseHeight``/``IncreaseWidth``) and
  :class:`Tile` (MARC's ``Repeat``): injective, not onto; their inverses are exact on their image and
  raise :class:`NotInImageError` elsewhere, so a grid that no upscaled grid could be is never silently
  "inverted".
* :class:`DemonstrationOrder` (MARC's ``PermuteExamples``): reorders the demonstrations; grids unchanged.
* :class:`Chain`: composition, with the inverse applied in reverse order.

Every augmenter maps a grid (``aug(grid)``) and a task (:meth:`Augmenter.apply_to_task`, every input and
known output), and ``aug.inverse()(aug(grid))`` equals ``grid`` exactly (a test checks it on every grid of
both ARC-AGI-1 splits).

>>> g = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int8)
>>> r = Dihedral.named("rot90")
>>> r(g).tolist()
[[3, 6], [2, 5], [1, 4]]
>>> bool((r.inverse()(r(g)) == g).all())
True
>>> up = Chain((Dihedral.named("transpose"), Upscale(2, 2)))
>>> up(g).shape, bool((up.inverse()(up(g)) == g).all())
((6, 4), True)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from lifelong.arc.grids import MAX_SIDE, N_COLOURS, ArcInputError, ArcTask, Example


class NotInImageError(ArcInputError):
    """A grid handed to the inverse of a non-surjective augmenter (Upscale, Tile) is not in its image.

    >>> try:
    ...     Upscale(2, 2).inverse()(np.array([[1, 2], [3, 4]], dtype=np.int8))
    ... except NotInImageError as err:
    ...     print("refused")
    refused
    """


class Augmenter(ABC):
    """An invertible transformation of ARC grids, applied alike to every grid of a task.

    >>> aug = Dihedral.named("flip1")
    >>> isinstance(aug, Augmenter), aug.inverse().name
    (True, 'flip1')
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """A stable name (used as the voting category and in deduplication keys)."""

    @abstractmethod
    def __call__(self, grid: np.ndarray) -> np.ndarray:
        """The transformed grid (a new array)."""

    @abstractmethod
    def inverse(self) -> Augmenter:
        """The exact inverse (on the image of this augmenter)."""

    def out_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The shape a grid of ``shape`` has after the transformation."""
        return tuple(self(np.zeros(shape, dtype=np.int8)).shape)  # type: ignore[return-value]

    def fits(self, task: ArcTask) -> bool:
        """Whether every transformed grid of ``task`` stays within ARC's 30x30 (MARC drops the others).

        >>> t = ArcTask.from_pairs([(np.zeros((20, 20)), np.zeros((20, 20)))], [np.zeros((20, 20))])
        >>> Upscale(2, 2).fits(t), Dihedral.named("rot90").fits(t)
        (False, True)
        """
        return all(max(self.out_shape(g.shape)) <= MAX_SIDE for g in task.grids())

    def apply_to_task(self, task: ArcTask) -> ArcTask:
        """Transform every demonstration and test grid (hidden outputs stay hidden); the id is kept.

        >>> t = ArcTask.from_pairs([([[1, 2]], [[2, 1]])], [[[1, 2]]], "t")
        >>> Dihedral.named("transpose").apply_to_task(t).train[0].output.tolist()
        [[2], [1]]
        """
        if not self.fits(task):
            raise ArcInputError(
                f"augmenter {self.name} makes a grid of task {task.id!r} larger than {MAX_SIDE}x{MAX_SIDE}; "
                "check Augmenter.fits(task) first and skip it, as MARC does"
            )
        tx = lambda e: Example(self(e.input), None if e.output is None else self(e.output))  # noqa: E731
        return ArcTask(task.id, tuple(tx(e) for e in task.train), tuple(tx(e) for e in task.test))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# ---------------------------------------------------------------------------------------------- D8
_PROBE = np.arange(6, dtype=np.int8).reshape(2, 3)  # no symmetry: distinguishes all 8 elements


def _d8_apply(rot: int, transpose: bool, grid: np.ndarray) -> np.ndarray:
    """``np.rot90(grid.T if transpose else grid, rot)`` by slicing (np.rot90's argument handling is the
    slow part when the property test runs it on every ARC grid)."""
    g = grid.T if transpose else grid
    if rot == 1:
        g = g[:, ::-1].T
    elif rot == 2:
        g = g[::-1, ::-1]
    elif rot == 3:
        g = g.T[:, ::-1]
    return np.ascontiguousarray(g)


@lru_cache(maxsize=1)
def _d8_names() -> dict[tuple[int, bool], str]:
    named = {
        "identity": _PROBE, "rot90": np.rot90(_PROBE, 1), "rot180": np.rot90(_PROBE, 2),
        "rot270": np.rot90(_PROBE, 3), "transpose": _PROBE.T, "flip0": np.flip(_PROBE, 0),
        "flip1": np.flip(_PROBE, 1), "antitranspose": np.rot90(_PROBE, 2).T,
    }
    out: dict[tuple[int, bool], str] = {}
    for rot in range(4):
        for tr in (False, True):
            img = _d8_apply(rot, tr, _PROBE)
            out[(rot, tr)] = next(n for n, ref in named.items() if ref.shape == img.shape and (ref == img).all())
    return out


@dataclass(frozen=True)
class Dihedral(Augmenter):
    """An element of D8: optionally transpose, then rotate counter-clockwise by ``rot`` quarter turns.

    >>> sorted(d.name for d in Dihedral.all())
    ['antitranspose', 'flip0', 'flip1', 'identity', 'rot180', 'rot270', 'rot90', 'transpose']
    >>> Dihedral.named("rot90").compose(Dihedral.named("rot90")).name
    'rot180'
    """

    rot: int = 0
    transpose: bool = False

    def __post_init__(self) -> None:
        if self.rot not in (0, 1, 2, 3):
            raise ValueError(f"rot must be 0-3 quarter turns, got {self.rot}")

    @property
    def name(self) -> str:
        return _d8_names()[(self.rot, bool(self.transpose))]

    @classmethod
    def all(cls) -> list[Dihedral]:
        """The 8 elements, identity first."""
        return [cls(r, t) for t in (False, True) for r in range(4)]

    @classmethod
    def named(cls, name: str) -> Dihedral:
        """Look an element up by name (``identity``, ``rot90``, ``flip0``, ``transpose`` ...)."""
        for d in cls.all():
            if d.name == name:
                return d
        raise ValueError(f"no dihedral element named {name!r}; names: {sorted(d.name for d in cls.all())}")

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        return _d8_apply(self.rot, self.transpose, grid)

    def compose(self, first: Dihedral) -> Dihedral:
        """The element equal to applying ``first`` and then ``self``."""
        img = self(first(_PROBE))
        return next(d for d in Dihedral.all() if d(_PROBE).shape == img.shape and (d(_PROBE) == img).all())

    def inverse(self) -> Dihedral:
        return next(d for d in Dihedral.all() if d.compose(self).name == "identity")


# ------------------------------------------------------------------------------------------ colours
@dataclass(frozen=True)
class ColourPermutation(Augmenter):
    """``colour c -> mapping[c]``; ``mapping`` is a permutation of 0-9.

    >>> p = ColourPermutation.random(np.random.default_rng(0))
    >>> p.mapping[0], sorted(p.mapping) == list(range(10))
    (0, True)
    """

    mapping: tuple[int, ...] = tuple(range(N_COLOURS))

    def __post_init__(self) -> None:
        if sorted(self.mapping) != list(range(N_COLOURS)):
            raise ValueError(f"mapping must be a permutation of 0-9, got {self.mapping}")

    @classmethod
    def random(cls, rng: np.random.Generator, keep_black: bool = True) -> ColourPermutation:
        """A uniformly random permutation (of 1-9 when ``keep_black``, MARC's default)."""
        if keep_black:
            return cls((0, *(int(c) for c in rng.permutation(np.arange(1, N_COLOURS)))))
        return cls(tuple(int(c) for c in rng.permutation(N_COLOURS)))

    @property
    def name(self) -> str:
        return "colours:" + "".join(map(str, self.mapping))

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        return np.asarray(self.mapping, dtype=np.int8)[grid]

    def compose(self, first: ColourPermutation) -> ColourPermutation:
        """Applying ``first`` and then ``self``."""
        return ColourPermutation(tuple(self.mapping[c] for c in first.mapping))

    def inverse(self) -> ColourPermutation:
        inv = [0] * N_COLOURS
        for c, m in enumerate(self.mapping):
            inv[m] = c
        return ColourPermutation(tuple(inv))


# ------------------------------------------------------------------------------------- size changes
@dataclass(frozen=True)
class Upscale(Augmenter):
    """Every cell becomes an ``fy x fx`` block (MARC: ``IncreaseResolution(2)`` is ``Upscale(2, 2)``,
    ``IncreaseHeight(2)`` is ``Upscale(2, 1)``, ``IncreaseWidth(2)`` is ``Upscale(1, 2)``).

    >>> Upscale(1, 2)(np.array([[1, 2]], dtype=np.int8)).tolist()
    [[1, 1, 2, 2]]
    """

    fy: int = 2
    fx: int = 2

    def __post_init__(self) -> None:
        if self.fy < 1 or self.fx < 1:
            raise ValueError(f"factors must be >= 1, got ({self.fy}, {self.fx})")

    @property
    def name(self) -> str:
        return f"upscale{self.fy}x{self.fx}"

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(grid, self.fy, axis=0), self.fx, axis=1)

    def inverse(self) -> Downscale:
        return Downscale(self.fy, self.fx)


@dataclass(frozen=True)
class Downscale(Augmenter):
    """The exact inverse of :class:`Upscale`: defined only on grids made of constant ``fy x fx`` blocks.

    >>> Downscale(1, 2)(np.array([[5, 5, 6, 6]], dtype=np.int8)).tolist()
    [[5, 6]]
    """

    fy: int = 2
    fx: int = 2

    @property
    def name(self) -> str:
        return f"downscale{self.fy}x{self.fx}"

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        h, w = grid.shape
        if h % self.fy or w % self.fx:
            raise NotInImageError(f"a {h}x{w} grid is not an upscaled grid: sides must divide by {self.fy}x{self.fx}")
        small = grid[:: self.fy, :: self.fx]
        if not np.array_equal(Upscale(self.fy, self.fx)(small), grid):
            raise NotInImageError(f"the grid is not made of constant {self.fy}x{self.fx} blocks; it is no upscaled grid")
        return np.ascontiguousarray(small)

    def inverse(self) -> Upscale:
        return Upscale(self.fy, self.fx)

    def out_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return shape[0] // self.fy, shape[1] // self.fx


@dataclass(frozen=True)
class Tile(Augmenter):
    """The grid repeated ``ry`` times down and ``rx`` times across (MARC's ``Repeat(axis, 2)``: axis 0 is
    ``Tile(2, 1)``, axis 1 ``Tile(1, 2)``, axis 2 ``Tile(2, 2)``).

    >>> Tile(1, 2)(np.array([[1, 2]], dtype=np.int8)).tolist()
    [[1, 2, 1, 2]]
    """

    ry: int = 2
    rx: int = 2

    def __post_init__(self) -> None:
        if self.ry < 1 or self.rx < 1:
            raise ValueError(f"repeats must be >= 1, got ({self.ry}, {self.rx})")

    @property
    def name(self) -> str:
        return f"tile{self.ry}x{self.rx}"

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        return np.tile(grid, (self.ry, self.rx))

    def inverse(self) -> Untile:
        return Untile(self.ry, self.rx)


@dataclass(frozen=True)
class Untile(Augmenter):
    """The exact inverse of :class:`Tile`: defined only on grids whose tiles are all equal.

    >>> Untile(1, 2)(np.array([[5, 6, 5, 6]], dtype=np.int8)).tolist()
    [[5, 6]]
    """

    ry: int = 2
    rx: int = 2

    @property
    def name(self) -> str:
        return f"untile{self.ry}x{self.rx}"

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        h, w = grid.shape
        if h % self.ry or w % self.rx:
            raise NotInImageError(f"a {h}x{w} grid is not a tiled grid: sides must divide by {self.ry}x{self.rx}")
        first = grid[: h // self.ry, : w // self.rx]
        if not np.array_equal(np.tile(first, (self.ry, self.rx)), grid):
            raise NotInImageError(f"the grid's {self.ry}x{self.rx} tiles differ; it is no tiled grid")
        return np.ascontiguousarray(first)

    def inverse(self) -> Tile:
        return Tile(self.ry, self.rx)

    def out_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return shape[0] // self.ry, shape[1] // self.rx


# ------------------------------------------------------------------------------ order and chaining
@dataclass(frozen=True)
class DemonstrationOrder(Augmenter):
    """Reorders the demonstrations (``train[order[i]]`` becomes ``train[i]``); grids are unchanged.

    >>> t = ArcTask.from_pairs([([[1]], [[1]]), ([[2]], [[2]])], [[[3]]])
    >>> [int(e.input[0, 0]) for e in DemonstrationOrder((1, 0)).apply_to_task(t).train]
    [2, 1]
    """

    order: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if sorted(self.order) != list(range(len(self.order))):
            raise ValueError(f"order must be a permutation of 0..n-1, got {self.order}")

    @classmethod
    def random(cls, n: int, rng: np.random.Generator) -> DemonstrationOrder:
        """A uniformly random order of ``n`` demonstrations."""
        return cls(tuple(int(i) for i in rng.permutation(n)))

    @property
    def name(self) -> str:
        return "order:" + ",".join(map(str, self.order))

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        return np.array(grid, copy=True)

    def inverse(self) -> DemonstrationOrder:
        inv = [0] * len(self.order)
        for i, j in enumerate(self.order):
            inv[j] = i
        return DemonstrationOrder(tuple(inv))

    def fits(self, task: ArcTask) -> bool:
        return len(task.train) == len(self.order)

    def apply_to_task(self, task: ArcTask) -> ArcTask:
        if len(task.train) != len(self.order):
            raise ArcInputError(
                f"DemonstrationOrder of {len(self.order)} demonstrations applied to task {task.id!r} "
                f"with {len(task.train)}; build it with DemonstrationOrder.random(len(task.train), rng)"
            )
        return ArcTask(task.id, tuple(task.train[j] for j in self.order), task.test)


@dataclass(frozen=True)
class Chain(Augmenter):
    """Apply ``augmenters`` left to right; the inverse undoes them right to left.

    >>> c = Chain((Dihedral.named("flip0"), ColourPermutation((0, 2, 1, 3, 4, 5, 6, 7, 8, 9))))
    >>> c.name
    'flip0+colours:0213456789'
    """

    augmenters: tuple[Augmenter, ...] = ()

    @property
    def name(self) -> str:
        return "+".join(a.name for a in self.augmenters) or "identity"

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        for a in self.augmenters:
            grid = a(grid)
        return np.array(grid, copy=True)

    def inverse(self) -> Chain:
        return Chain(tuple(a.inverse() for a in reversed(self.augmenters)))

    def fits(self, task: ArcTask) -> bool:
        for a in self.augmenters:
            if not a.fits(task):
                return False
            task = a.apply_to_task(task)
        return True

    def apply_to_task(self, task: ArcTask) -> ArcTask:
        for a in self.augmenters:
            task = a.apply_to_task(task)
        return task


IDENTITY = Dihedral(0, False)


def marc_augmenters(
    basic: bool = True, size: bool = True, chains: bool = True, repeats: bool = True
) -> list[Augmenter]:
    """MARC's test-time-training augmenter list (``ttt/preprocess.py: get_augmenters``), without its
    ``RandomTranslateXY`` (a translation that drops cells has no exact inverse) and ``Reflect``.

    >>> len(marc_augmenters())
    19
    """
    out: list[Augmenter] = []
    if basic:
        out += [Dihedral.named(n) for n in ("rot90", "rot270", "rot180", "flip0", "flip1", "transpose", "antitranspose")]
    if size:
        out += [Upscale(2, 2), Upscale(2, 1), Upscale(1, 2)]
    if chains:
        out += [Chain((Dihedral.named(n), Upscale(2, 2))) for n in ("rot90", "rot270", "rot180", "flip0", "flip1", "transpose")]
    if repeats:
        out += [Tile(2, 1), Tile(1, 2), Tile(2, 2)]
    return out


def inference_transforms(names: Sequence[str] = ("identity", "transpose", "flip0", "flip1", "rot90", "rot180",
                                                  "rot270")) -> list[Dihedral]:
    """The bijective transforms used for augmented inference. MARC (``inference/preprocess.py``) uses
    identity, Transpose, Flip(0), Flip(1), Rotate(90), Rotate(180); rot270 completes the rotations.

    >>> [t.name for t in inference_transforms(("identity", "rot90"))]
    ['identity', 'rot90']
    """
    return [Dihedral.named(n) for n in names]

"""ARC grids, examples and tasks, validated on the way in.

A grid is a 2-D ``numpy.int8`` array of colours 0-9, at least 1x1 and at most 30x30 (ARC's own limits).
Everything that enters :mod:`lifelong.arc` goes through :func:`as_grid`, so a ragged row, a colour
outside 0-9 or a 31-wide grid fails at the door with an :class:`ArcInputError` that names the field
and the fix, instead of deep inside a convolution.

>>> g = as_grid([[0, 1], [2, 3]])
>>> g.dtype, g.shape
(dtype('int8'), (2, 2))
>>> task = ArcTask.from_json({"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]}, "toy")
>>> task.id, len(task.train), task.test[0].output is None
('toy', 1, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lifelong.core.errors import DataInputError
from lifelong.core.hashing import sha256_hex

MAX_SIDE = 30  # ARC's limit on either side of a grid (and MARC drops augmented tasks beyond it)
N_COLOURS = 10


class ArcInputError(DataInputError):
    """An ARC grid or task is malformed (ragged rows, colours outside 0-9, over 30x30, no demonstrations).

    >>> try:
    ...     as_grid([[1, 2], [3]], field="train[0].input")
    ... except ArcInputError as err:
    ...     print(err)
    train[0].input has ragged rows (row lengths [2, 1]); every row of an ARC grid must have the same length
    """


def as_grid(value: Any, field: str = "grid") -> np.ndarray:
    """Validate ``value`` (nested lists or an array) as an ARC grid and return it as an int8 array.

    >>> as_grid(np.array([[9, 0]])).tolist()
    [[9, 0]]
    >>> try:
    ...     as_grid([[10]])
    ... except ArcInputError as err:
    ...     print(err)
    grid has colours outside 0-9 (saw 10); ARC colours are the integers 0 to 9
    """
    if isinstance(value, np.ndarray):
        arr = value
    else:
        rows = list(value) if isinstance(value, Iterable) and not isinstance(value, str | bytes) else None
        if rows is None or not rows:
            raise ArcInputError(f"{field} must be a non-empty list of rows (a 2-D grid), got {type(value).__name__}")
        lengths = []
        for r in rows:
            if isinstance(r, str | bytes) or not isinstance(r, Iterable):
                raise ArcInputError(f"{field} must be a list of rows of integers; a row is {type(r).__name__}")
            lengths.append(len(list(r)))
        if len(set(lengths)) != 1:
            raise ArcInputError(
                f"{field} has ragged rows (row lengths {lengths[:8]}{' ...' if len(lengths) > 8 else ''}); "
                "every row of an ARC grid must have the same length"
            )
        try:
            arr = np.asarray([list(r) for r in rows])
        except (TypeError, ValueError) as err:
            raise ArcInputError(f"{field} holds values that are not integers: {err}") from None
    if arr.ndim != 2:
        raise ArcInputError(f"{field} must be 2-D (rows of cells), got an array of shape {arr.shape}")
    h, w = arr.shape
    if h < 1 or w < 1 or h > MAX_SIDE or w > MAX_SIDE:
        raise ArcInputError(
            f"{field} is {h}x{w}; ARC grids are 1x1 to {MAX_SIDE}x{MAX_SIDE} (crop or split larger grids)"
        )
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            pass  # integral floats (e.g. from JSON parsed as float) are accepted
        else:
            raise ArcInputError(f"{field} must hold integers 0-9, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= N_COLOURS:
        bad = lo if lo < 0 else hi
        raise ArcInputError(f"{field} has colours outside 0-9 (saw {bad}); ARC colours are the integers 0 to 9")
    return arr.astype(np.int8, copy=True)


def grid_key(grid: np.ndarray) -> bytes:
    """A canonical byte key of a grid (shape and cells), for hashing, deduplication and tie-breaking.

    >>> grid_key(np.zeros((1, 2), np.int8)) == grid_key(np.zeros((2, 1), np.int8))
    False
    """
    g = np.ascontiguousarray(grid, dtype=np.int8)
    return bytes([g.shape[0], g.shape[1]]) + g.tobytes()


@dataclass(frozen=True, eq=False)
class Example:
    """One input/output pair; ``output`` is None for a test input whose answer is hidden.

    >>> Example(as_grid([[1]]), as_grid([[2]])).key() != Example(as_grid([[1]]), None).key()
    True
    """

    input: np.ndarray
    output: np.ndarray | None

    def key(self) -> bytes:
        """Canonical bytes of the pair (used to deduplicate constructed tasks)."""
        out = b"\xff" if self.output is None else grid_key(self.output)
        return grid_key(self.input) + b"|" + out


@dataclass(frozen=True, eq=False)
class ArcTask:
    """An ARC task: demonstrations (``train``) and test inputs, outputs included when known.

    Construct through :meth:`from_json` or :meth:`from_pairs`, which validate every grid.

    >>> t = ArcTask.from_pairs([([[1, 2]], [[2, 1]])], [[[3, 4]]], "flip")
    >>> t.id, t.train[0].output.tolist(), len(t.grids())
    ('flip', [[2, 1]], 3)
    """

    id: str
    train: tuple[Example, ...]
    test: tuple[Example, ...]

    @classmethod
    def from_pairs(
        cls,
        train: Sequence[tuple[Any, Any]],
        test: Sequence[tuple[Any, Any] | Any],
        task_id: str = "task",
    ) -> ArcTask:
        """Build from ``(input, output)`` pairs; a test item may be a bare input (answer unknown).

        >>> t = ArcTask.from_pairs([([[1]], [[2]])], [[[1]]])
        >>> t.test[0].output is None
        True
        """
        if len(train) == 0:
            raise ArcInputError(
                f"task {task_id!r} has no demonstrations; an ARC task needs at least one train pair to learn from"
            )
        demos = tuple(
            Example(as_grid(i, f"task {task_id}: train[{k}].input"), as_grid(o, f"task {task_id}: train[{k}].output"))
            for k, (i, o) in enumerate(train)
        )
        tests = []
        for k, item in enumerate(test):
            if isinstance(item, tuple) and len(item) == 2:
                i, o = item
            else:
                i, o = item, None
            tests.append(
                Example(as_grid(i, f"task {task_id}: test[{k}].input"),
                        None if o is None else as_grid(o, f"task {task_id}: test[{k}].output"))
            )
        if not tests:
            raise ArcInputError(f"task {task_id!r} has no test inputs; give at least one test input to predict")
        return cls(task_id, demos, tuple(tests))

    @classmethod
    def from_json(cls, data: Mapping[str, Any], task_id: str = "task") -> ArcTask:
        """Build from ARC's JSON schema ``{"train": [{"input", "output"}], "test": [{"input", ("output")}]}``."""
        for field in ("train", "test"):
            if field not in data:
                raise ArcInputError(f"task {task_id!r} has no {field!r} list; ARC JSON has 'train' and 'test'")
        train = [(ex["input"], ex["output"]) for ex in data["train"]]
        test = [(ex["input"], ex["output"]) if ex.get("output") is not None else ex["input"] for ex in data["test"]]
        return cls.from_pairs(train, test, task_id)

    def to_json(self) -> dict[str, Any]:
        """ARC's JSON schema (hidden outputs are left out).

        >>> ArcTask.from_pairs([([[1]], [[2]])], [[[1]]], "t").to_json()["test"]
        [{'input': [[1]]}]
        """
        def ex(e: Example) -> dict[str, Any]:
            d: dict[str, Any] = {"input": e.input.tolist()}
            if e.output is not None:
                d["output"] = e.output.tolist()
            return d

        return {"train": [ex(e) for e in self.train], "test": [ex(e) for e in self.test]}

    def without_test_outputs(self) -> ArcTask:
        """The same task with the test answers removed (what a solver may see).

        >>> t = ArcTask.from_pairs([([[1]], [[2]])], [([[1]], [[2]])])
        >>> t.without_test_outputs().test[0].output is None
        True
        """
        return ArcTask(self.id, self.train, tuple(Example(e.input, None) for e in self.test))

    def grids(self) -> list[np.ndarray]:
        """Every grid of the task (demonstrations, test inputs, known test outputs), in a fixed order."""
        out: list[np.ndarray] = []
        for e in (*self.train, *self.test):
            out.append(e.input)
            if e.output is not None:
                out.append(e.output)
        return out

    def content_hash(self) -> str:
        """SHA-256 of the task's grids (demonstrations and test inputs; never the hidden answers).

        >>> t = ArcTask.from_pairs([([[1]], [[2]])], [([[1]], [[2]])])
        >>> t.content_hash() == t.without_test_outputs().content_hash()
        True
        """
        parts = [e.key() for e in self.train] + [grid_key(e.input) for e in self.test]
        return sha256_hex(b"#".join(parts))

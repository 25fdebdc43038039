"""Continual-learning metrics against hand-computed accuracy matrices."""

from __future__ import annotations

import numpy as np
import pytest

from lifelong.control.metrics import (
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    forgetting_first,
    forgetting_max,
    forgetting_max_all,
    forgetting_per_task,
    forward_transfer,
    intransigence,
    summarize,
)
from lifelong.core.errors import DataInputError, LifelongError

# Plain forgetting: each task is best right after it is learnt, then decays.
R_DECAY = np.array(
    [
        [0.90, 0.10, 0.12],
        [0.70, 0.95, 0.08],
        [0.60, 0.80, 0.85],
    ]
)

# Task 0 peaks *after* it is learnt (positive backward transfer from task 1), then is forgotten;
# task 2 improves again in the final row, so Chaudhry's term for it is negative and Mammoth's is 0.
R_PEAK = np.array(
    [
        [0.60, 0.20, 0.10, 0.10],
        [0.90, 0.80, 0.10, 0.20],
        [0.70, 0.75, 0.90, 0.10],
        [0.50, 0.70, 0.95, 0.80],
    ]
)


def test_average_accuracy_is_the_mean_of_the_last_row() -> None:
    assert average_accuracy(R_DECAY) == pytest.approx((0.60 + 0.80 + 0.85) / 3)


def test_backward_transfer_by_hand() -> None:
    # ((0.60 - 0.90) + (0.80 - 0.95)) / 2
    assert backward_transfer(R_DECAY) == pytest.approx(-0.225)


def test_forward_transfer_by_hand() -> None:
    b = [0.1, 0.1, 0.1]
    # ((R[0,1] - b1) + (R[1,2] - b2)) / 2 = ((0.10 - 0.1) + (0.08 - 0.1)) / 2
    assert forward_transfer(R_DECAY, b) == pytest.approx(-0.01)


def test_forgetting_definitions_agree_when_accuracy_only_falls() -> None:
    assert forgetting_max(R_DECAY) == pytest.approx(0.225)
    assert forgetting_first(R_DECAY) == pytest.approx(0.225)
    assert forgetting_max_all(R_DECAY) == pytest.approx(0.225)
    assert forgetting_first(R_DECAY) == pytest.approx(-backward_transfer(R_DECAY))


def test_peak_after_learning_separates_first_minus_last_from_max_minus_last() -> None:
    # Chaudhry: task 0: max(0.6, 0.9, 0.7) - 0.5 = 0.4; task 1: max(0.2, 0.8, 0.75) - 0.7 = 0.1;
    # task 2: max(0.1, 0.1, 0.9) - 0.95 = -0.05.  Mean = 0.45 / 3 = 0.15.
    assert forgetting_per_task(R_PEAK) == pytest.approx([0.4, 0.1, -0.05])
    assert forgetting_max(R_PEAK) == pytest.approx(0.15)
    # Avalanche (first - last): (0.6-0.5) + (0.8-0.7) + (0.9-0.95) = 0.15 / 3 = 0.05.
    assert forgetting_first(R_PEAK) == pytest.approx(0.05)
    # Mammoth (max over all rows, last included): 0.4 + 0.1 + 0.0 = 0.5 / 3.
    assert forgetting_max_all(R_PEAK) == pytest.approx(0.5 / 3)
    assert forgetting_max(R_PEAK) != pytest.approx(forgetting_first(R_PEAK))
    assert forgetting_max_all(R_PEAK) >= forgetting_max(R_PEAK)


def test_forgetting_at_an_intermediate_step() -> None:
    # k = 3 (1-based): tasks 0 and 1 after row 2, max over rows 0..1.
    assert forgetting_per_task(R_PEAK, k=3) == pytest.approx([0.9 - 0.7, 0.8 - 0.75])


def test_average_incremental_accuracy_and_intransigence() -> None:
    expected = np.mean([0.6, (0.9 + 0.8) / 2, (0.7 + 0.75 + 0.9) / 3, (0.5 + 0.7 + 0.95 + 0.8) / 4])
    assert average_incremental_accuracy(R_PEAK) == pytest.approx(expected)
    assert intransigence(R_DECAY, [1.0, 1.0, 1.0]) == pytest.approx(np.mean([0.1, 0.05, 0.15]))


def test_summarize_names_every_metric() -> None:
    s = summarize(R_PEAK, [0.1] * 4)
    assert s["forgetting_max"] == pytest.approx(0.15) and s["forgetting_first"] == pytest.approx(0.05)
    assert set(s) == {"acc", "avg_incremental_acc", "bwt", "forgetting_max", "forgetting_first",
                      "forgetting_max_all", "fwt_random_init"}
    assert set(summarize([[0.5]])) == {"acc", "avg_incremental_acc"}


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(DataInputError, match="square"):
        average_accuracy(np.zeros((2, 3)))
    with pytest.raises(DataInputError, match="at least 2 tasks"):
        backward_transfer([[0.9]])
    with pytest.raises(DataInputError, match="NaN"):
        forgetting_max([[0.9, np.nan], [0.5, 0.8]])
    with pytest.raises(DataInputError, match="one random-init accuracy per task"):
        forward_transfer(R_DECAY, [0.1, 0.1])
    with pytest.raises(LifelongError):
        forgetting_per_task(R_DECAY, k=1)

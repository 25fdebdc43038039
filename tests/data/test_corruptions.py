"""Tests for the corrupted-digits suite: contract, determinism, severity ordering and calibration."""

from __future__ import annotations

import ast
import dataclasses
import doctest
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the digits data set ships with scikit-learn (the vision extra)")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from lifelong.core.errors import LifelongError  # noqa: E402
from lifelong.data import corruptions  # noqa: E402
from lifelong.data.corruptions import (  # noqa: E402
    CORRUPTIONS,
    EVALUATION_CORRUPTIONS,
    HELD_OUT_CORRUPTIONS,
    SEVERITIES,
    Corruption,
    corrupt,
    corruption_grid,
)

ALL_KINDS = sorted(CORRUPTIONS)
# Kinds that use no randomness at all; every other kind must respond to the seed.
DETERMINISTIC_KINDS = {
    "defocus_blur",
    "gaussian_blur",
    "zoom_blur",
    "contrast",
    "brightness",
    "gamma",
    "pixelate",
    "quantization",
}
RANDOM_KINDS = sorted(set(ALL_KINDS) - DETERMINISTIC_KINDS)
N_TRAIN = 1000


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target


@pytest.fixture(scope="module")
def small_batch(digits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    images, _ = digits
    return images[N_TRAIN : N_TRAIN + 64]


@pytest.fixture(scope="module")
def classifier(digits: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    images, labels = digits
    return LogisticRegression(max_iter=2000).fit(images[:N_TRAIN].reshape(N_TRAIN, -1), labels[:N_TRAIN])


def _accuracy(model: LogisticRegression, images: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(model.score(images.reshape(len(images), -1), labels))


@pytest.fixture(scope="module")
def calibration(
    digits: tuple[np.ndarray, np.ndarray], classifier: LogisticRegression
) -> tuple[float, dict[str, list[float]]]:
    """Clean accuracy and per-severity accuracy on the 797 held-back digits, for every kind."""
    images, labels = digits
    test_x, test_y = images[N_TRAIN:], labels[N_TRAIN:]
    clean = _accuracy(classifier, test_x, test_y)
    table = {
        kind: [_accuracy(classifier, corrupt(test_x, kind, s, seed=0), test_y) for s in SEVERITIES]
        for kind in ALL_KINDS
    }
    return clean, table


# --- registry -------------------------------------------------------------------------------------


def test_sets_are_disjoint_and_large_enough() -> None:
    assert len(EVALUATION_CORRUPTIONS) >= 12
    assert 3 <= len(HELD_OUT_CORRUPTIONS) <= 4
    assert set(EVALUATION_CORRUPTIONS).isdisjoint(HELD_OUT_CORRUPTIONS)
    assert len(set(EVALUATION_CORRUPTIONS)) == len(EVALUATION_CORRUPTIONS)
    assert set(EVALUATION_CORRUPTIONS) | set(HELD_OUT_CORRUPTIONS) <= set(CORRUPTIONS)


def test_required_evaluation_kinds_are_present() -> None:
    required = {
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "motion_blur",
        "contrast",
        "brightness",
        "pixelate",
        "elastic_transform",
        "shift",
        "occlusion",
        "quantization",
    }
    assert required <= set(EVALUATION_CORRUPTIONS)


def test_registry_records_are_consistent_and_frozen() -> None:
    assert SEVERITIES == (1, 2, 3, 4, 5)
    for name, record in CORRUPTIONS.items():
        assert isinstance(record, Corruption)
        assert record.name == name
        assert record.family in {"noise", "blur", "digital", "geometric", "occlusion"}
        assert record.description and callable(record.fn)
    with pytest.raises(dataclasses.FrozenInstanceError):
        CORRUPTIONS["fog"].name = "mist"  # type: ignore[misc]


def test_every_deterministic_kind_is_registered() -> None:
    # Guards the test's own bookkeeping: a renamed kind must not silently drop out of RANDOM_KINDS.
    assert DETERMINISTIC_KINDS <= set(CORRUPTIONS)


# --- output contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_output_keeps_shape_dtype_and_range(small_batch: np.ndarray, kind: str, severity: int) -> None:
    out = corrupt(small_batch, kind, severity, seed=0)
    assert out.shape == small_batch.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_input_is_not_mutated_and_result_is_a_new_array(small_batch: np.ndarray, kind: str) -> None:
    images = small_batch.copy()
    before = images.copy()
    out = corrupt(images, kind, 5, seed=0)
    np.testing.assert_array_equal(images, before)
    assert not np.shares_memory(out, images)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_odd_sizes_and_empty_batches_work(kind: str) -> None:
    rng = np.random.default_rng(0)
    for shape in [(0, 8, 8), (1, 8, 8), (2, 12, 9)]:
        images = rng.random(shape)
        out = corrupt(images, kind, 3, seed=1)
        assert out.shape == shape and out.dtype == np.float32


def test_integer_images_in_range_are_accepted() -> None:
    out = corrupt(np.ones((2, 8, 8), dtype=np.int64), "contrast", 2)
    assert out.dtype == np.float32


# --- determinism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_same_seed_gives_identical_output(small_batch: np.ndarray, kind: str) -> None:
    np.testing.assert_array_equal(
        corrupt(small_batch, kind, 3, seed=5), corrupt(small_batch, kind, 3, seed=5)
    )


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_different_seeds_give_different_output(small_batch: np.ndarray, kind: str) -> None:
    assert not np.array_equal(corrupt(small_batch, kind, 3, seed=0), corrupt(small_batch, kind, 3, seed=1))


@pytest.mark.parametrize("kind", sorted(DETERMINISTIC_KINDS))
def test_deterministic_kinds_ignore_the_seed(small_batch: np.ndarray, kind: str) -> None:
    np.testing.assert_array_equal(
        corrupt(small_batch, kind, 3, seed=0), corrupt(small_batch, kind, 3, seed=1)
    )


def test_images_in_a_batch_get_independent_draws(small_batch: np.ndarray) -> None:
    same = np.repeat(small_batch[:1], 2, axis=0)
    out = corrupt(same, "gaussian_noise", 2, seed=0)
    assert not np.array_equal(out[0], out[1])


def test_output_does_not_depend_on_the_process_hash_seed(small_batch: np.ndarray) -> None:
    # hash() of a str changes with PYTHONHASHSEED; the seed derivation must not use it.
    code = (
        "import numpy as np, sys; from lifelong.data.corruptions import corrupt; "
        "x = np.linspace(0, 1, 128).reshape(2, 8, 8); "
        "sys.stdout.write(corrupt(x, 'impulse_noise', 4, seed=3).tobytes().hex())"
    )
    src = os.path.dirname(os.path.dirname(os.path.dirname(inspect.getfile(corruptions))))
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": src}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(result.stdout)
    here = corrupt(np.linspace(0, 1, 128).reshape(2, 8, 8), "impulse_noise", 4, seed=3).tobytes().hex()
    assert outputs[0] == outputs[1] == here


# --- severity ordering and calibration ------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_distance_from_clean_grows_with_severity(digits: tuple[np.ndarray, np.ndarray], kind: str) -> None:
    images = digits[0][N_TRAIN : N_TRAIN + 300]
    distances = [float(np.abs(corrupt(images, kind, s, seed=0) - images).mean()) for s in SEVERITIES]
    for milder, harsher in zip(distances, distances[1:], strict=False):
        assert harsher >= milder - 0.005, f"{kind}: mean |corrupt - clean| by severity {distances}"


@pytest.mark.parametrize("kind", EVALUATION_CORRUPTIONS)
def test_severity_5_costs_at_least_10_points_of_accuracy(
    calibration: tuple[float, dict[str, list[float]]], kind: str
) -> None:
    clean, table = calibration
    assert clean > 90.0, f"the reference classifier itself is off: clean accuracy {clean:.1f}%"
    assert table[kind][-1] <= clean - 10.0, f"{kind}: clean {clean:.1f}%, by severity {table[kind]}"


@pytest.mark.parametrize("kind", EVALUATION_CORRUPTIONS)
def test_severity_5_is_hard_but_not_destroyed(
    calibration: tuple[float, dict[str, list[float]]], kind: str
) -> None:
    # 10% is chance on ten classes; a corruption that reaches it measures nothing about adaptation.
    _, table = calibration
    assert table[kind][-1] >= 15.0, f"{kind}: by severity {table[kind]}"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_accuracy_does_not_rise_with_severity(
    calibration: tuple[float, dict[str, list[float]]], kind: str
) -> None:
    clean, table = calibration
    accuracies = [clean, *table[kind]]
    for milder, harsher in zip(accuracies, accuracies[1:], strict=False):
        assert harsher <= milder + 2.0, f"{kind}: clean then by severity {accuracies}"


# --- grid -----------------------------------------------------------------------------------------


def test_grid_stacks_corrupt_over_kinds_and_severities(small_batch: np.ndarray) -> None:
    images = small_batch[:5]
    grid = corruption_grid(images, ["shift", "contrast"], severities=(2, 4), seed=9)
    assert grid.shape == (2, 2, 5, 8, 8) and grid.dtype == np.float32
    np.testing.assert_array_equal(grid[0, 1], corrupt(images, "shift", 4, seed=9))
    np.testing.assert_array_equal(grid[1, 0], corrupt(images, "contrast", 2, seed=9))


def test_grid_rejects_a_bare_kind_string(small_batch: np.ndarray) -> None:
    with pytest.raises(ValueError, match="sequence of names"):
        corruption_grid(small_batch, "shift")


def test_grid_checks_arguments_before_work(small_batch: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown corruption kind 'nope'"):
        corruption_grid(small_batch, ["shift", "nope"])


# --- input validation -----------------------------------------------------------------------------

_GOOD = np.zeros((2, 8, 8), dtype=np.float32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "snow"}, r"unknown corruption kind 'snow'; valid kinds are: .*gaussian_noise"),
        ({"severity": 0}, r"severity must be an int in 1\.\.5, got 0"),
        ({"severity": 6}, r"severity must be an int in 1\.\.5, got 6"),
        ({"severity": 2.0}, r"severity must be an int in 1\.\.5, got 2\.0"),
        ({"severity": True}, r"severity must be an int in 1\.\.5"),
        ({"seed": -1}, r"seed must be a non-negative int"),
        ({"images": np.zeros((8, 8))}, r"3-D array \(N, H, W\).*pass images\[None\] for a single image"),
        ({"images": np.zeros((1, 1, 8, 8))}, r"3-D array \(N, H, W\), got shape \(1, 1, 8, 8\)"),
        ({"images": np.full((1, 8, 8), 16.0)}, r"values must lie in \[0, 1\].*divide .*digits.* by 16"),
        ({"images": np.full((1, 8, 8), -0.5)}, r"values must lie in \[0, 1\]"),
        ({"images": np.full((1, 8, 8), np.nan)}, r"NaN or Inf"),
        ({"images": np.full((1, 8, 8), np.inf)}, r"NaN or Inf"),
        ({"images": np.zeros((1, 8, 8), dtype=bool)}, r"real numeric array, got dtype bool"),
        ({"images": np.zeros((1, 8, 8), dtype=complex)}, r"real numeric array"),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_problem(kwargs: dict, message: str) -> None:
    args = {"images": _GOOD, "kind": "gaussian_noise", "severity": 1, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        corrupt(**args)


def test_values_within_tolerance_of_the_range_are_accepted() -> None:
    images = np.full((1, 8, 8), 1.0 + 5e-7)
    assert corrupt(images, "contrast", 1).max() <= 1.0


def test_input_errors_are_lifelong_errors() -> None:
    with pytest.raises(LifelongError):
        corrupt(_GOOD, "snow", 1)


# --- documentation --------------------------------------------------------------------------------


def test_public_constants_have_docstrings_whose_examples_pass() -> None:
    # doctest only finds docstrings on modules, classes and functions; the attribute docstrings of
    # the public constants (read by Sphinx) are extracted from the source and run here instead.
    tree = ast.parse(inspect.getsource(corruptions))
    found: dict[str, str] = {}
    for node, following in zip(tree.body, tree.body[1:], strict=False):
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        is_docstring = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if isinstance(target, ast.Name) and target.id in corruptions.__all__ and is_docstring:
            found[target.id] = following.value.value
    assert set(found) == {"SEVERITIES", "CORRUPTIONS", "EVALUATION_CORRUPTIONS", "HELD_OUT_CORRUPTIONS"}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for name, text in found.items():
        assert ">>>" in text, f"{name} has no example"
        test = doctest.DocTestParser().get_doctest(text, vars(corruptions).copy(), name, None, 0)
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_every_public_callable_has_a_docstring_example() -> None:
    for obj in (Corruption, corrupt, corruption_grid, corruptions):
        assert obj.__doc__ and ">>>" in obj.__doc__, obj

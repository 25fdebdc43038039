"""Evaluation suites for classifiers: labelled items the gate scores champion and candidate on.

>>> import numpy as np, torch
>>> suite = classifier_suite("tiny", np.zeros((4, 8, 8), np.float32), np.array([0, 1, 0, 1]))
>>> suite.score(lambda x: torch.tensor([[1.0, 0.0]]).repeat(len(x), 1))
[1.0, 0.0, 1.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from lifelong.control.gate import Suite
from lifelong.core.hashing import sha256_hex


def classifier_suite(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    ids: Sequence[str] | None = None,
    batch_size: int = 64,
) -> Suite:
    """A suite whose per-item score is 1 when a classifier's argmax equals the label, else 0.

    The system under test is any callable from a batch of inputs to logits. Items are scored in fixed
    batches so that systems which normalise with batch statistics see the same batches on both sides.
    """
    if len(x) != len(y):
        raise ValueError(f"suite {name!r}: {len(x)} inputs but {len(y)} labels; give one label per input")
    if len(x) == 0:
        raise ValueError(f"suite {name!r} is empty; a gate needs at least one labelled item")
    item_ids = tuple(str(i) for i in (ids if ids is not None else range(len(y))))
    content = sha256_hex(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(y).tobytes() + b"argmax-accuracy")
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))

    def score(system: Callable[[torch.Tensor], torch.Tensor]) -> list[float]:
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(yt), batch_size):
                pred = system(xt[start : start + batch_size]).argmax(1)
                out.extend((pred == yt[start : start + batch_size]).float().tolist())
        return out

    return Suite(name, item_ids, score, content)

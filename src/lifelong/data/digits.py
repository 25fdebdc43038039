"""scikit-learn's bundled handwritten digits (1797 real 8x8 images, 10 classes) with fixed splits.

>>> d = load_digits_splits(seed=0)
>>> d.train.x.shape[1:], d.train.x.dtype, len(d.train) + len(d.val) + len(d.test)
((8, 8), dtype('float32'), 1797)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Images in [0, 1] of shape (N, 8, 8), integer labels, and stable item ids."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray  # index into sklearn's load_digits order

    def __len__(self) -> int:
        return int(self.y.size)


@dataclass(frozen=True)
class DigitsSplits:
    """Train (fits the source model), val (canaries and hyper-parameter tuning) and test."""

    train: Split
    val: Split
    test: Split


def load_digits_splits(seed: int = 0, train: float = 0.6, val: float = 0.1) -> DigitsSplits:
    """Stratified train/val/test split of the digits, deterministic in ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    ids = np.arange(y.size)
    i_train, i_rest = train_test_split(ids, train_size=train, stratify=y, random_state=seed)
    val_share = val / (1.0 - train)
    i_val, i_test = train_test_split(i_rest, train_size=val_share, stratify=y[i_rest], random_state=seed)

    def take(idx: np.ndarray) -> Split:
        idx = np.sort(idx)
        return Split(x[idx], y[idx], idx)

    return DigitsSplits(take(i_train), take(i_val), take(i_test))

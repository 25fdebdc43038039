"""Experience replay from a reservoir buffer: the simple, strong continual-learning baseline.

Reservoir sampling (Vitter 1985, Algorithm R) keeps a uniform sample of everything seen so far in a
fixed number of slots: the n-th example replaces a random slot with probability capacity / n. This is
Mammoth's ``reservoir`` and Avalanche's ``ReservoirSamplingBuffer``; Chaudhry et al. 2019 ("On Tiny
Episodic Memories in Continual Learning") show that even tiny reservoirs beat most regularisers.

The buffer also records each example's task id, so a task-incremental learner can mask replayed
logits with the right task head, and serves as the alignment / statistics buffer of CLeWI.

>>> import torch
>>> buf = ReservoirBuffer(capacity=4, seed=0)
>>> buf.add(torch.arange(10.).reshape(10, 1), torch.arange(10), task=0)
>>> len(buf), buf.seen
(4, 10)
>>> x, y, t = buf.sample(2)
>>> x.shape, t.tolist()
(torch.Size([2, 1]), [0, 0])
"""

from __future__ import annotations

import numpy as np
import torch

from lifelong.weights.consolidation import ConsolidationError, EmptyBufferError


class ReservoirBuffer:
    """A fixed-capacity uniform sample of a stream of (x, y, task) examples, seeded.

    >>> ReservoirBuffer(8).capacity
    8
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ConsolidationError(f"ReservoirBuffer capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None
        self._t: torch.Tensor | None = None
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, x: torch.Tensor, y: torch.Tensor, task: int | torch.Tensor = 0) -> None:
        """Offer a batch of examples to the reservoir, one by one (Algorithm R).

        >>> b = ReservoirBuffer(2); b.add(torch.zeros(3, 5), torch.zeros(3, dtype=torch.long)); b.x.shape
        torch.Size([2, 5])
        """
        x = x.detach().cpu()
        y = y.detach().cpu().long()
        if len(x) != len(y):
            raise ConsolidationError(f"{len(x)} inputs but {len(y)} labels; give one label per input")
        t = torch.as_tensor(task, dtype=torch.long).expand(len(y)) if torch.as_tensor(task).dim() == 0 else \
            torch.as_tensor(task, dtype=torch.long).cpu()
        if self._x is None:
            self._x = torch.zeros((self.capacity, *x.shape[1:]), dtype=x.dtype)
            self._y = torch.zeros(self.capacity, dtype=torch.long)
            self._t = torch.zeros(self.capacity, dtype=torch.long)
        elif tuple(x.shape[1:]) != tuple(self._x.shape[1:]):
            raise ConsolidationError(
                f"examples of shape {tuple(x.shape[1:])} do not fit a buffer of {tuple(self._x.shape[1:])}"
            )
        assert self._y is not None and self._t is not None
        for i in range(len(y)):
            if self._size < self.capacity:
                slot = self._size
                self._size += 1
            else:
                j = int(self._rng.integers(0, self.seen + 1))  # Mammoth's reservoir(): randint(0, seen + 1)
                slot = j if j < self.capacity else -1
            self.seen += 1
            if slot >= 0:
                self._x[slot], self._y[slot], self._t[slot] = x[i], y[i], t[i]

    def sample(self, n: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``min(n, len(self))`` stored examples drawn without replacement: (x, y, task).

        >>> ReservoirBuffer(3).sample(2)
        Traceback (most recent call last):
        ...
        lifelong.weights.consolidation.EmptyBufferError: cannot sample from an empty replay buffer; add examples first
        """
        if self._size == 0:
            raise EmptyBufferError("cannot sample from an empty replay buffer; add examples first")
        idx = torch.from_numpy(self._rng.choice(self._size, size=min(n, self._size), replace=False))
        assert self._x is not None and self._y is not None and self._t is not None
        return self._x[idx].to(device), self._y[idx].to(device), self._t[idx].to(device)

    @property
    def x(self) -> torch.Tensor:
        """Every stored input (the alignment and BatchNorm-statistics buffer of CLeWI).

        >>> b = ReservoirBuffer(5); b.add(torch.ones(2, 3), torch.tensor([1, 2]), task=4)
        >>> b.x.shape, b.y.tolist(), b.tasks.tolist()
        (torch.Size([2, 3]), [1, 2], [4, 4])
        """
        if self._x is None:
            raise EmptyBufferError("the replay buffer is empty; add examples first")
        return self._x[: self._size]

    @property
    def y(self) -> torch.Tensor:
        """Every stored label (example: :attr:`x`)."""
        if self._y is None:
            raise EmptyBufferError("the replay buffer is empty; add examples first")
        return self._y[: self._size]

    @property
    def tasks(self) -> torch.Tensor:
        """Every stored task id (example: :attr:`x`)."""
        if self._t is None:
            raise EmptyBufferError("the replay buffer is empty; add examples first")
        return self._t[: self._size]

"""ARC tests run torch on one thread: the machine has 2 cores shared with other jobs, and two threads
fighting over them made a 5-step training loop 10-30 times slower than one thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

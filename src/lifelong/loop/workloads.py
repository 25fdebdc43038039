"""Small picklable tasks and sampler factories, importable by every worker process.

Executors ship functions to other processes by module path, so the functions used in tests, doctests
and the ``loop-scale`` benchmark live here rather than in test files.

>>> seeded_draw((3, 0)) == seeded_draw((3, 0))
True
>>> checked_sqrt(9.0)
3.0
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from lifelong.loop.rollouts import ChatSampler, LMSampler


def seeded_draw(item: tuple[int, int]) -> dict[str, Any]:
    """A per-item table row from the item's own seed: ``(seed, index) -> {index, seed, draws}``.

    >>> sorted(seeded_draw((0, 1)))
    ['best', 'draws', 'index', 'seed']
    """
    seed, index = item
    rng = np.random.default_rng([seed, index])
    draws = rng.normal(size=4)
    return {"index": index, "seed": seed, "draws": [round(float(x), 12) for x in draws],
            "best": round(float(draws.max()), 12)}


def checked_sqrt(x: float) -> float:
    """``sqrt`` that raises on negative input (to test per-item error capture).

    >>> checked_sqrt(4.0)
    2.0
    """
    if x < 0:
        raise ValueError(f"negative input {x}")
    return math.sqrt(x)


def sleep_for(seconds: float) -> float:
    """Sleep, then return the time slept (to test deadlines).

    >>> sleep_for(0.0)
    0.0
    """
    time.sleep(seconds)
    return seconds


def scripted_sampler(reply: str = "ok") -> ChatSampler:
    """A sampler that always answers ``reply``.

    >>> scripted_sampler("hi").name
    'chat:scripted'
    """
    from lifelong.models.chat import ScriptedChat

    return ChatSampler(ScriptedChat(lambda _m: reply, name="scripted"))


def tiny_lm_sampler(seed: int = 0, batch_size: int = 8, threads: int | None = 1, hidden: int = 32,
                    layers: int = 4) -> LMSampler:
    """A batched sampler over :meth:`CausalLM.tiny_random` (no files needed); pins torch threads.

    >>> tiny_lm_sampler(threads=None).batch_size
    8
    """
    import torch

    from lifelong.models.lm import CausalLM

    if threads:
        torch.set_num_threads(threads)
    return LMSampler(CausalLM.tiny_random(seed=seed, hidden=hidden, layers=layers), batch_size=batch_size)

"""Seeds derived from names, so a sample's randomness never depends on batching, order or workers.

A seed for (run seed, prompt id, sample index) is a hash of those values, not a position in a shared
random stream: the same rollout gets the same seed whether it runs alone, in a batch of 64, on a local
process pool or on a Ray cluster.

>>> derive_seed(0, "p1", 3) == derive_seed(0, "p1", 3)
True
>>> derive_seed(0, "p1", 3) != derive_seed(0, "p1", 4)
True
>>> 0 <= derive_seed(7, "x") < 2**31
True
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *keys: object) -> int:
    """A 31-bit seed from a base seed and any keys (their ``repr`` is hashed, so types matter:
    ``1`` and ``"1"`` give different seeds).

    >>> derive_seed(0, 1) != derive_seed(0, "1")
    True
    """
    text = repr((int(seed),) + tuple(keys)).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "big") & 0x7FFFFFFF

"""Content hashes and canonical JSON, the basis of content-addressed versions and pinned suites.

>>> canonical_json({"b": 1, "a": [1.0, "x"]})
'{"a":[1.0,"x"],"b":1}'
>>> sha256_hex(b"lifelong")[:12]
'c2e84111817d'
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _reject_non_finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot store the non-finite number {value!r} as JSON; replace it with null")
    return value


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal content always hashes equally.

    Non-finite floats are refused: JSON has no spelling for them, and silently writing ``NaN``
    would make records that other tools cannot read.
    """
    _walk(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _walk(value: Any) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _walk(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _walk(v)
    else:
        _reject_non_finite(value)


def json_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value).encode("utf-8"))

"""An HNSW index (usearch) beside a SQLite store: a cache that can always be rebuilt, never the truth.

sqlite-vec 0.1 searches by brute force (about 1.2 microseconds a vector here, so 120 ms at 100k items),
so large tenants are searched through this graph index instead. The database stays the source of truth:
the index remembers the op sequence number it reflects (its *watermark*) and catches up from the database
by replaying the rows written since, so writes from other processes, crashes between saves and rollbacks
are all handled by one rule. Keys are the items' row ids (never reused). The index holds only
searchable rows (active, not superseded); anything else is filtered exactly in SQL.

>>> import numpy as np
>>> idx = AnnIndex(dim=8)
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((50, 8)).astype(np.float32)
>>> idx.upsert(np.arange(1, 51), x)
>>> keys, sims = idx.search(x[6], 3)
>>> int(keys[0]), len(idx)
(7, 50)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

# HNSW parameters: Chroma's defaults (M = 16, ef_construction = 100, ef_search = 100), so that the
# memory-scale benchmark compares the two stores at equal graph quality and equal search effort.
CONNECTIVITY = 16
EXPANSION_ADD = 100
EXPANSION_SEARCH = 100


def available() -> bool:
    """Whether usearch is installed."""
    try:
        import usearch.index  # noqa: F401
    except ImportError:
        return False
    return True


class AnnIndex:
    """A cosine HNSW graph over unit vectors, with a watermark and atomic save/load. Vectors are kept as
    bfloat16: half the memory of float32, and measured here at 384 dimensions twice as fast to search
    as float16 or float32 (AVX2 without native half floats), with recall@10 within 0.003 of float32."""

    def __init__(self, dim: int, path: str | os.PathLike[str] | None = None, *, dtype: str = "bf16",
                 expansion_search: int = EXPANSION_SEARCH) -> None:
        from usearch.index import Index

        self.dim = dim
        self.path = Path(path) if path is not None else None
        self.watermark = 0
        self.saved_watermark = -1
        self._index: Any = Index(ndim=dim, metric="cos", dtype=dtype, connectivity=CONNECTIVITY,
                                 expansion_add=EXPANSION_ADD, expansion_search=expansion_search)

    def __len__(self) -> int:
        return len(self._index)

    # ------------------------------------------------------------------ updates
    def upsert(self, keys: np.ndarray, vectors: np.ndarray, threads: int = 0) -> None:
        """Insert or replace rows."""
        keys = np.asarray(keys, dtype=np.uint64)
        if not len(keys):
            return
        self.remove(keys)
        self._index.add(keys, np.ascontiguousarray(vectors, dtype=np.float32), threads=threads)

    def remove(self, keys: np.ndarray) -> None:
        """Drop rows that are present (absent ones are ignored)."""
        keys = np.asarray(keys, dtype=np.uint64)
        if not len(keys) or not len(self._index):
            return
        present = keys[np.asarray(self._index.contains(keys), dtype=bool).reshape(-1)]
        if len(present):
            self._index.remove(present)

    # ------------------------------------------------------------------ search
    def search(self, vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` keys, nearest first, with their cosine similarities."""
        if not len(self._index):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        res = self._index.search(np.asarray(vector, dtype=np.float32), min(n, len(self._index)))
        keys = np.asarray(res.keys, dtype=np.int64).reshape(-1)
        dist = np.asarray(res.distances, dtype=np.float32).reshape(-1)
        return keys, 1.0 - dist

    # ------------------------------------------------------------------ persistence
    def save(self) -> None:
        """Write the index and its watermark atomically (index first, so a crash leaves the old pair or a
        newer index with an older watermark, which replay repairs: upserts are idempotent)."""
        if self.path is None or self.saved_watermark == self.watermark:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        self._index.save(str(tmp))
        os.replace(tmp, self.path)
        meta = self.path.with_suffix(".json")
        meta_tmp = meta.with_suffix(".json.tmp")
        meta_tmp.write_text(json.dumps({"watermark": self.watermark, "dim": self.dim, "count": len(self)}))
        os.replace(meta_tmp, meta)
        self.saved_watermark = self.watermark

    @classmethod
    def load(cls, dim: int, path: str | os.PathLike[str], **kw: Any) -> AnnIndex:
        """The saved index at ``path``, or an empty one (watermark 0) when it is missing or unreadable:
        either way it is correct after the caller replays the rows past its watermark."""
        idx = cls(dim, path, **kw)
        p, meta = Path(path), Path(path).with_suffix(".json")
        try:
            info = json.loads(meta.read_text())
            if info.get("dim") != dim or not p.exists():
                return idx
            idx._index.load(str(p))
            if len(idx._index) != info.get("count"):
                return cls(dim, path, **kw)  # index and watermark from different saves: rebuild
            idx.watermark = idx.saved_watermark = int(info["watermark"])
        except (OSError, ValueError, KeyError, RuntimeError):
            return cls(dim, path, **kw)
        return idx

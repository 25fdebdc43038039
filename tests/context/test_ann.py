"""The SQLite backend's HNSW cache: same answers as exact search, persistence, and catching up with
writes from another process, rollbacks and deletions (the database is the truth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lifelong.context import Add, Delete, Supersede, VectorsOnly, open_store

DIM = 16


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ann_matches_exact_and_filters(tmp_path: Path) -> None:
    x = vectors(300)
    path = str(tmp_path / "m.db")
    exact = open_store(path, tenant="exact", create=True, embedder=VectorsOnly(DIM), exact_below=10**9)
    exact.apply([Add(f"item {i}", id=f"i{i}", vector=x[i]) for i in range(300)])
    ann = exact.other("ann", create=True)
    ann.backend.exact_below = 0
    ann.apply([Add(f"item {i}", id=f"i{i}", vector=x[i]) for i in range(300)])
    assert ann.backend.ann_size("ann") == 300 and exact.backend.ann_size("exact") is None
    for q in x[:20]:
        assert [i for i, _ in ann.nearest(q, 5)] == [i for i, _ in exact.nearest(q, 5)]
    ann.apply([Delete(id="i0"), Supersede(id="i1", by="i2")])
    assert ann.backend.ann_size("ann") == 298  # only searchable rows are indexed
    found = [i for i, _ in ann.nearest(x[0], 5)] + [i for i, _ in ann.nearest(x[1], 5)]
    assert "i0" not in found and "i1" not in found
    exact.close()


def test_ann_persists_and_catches_up(tmp_path: Path) -> None:
    x = vectors(200, seed=1)
    path = str(tmp_path / "m.db")
    s = open_store(path, tenant="t", create=True, embedder=VectorsOnly(DIM), exact_below=0)
    s.apply([Add(f"item {i}", id=f"i{i}", vector=x[i]) for i in range(150)])
    s.close()  # saves the index with its watermark
    assert (Path(path + ".ann") / "tenant-1.usearch").exists()
    other = open_store(path, tenant="t", exact_below=0)  # another writer that never loads the index
    other.backend._sync_ann = lambda no, build=True: None  # type: ignore[method-assign]
    other.apply([Add(f"item {i}", id=f"i{i}", vector=x[i]) for i in range(150, 200)])
    other.apply([Delete(id="i3", hard=True)])
    other.close()
    again = open_store(path, tenant="t", exact_below=0)
    assert again.backend.ann_size("t") == 199  # loaded from disk, then replayed from the database
    assert again.nearest(x[170], 1)[0][0] == "i170"
    assert all(i != "i3" for i, _ in again.nearest(x[3], 10))
    again.close()

"""``lifelong bench memory-scale``: the memory store against Chroma on the same vectors, at 10k, 100k
and 1M items.

Protocol:

1. Data: seeded synthetic unit vectors of dimension 384 (all-MiniLM-L6-v2's), drawn from a fixed mixture
   of 2,000 random centres with isotropic noise (cosine to the centre ~0.7), so that items have real
   neighbourhoods as sentence embeddings do; uniform random vectors have none (every point is nearly
   equidistant), which makes recall@10 meaningless for any approximate index. Queries are fresh draws
   from the same mixture (seed + 1). No text and no model: both systems get the same vectors.
2. Loading: each system is loaded in its own process, so add time and memory are that system's alone,
   into a store on disk: lifelong's SQLite store (``VectorsOnly`` embedder; ADD operations in batches
   of 1,000 through ``MemoryStore.apply``, which validates, versions, logs, and indexes in FTS5,
   sqlite-vec and the HNSW cache) and Chroma's ``PersistentClient`` (``collection.add`` in batches of
   1,000, cosine space). Both HNSW graphs use Chroma's defaults: M = 16, ef_construction = 100,
   ef_search = 100. Add throughput is items per second over the whole load; memory is the process's
   resident set after the load minus before it; disk is the store's folder.
3. Searching: one process opens both stores from disk and times them query by query, alternating
   between the systems (so that other load on the machine falls on both alike), one query at a time
   after 10 warm-up queries: lifelong's ``MemoryStore.nearest(vector, 10)`` and Chroma's
   ``collection.query(query_embeddings=[q], n_results=10, include=["distances"])``, both returning ids
   and similarities. lifelong's full hybrid ``search(vector=...)`` (exact re-scoring of the candidates,
   recency and utility) is timed on a quarter of the queries, for information.
4. Recall@10 of each system against exact search (numpy, float64 dot products) over the same queries.

Targets (issue 5, section 3): search p50 at 100k items below 10 ms; lifelong's search p50 at most
Chroma's at every size.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.bench.common import Progress, Target, quiet_from_env, save_figure, write_results

NAME = "memory-scale"
DIM = 384
CENTRES = 2000
NOISE = 0.05  # per dimension: |noise| ~ 0.05 * sqrt(384) ~ 1, so cosine to the centre ~ 0.7
BATCH = 1000
WARMUP = 10
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 5_000)
SYSTEMS = ("lifelong", "chroma")


def make_vectors(n: int, seed: int, *, chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors from the seeded mixture (generated in chunks to bound peak memory).

    >>> x = make_vectors(5, seed=0)
    >>> x.shape, bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5))
    ((5, 384), True)
    """
    centres = np.random.default_rng(12345).standard_normal((CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.integers(0, CENTRES, m)] + NOISE * rng.standard_normal((m, DIM)).astype(np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top(x: np.ndarray, q: np.ndarray, k: int = 10, chunk: int = 200_000) -> np.ndarray:
    """Exact top-k row indices by cosine (rows are unit vectors), float64 accumulation.

    >>> x = make_vectors(50, seed=0); exact_top(x, x[[3, 7]], k=1).ravel().tolist()
    [3, 7]
    """
    best_s = np.full((len(q), 0), -np.inf)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    q64 = q.astype(np.float64)
    for start in range(0, len(x), chunk):
        s = q64 @ x[start : start + chunk].astype(np.float64).T
        idx = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(s, idx, 1)], axis=1)
        best_i = np.concatenate([best_i, idx + start], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def recall_at_k(found: list[list[int]], truth: np.ndarray) -> float:
    """Mean share of the exact top-k that a system returned.

    >>> recall_at_k([[1, 2], [3, 9]], np.array([[1, 2], [3, 4]]))
    0.75
    """
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]))


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _build_lifelong(x: np.ndarray, folder: Path, threads: int) -> dict[str, Any]:
    from lifelong.context import Add, VectorsOnly, open_store

    store = open_store(folder / "memory.db", tenant="bench", create=True, embedder=VectorsOnly(DIM), threads=threads)
    t0 = time.perf_counter()
    for start in range(0, len(x), BATCH):
        store.apply([Add(f"item {i}", id=f"i{i}", vector=x[i]) for i in range(start, min(start + BATCH, len(x)))])
    add_s = time.perf_counter() - t0
    index = "hnsw" if store.backend.ann_size("bench") else "exact"  # type: ignore[attr-defined]
    rss = _rss_mb()
    store.close()  # persists the HNSW cache, as a service would on shutdown
    return {"add_seconds": add_s, "index": index, "rss_after": rss}


def _build_chroma(x: np.ndarray, folder: Path, threads: int) -> dict[str, Any]:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(folder / "chroma"), settings=Settings(anonymized_telemetry=False))
    col = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
    t0 = time.perf_counter()
    for start in range(0, len(x), BATCH):
        end = min(start + BATCH, len(x))
        col.add(ids=[f"i{i}" for i in range(start, end)], embeddings=x[start:end])
    add_s = time.perf_counter() - t0
    config = col.configuration_json.get("hnsw") if hasattr(col, "configuration_json") else None
    return {"add_seconds": add_s, "config": config, "rss_after": _rss_mb()}


def _build(system: str, n: int, seed: int, folder: str, threads: int, conn: Any) -> None:
    """Load one system with ``n`` items in a fresh process: add time and memory are that system's alone."""
    try:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        x = make_vectors(n, seed)
        rss0 = _rss_mb()
        out = (_build_lifelong if system == "lifelong" else _build_chroma)(x, Path(folder), threads)
        out["rss_mb"] = out.pop("rss_after") - rss0
        conn.send(out)
    except BaseException as err:  # report it to the parent rather than dying silently
        conn.send({"error": f"{type(err).__name__}: {err}"})
    finally:
        conn.close()


def _search(folders: dict[str, str], n_queries: int, seed: int, conn: Any) -> None:
    """Open both stores from disk and time their searches query by query, alternating systems, so that
    load on the machine falls on both alike."""
    try:
        import chromadb
        from chromadb.config import Settings

        from lifelong.context import VectorsOnly, open_store

        q = make_vectors(n_queries, seed + 1)
        store = open_store(Path(folders["lifelong"]) / "memory.db", tenant="bench", embedder=VectorsOnly(DIM))
        client = chromadb.PersistentClient(path=str(Path(folders["chroma"]) / "chroma"),
                                           settings=Settings(anonymized_telemetry=False))
        col = client.get_collection("bench")

        def ours(v: np.ndarray) -> list[int]:
            return [int(i[1:]) for i, _ in store.nearest(v, 10)]

        def chroma(v: np.ndarray) -> list[int]:
            res = col.query(query_embeddings=[v], n_results=10, include=["distances"])
            return [int(i[1:]) for i in res["ids"][0]]

        def hybrid(v: np.ndarray) -> Any:
            return store.search(vector=v, k=10)

        fns = {"lifelong": ours, "chroma": chroma, "hybrid": hybrid}
        out: dict[str, dict[str, list[Any]]] = {k: {"times": [], "found": []} for k in fns}
        for v in q[:WARMUP]:
            for fn in fns.values():
                fn(v)
        for i, v in enumerate(q):
            for name, fn in fns.items():
                if name == "hybrid" and i % 4:
                    continue  # the full search path is timed on a quarter of the queries, for information
                t0 = time.perf_counter()
                r = fn(v)
                out[name]["times"].append(time.perf_counter() - t0)
                out[name]["found"].append(r if name != "hybrid" else None)
        store.close()
        conn.send(out)
    except BaseException as err:
        conn.send({"error": f"{type(err).__name__}: {err}"})
    finally:
        conn.close()


def _in_process(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(*args, child))
    proc.start()
    child.close()
    out = parent.recv()
    proc.join()
    if "error" in out:
        raise RuntimeError(f"{target.__name__}{args[:2]} failed: {out['error']}")
    return out


def measure(n: int, seed: int, n_queries: int, threads: int) -> dict[str, dict[str, Any]]:
    """Build both systems at ``n`` items (one process each), then time both searches interleaved."""
    folders = {s: tempfile.mkdtemp(prefix=f"memscale-{s}-") for s in SYSTEMS}
    try:
        raw = {s: _in_process(_build, s, n, seed, folders[s], threads) for s in SYSTEMS}
        for s in SYSTEMS:
            raw[s]["disk_mb"] = _disk_mb(Path(folders[s]))
        timed = _in_process(_search, folders, n_queries, seed)
    finally:
        for f in folders.values():
            shutil.rmtree(f, ignore_errors=True)
    for s in SYSTEMS:
        raw[s].update(timed[s])
    raw["lifelong"]["hybrid_times"] = timed["hybrid"]["times"]
    return raw


def summarise(raw: dict[str, Any], truth: np.ndarray, n: int) -> dict[str, Any]:
    """Throughput, latency percentiles, recall and memory for one (system, size)."""
    ms = np.asarray(raw["times"]) * 1000
    row = {
        "items": n,
        "add_per_s": n / raw["add_seconds"],
        "add_seconds": raw["add_seconds"],
        "search_per_s": len(ms) / (ms.sum() / 1000),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "recall_at_10": recall_at_k(raw["found"], truth),
        "rss_mb": raw["rss_mb"],
        "disk_mb": raw["disk_mb"],
    }
    if raw.get("hybrid_times"):
        hy = np.asarray(raw["hybrid_times"]) * 1000
        row["hybrid_p50_ms"] = float(np.percentile(hy, 50))
        row["hybrid_p99_ms"] = float(np.percentile(hy, 99))
    for key in ("index", "config"):
        if raw.get(key) is not None:
            row[key] = raw[key]
    return row


def make_targets(result: dict[str, Any], sizes: tuple[int, ...]) -> list[Target]:
    """The issue's two targets, computed from the table."""
    rows = result["rows"]
    ours = {r["items"]: r for r in rows if r["system"] == "lifelong"}
    theirs = {r["items"]: r for r in rows if r["system"] == "chroma"}
    p50_100k = ours.get(100_000, {}).get("p50_ms")
    ratios = [ours[n]["p50_ms"] / theirs[n]["p50_ms"] for n in sizes if n in ours and n in theirs]
    worst = max(ratios) if ratios else None
    return [
        Target.check("search p50 at 100k items (ms)", p50_100k, 10.0, "<",
                     note="" if p50_100k is not None else "100k items are not part of this run (quick mode)"),
        Target.check("lifelong p50 / Chroma p50, worst size", worst, 1.0, "<=",
                     note=f"sizes {', '.join(map(str, sizes))}; both on the same vectors, one query at a time"),
    ]


def make_plot(result: dict[str, Any], out: Path) -> str:
    """Latency and add throughput against size, both systems."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for system, style, color in (("lifelong", "o-", "tab:blue"), ("chroma", "s--", "tab:orange")):
        rows = sorted((r for r in result["rows"] if r["system"] == system), key=lambda r: r["items"])
        n = [r["items"] for r in rows]
        axes[0].plot(n, [r["p50_ms"] for r in rows], style, color=color, label=f"{system} p50")
        axes[0].plot(n, [r["p99_ms"] for r in rows], style, color=color, alpha=0.35, label=f"{system} p99")
        axes[1].plot(n, [r["add_per_s"] for r in rows], style, color=color, label=system)
    axes[0].set(xscale="log", yscale="log", xlabel="items", ylabel="search latency (ms)", title="search, k = 10")
    axes[1].set(xscale="log", yscale="log", xlabel="items", ylabel="items added per second", title="add throughput")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, out, f"{NAME}.png")


def render_markdown(result: dict[str, Any], config: dict[str, Any], plot: str) -> str:
    """The results page."""
    lines = [
        f"# {NAME}: the memory store against Chroma",
        "",
        f"Same seeded vectors for both systems: {DIM}-dimensional unit vectors from a mixture of {CENTRES} random "
        f"centres (cosine to the centre ~0.7), queries drawn fresh from the same mixture; {config['queries']} queries "
        "one at a time after 10 warm-up queries, alternating between the two systems in one process. Each system "
        "is loaded in its own process, on disk; both HNSW graphs use M = 16, ef_construction = 100, ef_search = 100. "
        "See the module docstring of `lifelong.bench.memory_scale` for the full protocol.",
        "",
        "| system | items | add/s | search p50 (ms) | search p99 (ms) | searches/s | recall@10 | memory (MB) | disk (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(result["rows"], key=lambda r: (r["items"], r["system"])):
        lines.append(f"| {r['system']} | {r['items']:,} | {r['add_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['search_per_s']:,.0f} | {r['recall_at_10']:.3f} | {r['rss_mb']:,.0f} | {r['disk_mb']:,.0f} |")
    hy = [r for r in result["rows"] if "hybrid_p50_ms" in r]
    if hy:
        lines += ["", "lifelong's full `search(vector=...)` (hybrid scoring, recency and utility re-ranking) on the same "
                  "queries: " + "; ".join(f"{r['items']:,} items p50 {r['hybrid_p50_ms']:.2f} ms, p99 "
                                          f"{r['hybrid_p99_ms']:.2f} ms" for r in sorted(hy, key=lambda r: r["items"]))]
    lines += [
        "",
        f"![latency and throughput]({plot})",
        "",
        "lifelong adds go through the whole operation pipeline (validation, a version row per item, the op log, "
        "FTS5, sqlite-vec, and the HNSW cache that large tenants are searched through); Chroma's through "
        "`collection.add`. Memory is resident-set growth during the load (the store's caches and index); disk is "
        "the store's folder after the load (lifelong's includes the saved HNSW cache).",
    ]
    return "\n".join(lines)


def run(out_dir: str | Path = "docs/results", *, seeds: tuple[int, ...] = (0,), quick: bool = False,
        quiet: bool | None = None, threads: int = 2) -> dict[str, Any]:
    """Run the benchmark and write NAME.md, NAME.json and NAME.png into ``out_dir``."""
    quiet = quiet_from_env(quiet)
    started = time.time()
    sizes = QUICK_SIZES if quick else SIZES
    n_queries = 100 if quick else 300
    seed = seeds[0]
    rows: list[dict[str, Any]] = []
    with Progress(quiet) as progress:
        task = progress.add("systems x sizes", len(sizes) * len(SYSTEMS))
        for n in sizes:
            truth = exact_top(make_vectors(n, seed), make_vectors(n_queries, seed + 1))
            raw = measure(n, seed, n_queries, threads)
            for system in SYSTEMS:
                row = {"system": system, **summarise(raw[system], truth, n)}
                rows.append(row)
                progress.log(f"{system} {n:,}: add {row['add_per_s']:,.0f}/s, p50 {row['p50_ms']:.2f} ms, "
                             f"recall@10 {row['recall_at_10']:.3f}, memory {row['rss_mb']:,.0f} MB")
                progress.advance(task)
    result = {"rows": rows}
    targets = make_targets(result, sizes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot = make_plot(result, out)
    config = {"sizes": list(sizes), "dim": DIM, "centres": CENTRES, "noise_per_dim": NOISE, "queries": n_queries,
              "warmup": WARMUP, "batch": BATCH, "seed": seed, "quick": quick, "threads": threads, "k": 10}
    write_results(NAME, out, markdown=render_markdown(result, config, plot), config=config, table=result,
                  targets=targets, started=started,
                  packages=("numpy", "chromadb", "usearch", "sqlite-vec", "pysqlite3-binary"))
    return {"result": result, "targets": [t.to_dict() for t in targets]}

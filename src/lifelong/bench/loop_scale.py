"""``lifelong bench loop-scale``: what going distributed costs, per workload.

The same three workloads run on five executors: in process (serial), a local process pool with 1 and
2 workers, and Ray tasks with 1 and 2 in flight on a private local cluster (2 CPUs, bound to 127.0.0.1,
started and shut down by the benchmark):

- **LM rollouts**: batched sampling from a small randomly initialised Llama
  (:meth:`~lifelong.models.lm.CausalLM.tiny_random`), 8 requests per task, each worker loading the model
  once (rollouts per second; compute-bound);
- **sandboxed code checks**: :class:`~lifelong.loop.verifiers.CodeTests` on candidate programs, each in
  its own confined interpreter (verified items per second; process-start-bound);
- **tiny tasks**: a few random draws per task, one task per item (tasks per second; pure overhead).

Each cell reports the start-up cost (building the executor and a first call that reaches every worker,
model load included) and the steady throughput (median over repetitions after that). Every executor
must return the same per-item tables for the same seeds; that is the one computed target.

Numbers depend on the machine and on what else runs on it; the load average at the start and end of
the run is recorded next to them.

>>> EXECUTORS
('serial', 'local x1', 'local x2', 'ray x1', 'ray x2')
"""

from __future__ import annotations

import os
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

from lifelong.bench.common import Progress, Target, quiet_from_env, write_results

NAME = "loop-scale"
EXECUTORS = ("serial", "local x1", "local x2", "ray x1", "ray x2")

_CANDIDATES = [
    "```python\ndef add(a, b):\n    return a + b\n```",
    "```python\ndef add(a, b):\n    return a - b\n```",
    "```python\ndef add(a, b):\n    while True:\n        pass\n```",
    "```python\ndef add(a, b):\n    return sum([a, b])\n```",
]


def _lm_factory(hidden: int, layers: int) -> Any:
    from lifelong.loop.workloads import tiny_lm_sampler

    return partial(tiny_lm_sampler, seed=0, batch_size=8, threads=1, hidden=hidden, layers=layers)


def _build(name: str) -> Any:
    from lifelong.loop.executors import LocalExecutor, RayExecutor, SerialExecutor

    if name == "serial":
        return SerialExecutor()
    if name.startswith("local"):
        return LocalExecutor(workers=int(name[-1]))
    return RayExecutor(num_cpus=2, workers=int(name[-1]))


def run(out_dir: str | Path = "docs/results", *, seeds: tuple[int, ...] = (0,), quick: bool = False,
        quiet: bool | None = None, threads: int | None = 2) -> dict[str, Any]:
    """Run the benchmark and write loop-scale.md, loop-scale.json and a plot into ``out_dir``."""
    import torch

    from lifelong.loop.rollouts import SamplingConfig, sample_parallel
    from lifelong.loop.verifiers import CodeTests, Item, score_many
    from lifelong.loop.workloads import scripted_sampler, seeded_draw

    quiet = quiet_from_env(quiet)
    started = time.time()
    torch.set_num_threads(1)  # the in-process baseline uses one core, like one worker
    seed = seeds[0]
    n_prompts, n_samples, max_tokens = (4, 4, 16) if quick else (16, 8, 32)
    hidden, layers = 64, 4
    n_code = 4 if quick else 24
    n_tiny = 64 if quick else 1000
    reps = 1 if quick else 3
    cfg = SamplingConfig(temperature=1.0, max_tokens=max_tokens)
    prompts = {f"p{i}": f"Question {i}: what is {i} + {i}?" for i in range(n_prompts)}
    # Quick mode checks the pipeline only: a scripted backend keeps torch imports out of the workers.
    factory = partial(scripted_sampler, "4") if quick else _lm_factory(hidden, layers)
    code_items = [Item(f"c{i}", tests=("assert add(2, 3) == 5", "assert add(-1, 1) == 0")) for i in range(n_code)]
    code_outputs = [_CANDIDATES[i % len(_CANDIDATES)] for i in range(n_code)]
    verifier = CodeTests(timeout_s=1.0, memory_mb=256)
    tiny_items = [(seed, i) for i in range(n_tiny)]
    load = {"start": list(os.getloadavg())}
    table: dict[str, dict[str, Any]] = {}
    reference: dict[str, Any] = {}
    identical = {"rows": 0, "same": 0}

    def workloads(ex: Any) -> dict[str, tuple[Any, int]]:
        return {
            "lm_rollouts": (lambda: sample_parallel(ex, factory, prompts, n=n_samples, seed=seed, config=cfg, chunk=8),
                            n_prompts * n_samples),
            "code_checks": (lambda: score_many(verifier, code_outputs, code_items, executor=ex, chunksize=2), n_code),
            "tiny_tasks": (lambda: ex.map(seeded_draw, tiny_items), n_tiny),
        }

    # "ray x1" starts the cluster and "ray x2" joins it; the starter shuts it down after both rows ran.
    owners: list[Any] = []
    executors = [e for e in EXECUTORS if not e.startswith("ray") or _ray_installed()]
    with Progress(quiet) as progress:
        task = progress.add("executors x workloads", len(executors) * 3)
        for name in executors:
            t0 = time.perf_counter()
            ex = _build(name)
            built = time.perf_counter() - t0
            row: dict[str, Any] = {"build_seconds": built}
            for wname, (call, count) in workloads(ex).items():
                t1 = time.perf_counter()
                out = call()  # reaches every worker: imports, model load
                warm = time.perf_counter() - t1
                times = []
                for _ in range(reps):
                    t2 = time.perf_counter()
                    out = call()
                    times.append(time.perf_counter() - t2)
                steady = statistics.median(times)
                rows = _rows(wname, out)
                if name == "serial":
                    reference[wname] = rows
                same = sum(a == b for a, b in zip(rows, reference[wname], strict=True))
                identical["rows"] += len(rows)
                identical["same"] += same
                row[wname] = {"items": count, "first_call_seconds": warm, "steady_seconds": steady,
                              "items_per_second": count / steady if steady > 0 else None,
                              "identical_to_serial": same == len(rows),
                              "errors": sum(1 for r in rows if r[-1] not in ("ok", "pass", "fail"))}
                progress.advance(task)
            table[name] = row
            if getattr(ex, "_owns_cluster", False):
                owners.append(ex)
            else:
                ex.close()
        for ex in owners:
            ex.close()
    load["end"] = list(os.getloadavg())
    frac = identical["same"] / identical["rows"] if identical["rows"] else None
    targets = [Target.check("per-item tables identical across all executors for equal seeds (fraction of rows)", frac,
                            1.0, ">=", f"{identical['same']}/{identical['rows']} rows (rollout token ids, verifier "
                                       "scores and statuses, task values)")]
    result = {"executors": table, "load_average": load, "ray_installed": _ray_installed(),
              "overhead_vs_serial": _overheads(table)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(table, out)
    config = {"seeds": [seed], "quick": quick, "reps": reps, "lm": {"prompts": n_prompts, "samples_per_prompt": n_samples,
              "max_tokens": max_tokens, "hidden": hidden, "layers": layers, "batch": 8,
              "backend": "scripted (quick mode)" if quick else "tiny random Llama"},
              "code_checks": n_code, "tiny_tasks": n_tiny, "ray_cluster_cpus": 2, "torch_threads_per_worker": 1,
              "threads": threads}
    write_results(NAME, out, markdown=render_markdown(result, config, plots), config=config, table=result,
                  targets=targets, started=started, packages=("torch", "numpy", "ray", "transformers"))
    return {"result": result, "targets": [t.to_dict() for t in targets]}


def _ray_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _rows(workload: str, out: Any) -> list[tuple[Any, ...]]:
    """Comparable per-item rows (timings excluded), last field a status."""
    if workload == "lm_rollouts":
        return [(r.prompt_id, r.sample, r.seed, r.token_ids, "error" if r.error else "ok") for r in out]
    if workload == "code_checks":
        return [(s.item_id, s.value, s.verifier_hash, s.status) for s in out]
    return [(r.index, repr(r.value), "error" if r.error else "ok") for r in out]


def _overheads(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Throughput of each executor relative to the in-process baseline, per workload."""
    base = table.get("serial", {})
    out: dict[str, dict[str, float | None]] = {}
    for name, row in table.items():
        out[name] = {}
        for w in ("lm_rollouts", "code_checks", "tiny_tasks"):
            a, b = row[w]["items_per_second"], base.get(w, {}).get("items_per_second")
            out[name][w] = a / b if a and b else None
    return out


def make_plots(table: dict[str, dict[str, Any]], out: Path) -> dict[str, str]:
    """Throughput per executor and workload (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(table)
    workloads = ("lm_rollouts", "code_checks", "tiny_tasks")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, w in zip(axes, workloads, strict=True):
        vals = [table[n][w]["items_per_second"] or 0 for n in names]
        colors = {"serial": "#777", "local": "#4c72b0", "ray": "#dd8452"}
        ax.bar(np.arange(len(names)), vals, color=[colors[n.split()[0]] for n in names])
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels(names, rotation=30, fontsize=8)
        ax.set_yscale("log")
        ax.set_title({"lm_rollouts": "LM rollouts / s", "code_checks": "sandboxed code checks / s",
                      "tiny_tasks": "tiny tasks / s"}[w])
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    name = f"{NAME}-throughput.png"
    fig.savefig(out / name, dpi=120)
    plt.close(fig)
    return {"throughput": name}


def render_markdown(r: dict[str, Any], config: dict[str, Any], plots: dict[str, str]) -> str:
    """The results page."""
    lines = ["# Rollouts and verification: local vs Ray", "",
             "Steady throughput (median of repetitions after a warm-up call) and start-up costs: building the executor "
             "(a Ray cluster start for 'ray x1'; 'ray x2' joins it) and the first call of each workload (worker start, "
             "imports, model load). Ray runs a private 2-CPU cluster on "
             "127.0.0.1; 'x1'/'x2' are tasks in flight.", "",
             f"Load average (1, 5, 15 min) at start {r['load_average']['start']}, at end {r['load_average']['end']}: "
             "other jobs on the machine share its cores.", "",
             f"![throughput]({plots['throughput']})", "",
             *([] if r["ray_installed"] else ["Ray is not installed here (`pip install ray`): its rows are missing.", ""]),
             "| executor | build s | LM first call s | LM rollouts/s | code first call s | code checks/s | "
             "tiny first call s | tiny tasks/s | identical |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in r["executors"].items():
        cells = [f"{row['build_seconds']:.1f}"]
        for w in ("lm_rollouts", "code_checks", "tiny_tasks"):
            c = row[w]
            cells += [f"{c['first_call_seconds']:.1f}", f"{c['items_per_second']:.1f}" if c["items_per_second"] else "n/a"]
        same = all(row[w]["identical_to_serial"] for w in ("lm_rollouts", "code_checks", "tiny_tasks"))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if same else '**no**'} |")
    lines += ["", "Throughput relative to in-process (serial):", "", "| executor | LM rollouts | code checks | tiny tasks |",
              "|---|---|---|---|"]
    for name, row in r["overhead_vs_serial"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}x" if v else "n/a" for v in row.values()) + " |")
    lm = config["lm"]
    lines += ["", "## Workloads", "",
              f"- LM rollouts ({lm['backend']}): {lm['prompts']} prompts x {lm['samples_per_prompt']} samples, "
              f"{lm['max_tokens']} new tokens each, temperature 1, from a random Llama (hidden {lm['hidden']}, {lm['layers']} layers), "
              f"batches of {lm['batch']} requests per task; one torch thread per worker.",
              f"- Code checks: {config['code_checks']} programs against 2 tests each, one sandboxed interpreter per "
              "check (1 s limit; one program in four loops forever and times out).",
              f"- Tiny tasks: {config['tiny_tasks']} tasks of a few random draws, one task per item (no batching): "
              "the per-task overhead of each executor.", ""]
    return "\n".join(lines)

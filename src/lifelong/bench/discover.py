"""``lifelong bench discover``: TTT-Discover vs evolution vs best-of-N at the same evaluator budget.

Problem: low-autocorrelation binary sequences (LABS): find s in {-1, +1}^N with the highest merit
factor F = N^2 / (2E), E = sum_k C_k^2. The evaluator is exact and the optimum is known
(:data:`lifelong.loop.problems.LABS_OPTIMAL_ENERGY`), so "best value found" can be read against the
best possible one.

Methods, each given the same number of evaluator calls per run (``budget``) and the same seeds:

- **best-of-N**: N uniformly random sequences (sampling without learning, search or reuse);
- **evolution** (:class:`lifelong.loop.evolve.Evolution`): 4 islands x 4 children per generation,
  score-weighted parent selection with a child-count penalty, top-16 elites per island, ring migration
  of the top 10% every 10 generations, mutation = 1 + Poisson(0.5) random bit flips;
- **TTT-Discover** (:func:`lifelong.loop.discover_loop.ttt_discover`): an MLP edit policy trained at test
  time with entropic leave-one-out advantages (beta solved for KL = ln 2), PUCT start states with lineage
  blocking, 8 groups x 8 rollouts per round, one importance-sampled policy-gradient step per round;
- ablations of TTT-Discover: fixed beta = 2, a mean baseline instead of the entropic advantage, and PUCT
  search with the untrained (uniform) edit policy ("no learning").

Settings were chosen on tuning seeds 100-105 at N = 40, budget 4096 (learning rate 1e-3 / 3e-3 / 1e-2,
islands and flip counts), never on the reported seeds.

Target (issue 6, computed): at equal budget, TTT-Discover or evolution beats best-of-N, paired over
seeds: the lower end of the 95% paired-bootstrap interval of (method - best-of-N) in final merit factor
is above zero for at least one of the two, at each N.

>>> r = one_run(("evolution", 12, 64, 0))
>>> len(r["curve"]), r["best"] == max(r["curve"])
(64, True)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.bench.common import Progress, Target, quiet_from_env, write_results

NAME = "discover"
MAIN = ("best-of-N", "evolution", "ttt-discover")
ABLATIONS = ("ttt-discover fixed beta=2", "ttt-discover mean baseline", "puct search, no learning")


def _evaluate(genome: np.ndarray, seed: int) -> float:
    from lifelong.loop.problems import merit_factor

    return float(merit_factor(genome))


def one_run(job: tuple[str, int, int, int]) -> dict[str, Any]:
    """One (method, N, budget, seed) run; returns the best-so-far curve and the best sequence.
    Module-level so executor workers can import it.

    >>> one_run(("best-of-N", 8, 16, 0))["best_sequence"].count("+") + one_run(("best-of-N", 8, 16, 0))["best_sequence"].count("-")
    8
    """
    import torch

    from lifelong.loop.discover_loop import DiscoverConfig, ttt_discover
    from lifelong.loop.evolve import Evolution
    from lifelong.loop.mutation import OperatorMutator
    from lifelong.loop.problems import flip_mutation, merit_factor, random_sequences

    torch.set_num_threads(1)
    method, n, budget, seed = job
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    if method == "best-of-N":
        seqs = random_sequences(rng, budget, n)
        values = merit_factor(seqs)
        curve = np.maximum.accumulate(values)
        best = seqs[int(np.argmax(values))]
    elif method == "evolution":
        evo = Evolution(list(random_sequences(rng, 4, n)), OperatorMutator(partial(flip_mutation, mean_flips=1.5)),
                        _evaluate, islands=4, children_per_island=4, elite_size=16, migration_interval=10,
                        migration_rate=0.1, seed=seed)
        evo.run(budget=budget)
        curve = np.array(evo.curve)
        best = evo.best().genome
    else:
        kw: dict[str, Any] = {"ttt-discover": {}, "ttt-discover fixed beta=2": {"advantage": "fixed", "beta": 2.0},
                              "ttt-discover mean baseline": {"advantage": "mean"},
                              "puct search, no learning": {"learn": False}}[method]
        res = ttt_discover(merit_factor, n, DiscoverConfig(rounds=10**9, seed=seed, **kw), budget=budget)
        curve = np.array(res.curve)
        best = res.best_state
    if len(curve) != budget:
        raise RuntimeError(f"{method} used {len(curve)} evaluations, not the budget {budget}")
    verified = float(merit_factor(best))  # the reported best is re-scored by the exact evaluator
    return {"method": method, "n": n, "seed": seed, "curve": curve.tolist(), "best": verified,
            "best_sequence": "".join("+" if x > 0 else "-" for x in best), "seconds": time.perf_counter() - t0}


def _paired(gains: np.ndarray, seed: int = 0) -> dict[str, float]:
    from lifelong.control.stats import paired_bootstrap_ci, sign_flip_test

    lo, hi = paired_bootstrap_ci(gains, n_resamples=4000, confidence=0.95, seed=seed)
    return {"mean_gain": float(gains.mean()), "ci_low": lo, "ci_high": hi,
            "p_one_sided": sign_flip_test(gains, n_resamples=4000, seed=seed), "wins": int((gains > 0).sum()),
            "ties": int((gains == 0).sum()), "n": int(gains.size)}


def run(out_dir: str | Path = "docs/results", *, seeds: tuple[int, ...] = tuple(range(10)), quick: bool = False,
        quiet: bool | None = None, threads: int | None = 2) -> dict[str, Any]:
    """Run the benchmark and write discover.md, discover.json and plots into ``out_dir``."""
    from lifelong.loop.executors import LocalExecutor, SerialExecutor
    from lifelong.loop.problems import LABS_OPTIMAL_ENERGY, optimal_merit_factor

    quiet = quiet_from_env(quiet)
    started = time.time()
    sizes = (20,) if quick else (32, 40)
    budget = 384 if quick else 8192
    seeds = tuple(seeds[:2]) if quick else tuple(seeds)
    methods = MAIN + (ABLATIONS[2:] if quick else ABLATIONS)
    checkpoints = [b for b in (64, 128, 256, 512, 1024, 2048, 4096, 8192) if b <= budget]
    jobs = [(m, n, budget, s) for n in sizes for s in seeds for m in methods]
    workers = max(1, threads or 1)
    executor = LocalExecutor(workers=workers) if workers > 1 and not quick else SerialExecutor()
    runs: list[dict[str, Any]] = []
    with Progress(quiet) as progress, executor:
        task = progress.add(f"LABS runs ({len(jobs)}: methods x N x seeds)", len(jobs))
        # Seeds in parallel on worker processes; each run is single-threaded and self-contained.
        for start in range(0, len(jobs), 2 * workers):
            batch = jobs[start : start + 2 * workers]
            for res in executor.map(one_run, batch):
                runs.append(res.unwrap())
                progress.advance(task, 1)
    result = summarise(runs, sizes, seeds, methods, checkpoints, budget)
    result["optimum"] = {str(n): {"energy": LABS_OPTIMAL_ENERGY[n], "merit_factor": optimal_merit_factor(n)} for n in sizes}
    targets = make_targets(result, sizes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(result, sizes, methods, checkpoints, out)
    config = {"seeds": list(seeds), "quick": quick, "sizes": list(sizes), "budget": budget, "checkpoints": checkpoints,
              "methods": list(methods), "workers": workers, "tuning_seeds": [100, 101, 102, 103, 104, 105],
              "evolution": {"islands": 4, "children_per_island": 4, "elite_size": 16, "migration_interval": 10,
                            "migration_rate": 0.1, "mutation": "flip 1 + Poisson(0.5) bits", "initial": 4},
              "ttt_discover": {"groups": 8, "group_size": 8, "lr": 3e-3, "advantage": "adaptive (KL = ln 2)",
                               "puct_c": 1.0, "topk_children": 2, "max_flips": 4, "hidden": 64, "initial": 8}}
    markdown = render_markdown(result, config, plots, sizes, methods, checkpoints)
    write_results(NAME, out, markdown=markdown, config=config, table=result, targets=targets, started=started,
                  packages=("torch", "numpy", "scipy"))
    return {"result": result, "targets": [t.to_dict() for t in targets]}


def summarise(runs: list[dict[str, Any]], sizes: Sequence[int], seeds: Sequence[int], methods: Sequence[str],
              checkpoints: Sequence[int], budget: int) -> dict[str, Any]:
    """Per N and method: best value at each checkpoint (mean, per seed), final values, paired gains."""
    from lifelong.loop.problems import optimal_merit_factor

    by = {(r["method"], r["n"], r["seed"]): r for r in runs}
    out: dict[str, Any] = {"per_n": {}}
    for n in sizes:
        opt = optimal_merit_factor(n)
        table: dict[str, Any] = {}
        for m in methods:
            curves = np.array([by[(m, n, s)]["curve"] for s in seeds])
            at = {str(b): float(curves[:, b - 1].mean()) for b in checkpoints}
            finals = [by[(m, n, s)]["best"] for s in seeds]
            table[m] = {"final_mean": float(np.mean(finals)), "final_per_seed": finals, "at_budget": at,
                        "fraction_of_optimum": float(np.mean(finals) / opt),
                        "optimum_hits": int(sum(abs(f - opt) < 1e-9 for f in finals)),
                        "seconds_mean": float(np.mean([by[(m, n, s)]["seconds"] for s in seeds])),
                        "best_found": max(finals),
                        "best_sequence": max((by[(m, n, s)] for s in seeds), key=lambda r: r["best"])["best_sequence"],
                        "mean_curve": curves.mean(axis=0)[np.unique(np.geomspace(1, budget, 60).astype(int)) - 1].tolist(),
                        "curve_x": np.unique(np.geomspace(1, budget, 60).astype(int)).tolist()}
        base = np.array(table["best-of-N"]["final_per_seed"])
        gains = {}
        for m in methods:
            if m != "best-of-N":
                gains[m] = _paired(np.array(table[m]["final_per_seed"]) - base)
        tvse = _paired(np.array(table["ttt-discover"]["final_per_seed"]) - np.array(table["evolution"]["final_per_seed"]))
        out["per_n"][str(n)] = {"optimum": opt, "methods": table, "gain_vs_best_of_n": gains, "ttt_minus_evolution": tvse}
    return out


def make_targets(r: dict[str, Any], sizes: Sequence[int]) -> list[Target]:
    """At each N: the better lower CI bound of (TTT-Discover - best-of-N) and (evolution - best-of-N) > 0."""
    targets = []
    for n in sizes:
        g = r["per_n"][str(n)]["gain_vs_best_of_n"]
        pick = max(("ttt-discover", "evolution"), key=lambda m: g[m]["ci_low"])
        other = "evolution" if pick == "ttt-discover" else "ttt-discover"
        note = (f"{pick}: gain {g[pick]['mean_gain']:+.3f} merit factor, 95% CI [{g[pick]['ci_low']:+.3f}, "
                f"{g[pick]['ci_high']:+.3f}], p={g[pick]['p_one_sided']:.3g}, {g[pick]['wins']}/{g[pick]['n']} seeds won; "
                f"{other}: {g[other]['mean_gain']:+.3f} [{g[other]['ci_low']:+.3f}, {g[other]['ci_high']:+.3f}]")
        targets.append(Target.check(f"N={n}: TTT-Discover or evolution minus best-of-N at equal budget, merit factor "
                                    "(lower 95% CI bound, paired over seeds)", g[pick]["ci_low"], 0.0, ">", note))
    return targets


def make_plots(r: dict[str, Any], sizes: Sequence[int], methods: Sequence[str], checkpoints: Sequence[int],
               out: Path) -> dict[str, str]:
    """Best merit factor found against evaluator calls, one panel per N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sizes), figsize=(6.2 * len(sizes), 4.2), squeeze=False)
    for ax, n in zip(axes[0], sizes, strict=True):
        block = r["per_n"][str(n)]
        for m in methods:
            row = block["methods"][m]
            ax.plot(row["curve_x"], row["mean_curve"], label=m, linestyle="-" if m in MAIN else "--")
        ax.axhline(block["optimum"], color="#444", linewidth=0.8, linestyle=":", label="known optimum")
        ax.set_xscale("log")
        ax.set_xlabel("evaluator calls")
        ax.set_ylabel("best merit factor found (mean over seeds)")
        ax.set_title(f"LABS, N = {n}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    name = f"{NAME}-best-vs-budget.png"
    fig.savefig(out / name, dpi=120)
    plt.close(fig)
    return {"curves": name}


def render_markdown(r: dict[str, Any], config: dict[str, Any], plots: dict[str, str], sizes: Sequence[int],
                    methods: Sequence[str], checkpoints: Sequence[int]) -> str:
    """The results page."""
    lines = [
        "# TTT-Discover vs evolution vs best-of-N (LABS)",
        "",
        "Maximise the merit factor of a binary sequence of length N (low-autocorrelation binary sequences), "
        "exact evaluator, known optimum. Every method gets the same number of evaluator calls per run "
        f"(budget {config['budget']}) on seeds {config['seeds']}. Values are the best merit factor found, "
        "re-scored by the evaluator; mean over seeds.",
        "",
        f"![best vs budget]({plots['curves']})",
        "",
    ]
    for n in sizes:
        block = r["per_n"][str(n)]
        lines += [f"## N = {n} (optimum {block['optimum']:.3f})", "",
                  "| method | " + " | ".join(f"@{b}" for b in checkpoints) + " | % of optimum | optimum hits | s/run |",
                  "|---|" + "---|" * (len(checkpoints) + 3)]
        for m in methods:
            row = block["methods"][m]
            cells = " | ".join(f"{row['at_budget'][str(b)]:.3f}" for b in checkpoints)
            lines.append(f"| {m} | {cells} | {100 * row['fraction_of_optimum']:.1f} | {row['optimum_hits']}/"
                         f"{len(row['final_per_seed'])} | {row['seconds_mean']:.1f} |")
        lines += ["", "Paired over seeds, final budget (gain in merit factor, 95% paired-bootstrap interval, one-sided "
                  "sign-flip p):", "", "| comparison | mean gain | 95% CI | p | seeds won |", "|---|---|---|---|---|"]
        for m, g in block["gain_vs_best_of_n"].items():
            lines.append(f"| {m} - best-of-N | {g['mean_gain']:+.3f} | [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}] | "
                         f"{g['p_one_sided']:.3g} | {g['wins']}/{g['n']} |")
        t = block["ttt_minus_evolution"]
        lines += [f"| ttt-discover - evolution | {t['mean_gain']:+.3f} | [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] | "
                  f"{t['p_one_sided']:.3g} | {t['wins']}/{t['n']} |", ""]
        best_m = max(methods, key=lambda m: block["methods"][m]["best_found"])
        lines += [f"Best sequence found at N = {n}: `{block['methods'][best_m]['best_sequence']}` "
                  f"(merit factor {block['methods'][best_m]['best_found']:.3f}, {best_m}).", ""]
    lines += [
        "## How to read this",
        "",
        "- The TTT-Discover here is the paper's loop at toy scale: the policy is a small MLP proposing bit-flip "
        "edits, not a LoRA on a language model writing programs; what carries over is the objective (entropic "
        "advantages, adaptive beta), the start-state reuse (PUCT with lineage blocking) and the test-time "
        "policy-gradient updates. The ablations separate the parts: 'puct search, no learning' keeps PUCT and "
        "drops the updates.",
        "- Best-of-N samples whole sequences uniformly: the baseline the paper compares against (sampling the "
        "base model N times); evolution and TTT-Discover both reuse good states, which is where their gain comes from.",
        "- Settings were tuned on seeds 100-105 only (see the module docstring).",
    ]
    return "\n".join(lines)

"""``lifelong bench ttt-digits``: test-time adaptation on corrupted handwritten digits.

Protocol (CIFAR-10-C style, on scikit-learn's real 8x8 digits):

1. Source models per seed, trained on the clean train split: a GroupNorm CNN jointly trained with a
   rotation head (for rotation TTT and SAR), and a BatchNorm CNN (for BN-adapt, Tent, EATA).
2. Learning rates are tuned once, on the *held-out* corruptions (never on the reported ones), at
   severity 5 with seed 0, as Tent's authors advise (tent #4).
3. Every method meets every (corruption, severity) stream from a fresh copy of the source model,
   batch 64, shuffled once, predictions scored prequentially (each batch predicted before or as the
   method adapts on it, as each reference method does).
4. The failure cases the field knows, at severity 5: batch size 1 (learning rates scaled as SAR's
   protocol does, (0.00025/64) * bs * 2 below 32), label-sorted streams (SAR's "label shifts"), and a
   long mixed stream of every corruption, seen twice, where periodic reset (RDumb) is the baseline.

Targets (issue: foundation): at severity 5, mean accuracy over corruptions of TTT-Online and of Tent
each at least 5 points above the unadapted model; the filtered/reset method (SAR, on the GroupNorm
model that its authors recommend for these settings) never more than 1 point below the unadapted
model on any corruption in any setting.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong.bench.common import Progress, Target, quiet_from_env, torch_threads, write_results
from lifelong.control.budgets import Budget
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger
from lifelong.control.resets import Periodic
from lifelong.data.corruptions import EVALUATION_CORRUPTIONS, HELD_OUT_CORRUPTIONS, corrupt
from lifelong.data.digits import DigitsSplits, load_digits_splits
from lifelong.models.training import pretrained_digits_cnn
from lifelong.weights.eata import EATA
from lifelong.weights.norm import BNAdapt
from lifelong.weights.rotation import TTT_PARAMS, RotationTTT, RotationTTTOnline
from lifelong.weights.sar import SAR, SAR_PARAMS
from lifelong.weights.tent import NORM_AFFINE, Tent
from lifelong.weights.tta import Source, TestTimeAdapter

NAME = "ttt-digits"


@dataclass(frozen=True)
class Method:
    """How to build one method: which source model, which class, which parameters, which lr grid."""

    name: str
    model: str  # "gn" or "bn"
    build: Callable[..., TestTimeAdapter]
    params: tuple[str, ...] = ()
    steps: int = 1
    lr_grid: tuple[float, ...] = ()
    default_lr: float = 1e-3
    batch_scaled_lr: bool = True  # SAR's protocol scales lr with batch size below 32
    extra: dict[str, Any] = field(default_factory=dict)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("source-bn", "bn", Source),
        Method("bn-adapt", "bn", BNAdapt),
        Method("tent", "bn", Tent, NORM_AFFINE, 1, (2.5e-4, 1e-3, 4e-3, 1.6e-2), 1e-3),
        Method("tent-episodic", "bn", lambda m, g, **k: Tent(m, g, episodic=True, **k), NORM_AFFINE, 1, (), 1e-3),
        Method("eata", "bn", EATA, NORM_AFFINE, 1, (2.5e-4, 1e-3, 4e-3, 1.6e-2), 2.5e-4),
        Method("sar-bn", "bn", SAR, SAR_PARAMS, 1, (2.5e-4, 1e-3, 4e-3, 1.6e-2), 2.5e-4),
        Method("source-gn", "gn", Source),
        Method("ttt-online", "gn", RotationTTTOnline, TTT_PARAMS, 1, (1e-3, 5e-3, 2e-2), 1e-3, False),
        Method("ttt", "gn", RotationTTT, TTT_PARAMS, 10, (1e-3, 5e-3), 1e-3, False),
        Method("sar-gn", "gn", SAR, SAR_PARAMS, 1, (2.5e-4, 1e-3, 4e-3, 1.6e-2), 2.5e-4),
    ]
}
SOURCE_OF = {"bn": "source-bn", "gn": "source-gn"}
FILTERED_RESET_METHOD = "sar-gn"


@dataclass
class Context:
    """Everything a run shares: data, source models per seed, tuned learning rates, the ledger."""

    data: DigitsSplits
    models: dict[tuple[int, str], torch.nn.Module]
    ledger: Ledger
    lrs: dict[str, float]
    fisher_x: torch.Tensor
    batch_size: int = 64
    episodic_subsample: int = 120
    counters: dict[str, int] = field(default_factory=lambda: {"steps": 0, "dropped": 0})


def build(ctx: Context, method: Method, seed: int, *, lr: float | None = None, batch_size: int = 64,
          reset: Any = None) -> TestTimeAdapter:
    """A fresh adapter on a fresh copy of the seed's source model, under its own governor."""
    governor = Governor(ctx.ledger, f"bench/{method.name}/seed{seed}")
    kwargs: dict[str, Any] = {"seed": seed}
    if method.params:
        lr = lr if lr is not None else ctx.lrs.get(method.name, method.default_lr)
        if method.batch_scaled_lr and batch_size < 32:
            lr = lr / 64 * batch_size * 2
        kwargs["budget"] = Budget(steps=method.steps, lr=lr, params=method.params)
    if reset is not None:
        kwargs["reset"] = reset
    adapter = method.build(ctx.models[(seed, method.model)], governor, **kwargs)
    if isinstance(adapter, EATA):
        adapter.use_clean_fisher(ctx.fisher_x)
    return adapter


def run_stream(adapter: TestTimeAdapter, x: np.ndarray, y: np.ndarray, batch_size: int,
               curve: list[float] | None = None) -> float:
    """Prequential accuracy of an adapter over a stream (batches in the given order)."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    correct = 0
    for start in range(0, len(yt), batch_size):
        pred = adapter(xt[start : start + batch_size]).argmax(1)
        hits = (pred == yt[start : start + batch_size]).float()
        correct += int(hits.sum())
        if curve is not None:
            curve.append(float(hits.mean()))
    return correct / max(len(yt), 1)


def corrupted_stream(data: DigitsSplits, kind: str, severity: int, seed: int, *, order: str = "shuffled",
                     subsample: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The test split under one corruption, in a seeded order ("shuffled" or "label-sorted")."""
    rng = np.random.default_rng([seed, severity, EVALUATION_CORRUPTIONS.index(kind) if kind in EVALUATION_CORRUPTIONS else 99])
    idx = rng.permutation(len(data.test))
    if subsample is not None:
        idx = np.sort(idx[:subsample])
        idx = rng.permutation(idx)
    if order == "label-sorted":
        idx = idx[np.argsort(data.test.y[idx], kind="stable")]
    x = corrupt(data.test.x[idx], kind, severity, seed=seed)
    return x, data.test.y[idx]


def long_stream(data: DigitsSplits, kinds: list[str], seed: int, passes: int) -> tuple[np.ndarray, np.ndarray]:
    """Every corruption at severity 5, shuffled together, seen ``passes`` times (a fresh order each pass)."""
    xs, ys = zip(*[corrupted_stream(data, k, 5, seed) for k in kinds], strict=True)
    x, y = np.concatenate(xs), np.concatenate(ys)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(y)) for _ in range(passes)])
    return x[order], y[order]


def tune(ctx: Context, names: list[str], progress: Progress, quick: bool) -> dict[str, dict[str, float]]:
    """Mean severity-5 accuracy over the held-out corruptions for each lr in each method's grid."""
    kinds = HELD_OUT_CORRUPTIONS[:1] if quick else HELD_OUT_CORRUPTIONS
    grids = {n: METHODS[n].lr_grid[:2] if quick else METHODS[n].lr_grid for n in names if METHODS[n].lr_grid}
    task = progress.add("tuning lr on held-out corruptions", sum(len(g) for g in grids.values()) * len(kinds))
    scores: dict[str, dict[str, float]] = {}
    for name, grid in grids.items():
        method = METHODS[name]
        scores[name] = {}
        for lr in grid:
            accs = []
            for kind in kinds:
                sub = ctx.episodic_subsample // 2 if name == "ttt" else None
                x, y = corrupted_stream(ctx.data, kind, 5, 0, subsample=sub)
                accs.append(run_stream(build(ctx, method, 0, lr=lr), x, y, ctx.batch_size))
                progress.advance(task)
            scores[name][f"{lr:g}"] = float(np.mean(accs))
        best = max(scores[name].items(), key=lambda kv: kv[1])[0]
        ctx.lrs[name] = float(best)
    for name in names:  # tent-episodic shares Tent's lr (one step: it predicts exactly like BN-adapt)
        if name == "tent-episodic" and "tent" in ctx.lrs:
            ctx.lrs[name] = ctx.lrs["tent"]
    return scores


def gradient_alignment(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, n: int = 100) -> float:
    """Mean cosine, over images, between the gradients of the rotation loss and of the classification
    loss with respect to the shared encoder (the diagnostic of Sun et al.'s ``show_grad.py``: TTT can
    only help where following the rotation gradient also moves the classifier the right way)."""
    from lifelong.models.vision import rotate_batch

    params = [p for name, p in model.named_parameters() if name.startswith("encoder.")]
    cosines = []
    for i in range(min(n, len(y))):
        xi = torch.from_numpy(x[i : i + 1]).repeat(4, 1, 1)
        rot = torch.arange(4)
        ss = torch.nn.functional.cross_entropy(model.rotation_logits(rotate_batch(xi, rot)), rot)
        g_ss = torch.autograd.grad(ss, params)
        ce = torch.nn.functional.cross_entropy(model(torch.from_numpy(x[i : i + 1])), torch.from_numpy(y[i : i + 1]))
        g_ce = torch.autograd.grad(ce, params)
        a = torch.cat([g.flatten() for g in g_ss])
        b = torch.cat([g.flatten() for g in g_ce])
        cosines.append(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
    return float(np.mean(cosines))


def run(out_dir: str | Path = "docs/results", *, seeds: tuple[int, ...] = (0, 1, 2), quick: bool = False,
        quiet: bool | None = None, threads: int | None = 2) -> dict[str, Any]:
    """Run the benchmark and write NAME.md, NAME.json and plots into ``out_dir``."""
    quiet = quiet_from_env(quiet)
    started = time.time()
    torch.manual_seed(0)
    kinds = list(EVALUATION_CORRUPTIONS[:2] if quick else EVALUATION_CORRUPTIONS)
    severities = [5] if quick else [1, 2, 3, 4, 5]
    seeds = seeds[:1] if quick else seeds
    names = list(METHODS)
    with torch_threads(threads), tempfile.TemporaryDirectory() as tmp, Progress(quiet) as progress:
        data = load_digits_splits(seed=0)
        ledger = Ledger.open(Path(tmp) / "ledger.db")
        models: dict[tuple[int, str], torch.nn.Module] = {}
        mtask = progress.add("source models", 2 * len(seeds))
        for seed in seeds:
            models[(seed, "gn")] = pretrained_digits_cnn(data.train, seed=seed, norm="group", rotation_head=True,
                                                         epochs=4 if quick else 40)
            progress.advance(mtask)
            models[(seed, "bn")] = pretrained_digits_cnn(data.train, seed=seed, norm="batch", epochs=4 if quick else 40)
            progress.advance(mtask)
        ctx = Context(data, models, ledger, {}, torch.from_numpy(data.val.x),
                      episodic_subsample=32 if quick else 120)
        if quick:
            data = DigitsSplits(data.train, data.val, type(data.test)(data.test.x[:96], data.test.y[:96], data.test.ids[:96]))
            ctx.data = data
        tuning = tune(ctx, names, progress, quick)
        progress.log(f"tuned learning rates: {ctx.lrs}")

        # -------------------------------------------------------------- main grid
        acc: dict[str, dict[str, dict[str, list[float]]]] = {n: {k: {} for k in kinds} for n in names}
        jobs = [(n, k, s) for n in names for k in kinds for s in severities if n != "ttt" or s == 5]
        task = progress.add("methods x corruptions x severities", len(jobs) * len(seeds))
        for name, kind, sev in jobs:
            per_seed = []
            for seed in seeds:
                sub = ctx.episodic_subsample if name == "ttt" else None
                x, y = corrupted_stream(data, kind, sev, seed, subsample=sub)
                per_seed.append(run_stream(build(ctx, METHODS[name], seed), x, y, ctx.batch_size))
                progress.advance(task)
            acc[name][kind][str(sev)] = per_seed
        # The source models on the episodic subsample, so TTT is compared on the same images.
        ttt_source = {}
        for kind in kinds:
            ttt_source[kind] = [run_stream(build(ctx, METHODS["source-gn"], s),
                                           *corrupted_stream(data, kind, 5, s, subsample=ctx.episodic_subsample), 64)
                                for s in seeds]
        clean = {n: [run_stream(build(ctx, METHODS[n], s), data.test.x, data.test.y, ctx.batch_size) for s in seeds]
                 for n in names if n != "ttt"}

        progress.log("main grid done")
        # -------------------------------------------------------------- failure cases at severity 5
        failure_methods = ["source-bn", "bn-adapt", "tent", "eata", "sar-bn", "source-gn", "sar-gn"]
        failures: dict[str, dict[str, dict[str, list[float]]]] = {"batch-size-1": {}, "label-sorted": {}}
        task = progress.add("failure cases: batch size 1, label-sorted", 2 * len(failure_methods) * len(kinds) * len(seeds))
        for setting in failures:
            for name in failure_methods:
                failures[setting][name] = {}
                for kind in kinds:
                    vals = []
                    if setting == "batch-size-1" and name.startswith("source"):
                        # An unadapted model in eval mode predicts each image independently of the batch.
                        failures[setting][name][kind] = acc[name][kind]["5"]
                        progress.advance(task, len(seeds))
                        continue
                    for seed in seeds:
                        order = "label-sorted" if setting == "label-sorted" else "shuffled"
                        bs = 1 if setting == "batch-size-1" else ctx.batch_size
                        x, y = corrupted_stream(data, kind, 5, seed, order=order)
                        vals.append(run_stream(build(ctx, METHODS[name], seed, batch_size=bs), x, y, bs))
                        progress.advance(task)
                    failures[setting][name][kind] = vals

        progress.log("failure cases done")
        long_methods = {"source-bn": None, "bn-adapt": None, "tent": None, "tent+rdumb": "tent", "eata": None,
                        "sar-bn": None, "source-gn": None, "sar-gn": None, "ttt-online": None}
        reset_every = 30  # batches; RDumb's 1,000 steps scaled to a stream of ~250 batches
        long_acc: dict[str, list[float]] = {}
        long_curves: dict[str, list[float]] = {}
        task = progress.add("long mixed stream (all corruptions, twice)", len(long_methods) * len(seeds))
        for label, base in long_methods.items():
            method = METHODS[base or label]
            vals = []
            for seed in seeds:
                x, y = long_stream(data, kinds, seed, passes=1 if quick else 2)
                reset = Periodic(reset_every) if label == "tent+rdumb" else None
                curve: list[float] = []
                vals.append(run_stream(build(ctx, method, seed, reset=reset), x, y, ctx.batch_size, curve))
                if seed == seeds[0]:
                    long_curves[label] = curve
                progress.advance(task)
            long_acc[label] = vals
        alignment = {k: float(np.mean([gradient_alignment(models[(s, "gn")], *corrupted_stream(data, k, 5, s))
                                       for s in seeds])) for k in kinds}
        ledger_stats = ledger.stats()
        reset_events = len(ledger.log(types=["reset"]))
        ledger.close()

    result = summarise(acc, ttt_source, clean, failures, long_acc, kinds, severities, seeds)
    result["gradient_alignment"] = alignment
    targets = make_targets(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(result, long_curves, out, kinds)
    config = {
        "seeds": list(seeds), "quick": quick, "batch_size": 64, "corruptions": kinds,
        "held_out_corruptions": list(HELD_OUT_CORRUPTIONS), "severities": severities,
        "tuned_lr": ctx.lrs, "tuning_scores": tuning, "episodic_ttt_subsample": ctx.episodic_subsample,
        "rdumb_reset_every_batches": reset_every, "torch_threads": threads,
        "splits": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
    }
    markdown = render_markdown(result, config, plots, targets, ledger_stats, reset_events)
    write_results(NAME, out, markdown=markdown, config=config, table=result, targets=targets, started=started,
                  extra={"ledger": ledger_stats, "governor_reset_events": reset_events})
    return {"result": result, "targets": [t.to_dict() for t in targets]}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarise(acc, ttt_source, clean, failures, long_acc, kinds, severities, seeds) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Seed-averaged tables, plus per-seed values for the target comparisons."""
    by_severity = {n: {str(s): _mean([_mean(acc[n][k][str(s)]) for k in kinds if str(s) in acc[n][k]])
                       for s in severities} for n in acc}
    sev5 = {n: {k: _mean(acc[n][k]["5"]) for k in kinds} for n in acc}
    sev5_per_seed = {n: [float(np.mean([acc[n][k]["5"][i] for k in kinds])) for i in range(len(seeds))] for n in acc}
    return {
        "accuracy": acc,
        "mean_by_severity": by_severity,
        "severity5_by_corruption": sev5,
        "severity5_mean_per_seed": sev5_per_seed,
        "ttt_episodic_source_on_subsample": {k: _mean(v) for k, v in ttt_source.items()},
        "ttt_episodic_source_mean_per_seed": [float(np.mean([ttt_source[k][i] for k in kinds])) for i in range(len(seeds))],
        "clean": {n: _mean(v) for n, v in clean.items()},
        "failures": {s: {n: {k: _mean(v) for k, v in d.items()} for n, d in f.items()} for s, f in failures.items()},
        "long_mixed": {n: _mean(v) for n, v in long_acc.items()},
        "long_mixed_per_seed": long_acc,
    }


def make_targets(r: dict[str, Any]) -> list[Target]:
    """The issue's three targets, computed from the run."""
    def gain(method: str, source: str) -> tuple[float, list[float]]:
        a, b = r["severity5_mean_per_seed"][method], r["severity5_mean_per_seed"][source]
        diffs = [100 * (x - y) for x, y in zip(a, b, strict=True)]
        return float(np.mean(diffs)), diffs

    ttt, ttt_seeds = gain("ttt-online", "source-gn")
    tent, tent_seeds = gain("tent", "source-bn")
    sar, src = FILTERED_RESET_METHOD, SOURCE_OF["gn"]
    gaps = []
    for kind, v in r["severity5_by_corruption"][sar].items():
        gaps.append(("standard", kind, 100 * (v - r["severity5_by_corruption"][src][kind])))
    for setting, table in r["failures"].items():
        for kind, v in table[sar].items():
            gaps.append((setting, kind, 100 * (v - table[src][kind])))
    gaps.append(("long-mixed", "all", 100 * (r["long_mixed"][sar] - r["long_mixed"][src])))
    worst = min(gaps, key=lambda g: g[2])
    return [
        Target.check("TTT-Online minus unadapted (GN), severity-5 mean accuracy, points", ttt, 5.0, ">=",
                     f"per seed: {', '.join(f'{d:+.1f}' for d in ttt_seeds)}"),
        Target.check("Tent minus unadapted (BN), severity-5 mean accuracy, points", tent, 5.0, ">=",
                     f"per seed: {', '.join(f'{d:+.1f}' for d in tent_seeds)}; Tent minus BN-adapt: "
                     f"{100 * (np.mean(r['severity5_mean_per_seed']['tent']) - np.mean(r['severity5_mean_per_seed']['bn-adapt'])):+.1f}"),
        Target.check("SAR (GN) minus unadapted, worst corruption over all settings, points", worst[2], -1.0, ">=",
                     f"worst case: {worst[0]} / {worst[1]}"),
    ]


def make_plots(r: dict[str, Any], curves: dict[str, list[float]], out: Path, kinds: list[str]) -> dict[str, str]:
    """Accuracy vs severity, per-corruption bars at severity 5, and the long stream over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, row in r["mean_by_severity"].items():
        sev = sorted(row, key=int)
        if len(sev) > 1:
            ax.plot([int(s) for s in sev], [100 * row[s] for s in sev], marker="o", label=name,
                    linestyle="--" if name.startswith("source") else "-")
    ax.set_xlabel("severity")
    ax.set_ylabel("accuracy (%), mean over corruptions and seeds")
    ax.set_title("Test-time adaptation on corrupted digits")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    files["severity"] = f"{NAME}-severity.png"
    fig.tight_layout()
    fig.savefig(out / files["severity"], dpi=120)
    plt.close(fig)

    shown = ["source-bn", "bn-adapt", "tent", "eata", "source-gn", "ttt-online", "sar-gn"]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / len(shown)
    for i, name in enumerate(shown):
        vals = [100 * r["severity5_by_corruption"][name][k] for k in kinds]
        ax.bar(np.arange(len(kinds)) + i * width, vals, width, label=name)
    ax.set_xticks(np.arange(len(kinds)) + 0.4)
    ax.set_xticklabels(kinds, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%) at severity 5")
    ax.legend(fontsize=7, ncol=4)
    files["corruptions"] = f"{NAME}-corruptions.png"
    fig.tight_layout()
    fig.savefig(out / files["corruptions"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, curve in curves.items():
        if curve:
            k = 10
            smooth = np.convolve(curve, np.ones(k) / k, mode="valid")
            ax.plot(100 * smooth, label=name, linestyle="--" if name.startswith("source") else "-")
    ax.set_xlabel("batch (64 images) in the long mixed stream")
    ax.set_ylabel("accuracy (%), 10-batch moving mean")
    ax.set_title("Long mixed stream, seed 0: where periodic reset is the baseline")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    files["long"] = f"{NAME}-long-stream.png"
    fig.tight_layout()
    fig.savefig(out / files["long"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    cos = [r["gradient_alignment"][k] for k in kinds]
    gain = [100 * (r["severity5_by_corruption"]["ttt-online"][k] - r["severity5_by_corruption"]["source-gn"][k]) for k in kinds]
    ax.scatter(cos, gain)
    for c, g, k in zip(cos, gain, kinds, strict=True):
        ax.annotate(k, (c, g), fontsize=6)
    ax.axhline(0, color="#999", linewidth=0.8)
    ax.set_xlabel("cosine(rotation-loss gradient, classification-loss gradient) on the encoder")
    ax.set_ylabel("TTT-Online gain over source (points)")
    files["alignment"] = f"{NAME}-gradient-alignment.png"
    fig.tight_layout()
    fig.savefig(out / files["alignment"], dpi=120)
    plt.close(fig)
    return files


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}"


def render_markdown(r, config, plots, targets, ledger_stats, reset_events) -> str:  # type: ignore[no-untyped-def]
    """The results page."""
    kinds = config["corruptions"]
    sevs = [str(s) for s in config["severities"]]
    lines = [
        f"# {NAME}: test-time adaptation on corrupted digits",
        "",
        "Real handwriting (scikit-learn's 1,797 digits, 8x8), a CIFAR-10-C-style corruption suite "
        f"({len(kinds)} corruptions x {len(sevs)} severities), seeds {config['seeds']}. Accuracy in %, "
        "mean over seeds; every stream starts from a fresh copy of the source model. Learning rates were "
        f"tuned on the held-out corruptions {config['held_out_corruptions']} only: {config['tuned_lr']}.",
        "",
        "## Mean accuracy over corruptions, by severity",
        "",
        "| method | clean | " + " | ".join(f"sev {s}" for s in sevs) + " |",
        "|---|---|" + "---|" * len(sevs),
    ]
    for name, row in r["mean_by_severity"].items():
        clean = r["clean"].get(name, float("nan"))
        lines.append(f"| {name} | {_pct(clean)} | " + " | ".join(_pct(row.get(s, float('nan'))) for s in sevs) + " |")
    lines += [
        "",
        f"`ttt` (standard, episodic: 32 copies, 10 steps, reset per image) is run at severity 5 on a "
        f"{config['episodic_ttt_subsample']}-image subsample per corruption and seed; the unadapted GN model "
        f"scores {_pct(np.mean(list(r['ttt_episodic_source_on_subsample'].values())))} on the same images.",
        "",
        f"![accuracy by severity]({plots['severity']})",
        "",
        "## Severity 5, by corruption",
        "",
        "| method | " + " | ".join(kinds) + " | mean |",
        "|---|" + "---|" * (len(kinds) + 1),
    ]
    for name, row in r["severity5_by_corruption"].items():
        lines.append(f"| {name} | " + " | ".join(_pct(row[k]) for k in kinds) + f" | {_pct(np.mean(list(row.values())))} |")
    lines += ["", f"![severity 5 by corruption]({plots['corruptions']})", ""]
    align = r["gradient_alignment"]
    lines += [
        "## Why rotation TTT does or does not help here",
        "",
        "Sun et al. show TTT helps when the self-supervised gradient is aligned with the classification "
        "gradient on the shared encoder. Mean cosine between the two (100 images per corruption and seed, "
        "severity 5): " + ", ".join(f"{k} {v:+.2f}" for k, v in align.items()) + ".",
        "",
        f"![gradient alignment]({plots['alignment']})",
        "",
        "## Failure cases (severity 5)",
        "",
    ]
    for setting, table in r["failures"].items():
        lines += [f"### {setting}", "", "| method | " + " | ".join(kinds) + " | mean |", "|---|" + "---|" * (len(kinds) + 1)]
        for name, row in table.items():
            lines.append(f"| {name} | " + " | ".join(_pct(row[k]) for k in kinds) + f" | {_pct(np.mean(list(row.values())))} |")
        lines.append("")
    lines += [
        "### long mixed stream",
        "",
        f"All {len(kinds)} corruptions at severity 5, shuffled together and seen twice "
        f"(tent+rdumb resets every {config['rdumb_reset_every_batches']} batches).",
        "",
        "| method | accuracy |",
        "|---|---|",
        *[f"| {n} | {_pct(v)} |" for n, v in r["long_mixed"].items()],
        "",
        f"![long stream]({plots['long']})",
        "",
        "Why SAR (GN) trails the unadapted model here, taken apart variant by variant (learning rate, recovery on, "
        "off or periodic, the precision of the samples its filter keeps): [sar-stream.md](sar-stream.md) "
        "(`lifelong bench sar-stream`).",
        "",
        f"Every adapter ran under a governor on one ledger: {reset_events} reset events recorded "
        f"(SAR's entropy-floor recoveries, periodic resets, dropped non-finite updates); ledger counts {ledger_stats}.",
    ]
    return "\n".join(lines)

"""``lifelong bench self-improve``: STaR and ReST-EM on multi-digit addition, gated every round.

A ~0.8M-parameter character-level transformer is trained on 2,000 hand-written scratchpads for 1- to 3-digit
additions (the base: weak but not hopeless on longer sums). Then three loops improve it from its own
verified samples on a training pool of 1- to 5-digit problems: STaR with rationalization, STaR without
rationalization, and ReST-EM (samples per question, capped). Every round fine-tunes from the base and
its candidate is gated against the champion on held-out problems (exact McNemar on per-item
correctness); the loop stops at the first rejection. A deliberately harmful round (training on
unfiltered samples) is inserted into a separate STaR run and must be rejected.

Targets (issue: closing the loop): at least three accepted rounds with held-out accuracy rising by at
least 10 points in total; the harmful round rejected by the gate.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong.bench.common import Progress, Target, quiet_from_env, torch_threads, write_results
from lifelong.control.gate import Gate
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger
from lifelong.loop.arithmetic import CHARS, sample_problems
from lifelong.loop.charlm import CharTransformer, Vocab, train
from lifelong.loop.star import LoopConfig, SelfImprovementLoop, pass_at_k_scores, seed_data

NAME = "self-improve"


# The base must be "weak but not hopeless": with 300 seed scratchpads it scored 3.8% on the held-out 1-5 digit
# sums (the first full run: every round rejected); with 2,000 it scores 100/87/78/0/0% on 1/2/3/4/5 digits
# (25.5% overall; seed 0, 1,500 steps, greedy), so what a loop can gain lies in
# the 4- and 5-digit sums that only rationalization or lucky samples reach.
FULL = {"seed": 2000, "base_steps": 1500, "pool": 1500, "heldout": 400, "rounds": 5, "loop_steps": 250,
        "d_model": 128, "layers": 4}
QUICK = {"seed": 40, "base_steps": 40, "pool": 40, "heldout": 30, "rounds": 2, "loop_steps": 10,
         "d_model": 32, "layers": 2}  # a pipeline check in seconds; its numbers mean nothing


def build_base(vocab: Vocab, seed: int, n_seed: int, steps: int, d_model: int = 128,
               layers: int = 4) -> tuple[CharTransformer, list]:
    """The base model: trained on ``n_seed`` hand-written scratchpads of 1- to 3-digit sums."""
    seed_problems = sample_problems(n_seed, (1, 3), seed=seed * 10 + 1)
    torch.manual_seed(seed)
    model = CharTransformer(len(vocab), d_model=d_model, layers=layers, heads=4, max_len=96)
    train(model, vocab, seed_data(seed_problems, seed=seed), steps=steps, batch_size=64, lr=2e-3, seed=seed)
    return model, seed_problems


def run(out_dir: str | Path = "docs/results", *, seeds: tuple[int, ...] = (0,), quick: bool = False,
        quiet: bool | None = None, threads: int | None = 2) -> dict[str, Any]:
    """Run the three loops and the harmful-round check; write self-improve.md/.json and a plot."""
    quiet = quiet_from_env(quiet)
    started = time.time()
    seed = seeds[0]
    sizes = dict(QUICK if quick else FULL)
    vocab = Vocab(CHARS)
    with torch_threads(threads), Progress(quiet) as progress, tempfile.TemporaryDirectory() as tmp:
        progress.log("training the base model on seed scratchpads...")
        base, seed_problems = build_base(vocab, seed, sizes["seed"], sizes["base_steps"], sizes["d_model"],
                                         sizes["layers"])
        exclude = {p.id for p in seed_problems}
        heldout = sample_problems(sizes["heldout"], (1, 5), seed=seed * 10 + 2, exclude=exclude)
        pool = sample_problems(sizes["pool"], (1, 5), seed=seed * 10 + 3, exclude=exclude | {p.id for p in heldout})
        ledger = Ledger.open(Path(tmp) / "ledger.db")

        def monitor(champion: CharTransformer, candidate: CharTransformer) -> dict[str, float]:
            probe = heldout[:40]
            return {"pass@8_candidate": pass_at_k_scores(candidate, vocab, probe, n=8, k=8, seed=seed),
                    "pass@8_base": pass_at_k_scores(base, vocab, probe, n=8, k=8, seed=seed)}

        loops: dict[str, dict[str, Any]] = {}
        methods = ["star", "star-no-rationalization", "rest-em"]
        task = progress.add("self-improvement loops", len(methods) + 1)
        for method in methods:
            cfg = LoopConfig(method=method, rounds=sizes["rounds"], base_steps=sizes["loop_steps"])
            gov = Governor(ledger, f"addition/{method}", gate=Gate(alpha=0.05, n_resamples=2000, seed=seed))
            loop = SelfImprovementLoop(base, vocab, pool, heldout, gov, cfg, seed=seed, monitor=monitor)
            loop.run()
            loops[method] = loop.summary()
            progress.log(f"{method}: " + "; ".join(f"r{r.round} {'ACCEPT' if r.accepted else 'reject'} "
                                                   f"{100 * r.candidate_accuracy:.1f}%" for r in loop.reports))
            progress.advance(task)
        cfg = LoopConfig(method="star", rounds=2, base_steps=sizes["loop_steps"])
        gov = Governor(ledger, "addition/star-with-harmful-round", gate=Gate(alpha=0.05, n_resamples=2000, seed=seed))
        harm_loop = SelfImprovementLoop(base, vocab, pool, heldout, gov, cfg, seed=seed)
        harm_loop.run_round(1)
        harmful = harm_loop.run_round(2, harmful=True)
        loops["harmful-check"] = harm_loop.summary()
        progress.advance(task)
        base_acc = float(np.mean(harm_loop.suite.score(base)))
        ledger_counts = ledger.stats()
        ledger.close()

    result = {"base_accuracy": base_acc, "loops": loops, "harmful_round": harmful.__dict__, "sizes": sizes,
              "ledger": ledger_counts}
    targets = make_targets(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot = make_plot(result, out)
    write_results(NAME, out, markdown=render(result, plot), config={"seed": seed, "quick": quick, "sizes": sizes},
                  table=result, targets=targets, started=started)
    return {"result": result, "targets": [t.to_dict() for t in targets]}


def _accepted_gain(summary: dict[str, Any], base_acc: float) -> tuple[int, float]:
    accepted = [r for r in summary["rounds"] if r["accepted"]]
    if not accepted:
        return 0, 0.0
    return len(accepted), 100 * (accepted[-1]["candidate_accuracy"] - base_acc)


def make_targets(r: dict[str, Any]) -> list[Target]:
    """At least three accepted rounds and +10 points for the best loop; the harmful round rejected."""
    best = max(("star", "star-no-rationalization", "rest-em"),
               key=lambda m: _accepted_gain(r["loops"][m], r["base_accuracy"]))
    n, gain = _accepted_gain(r["loops"][best], r["base_accuracy"])
    return [
        Target.check(f"accepted rounds ({best})", n, 3, ">="),
        Target.check(f"held-out accuracy gain over the base after accepted rounds ({best}), points", gain, 10.0, ">="),
        Target.check("harmful (unfiltered) round accepted by the gate (1 = accepted)",
                     float(r["harmful_round"]["accepted"]), 0.0, "<=", r["harmful_round"]["verdict"]),
    ]


def make_plot(r: dict[str, Any], out: Path) -> str:
    """Held-out accuracy round by round; rejected candidates marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method in ("star", "star-no-rationalization", "rest-em"):
        rounds = r["loops"][method]["rounds"]
        xs = [0] + [x["round"] for x in rounds]
        ys = [100 * r["base_accuracy"]] + [100 * x["candidate_accuracy"] for x in rounds]
        line = ax.plot(xs, ys, marker="o", label=method)[0]
        for x in rounds:
            if not x["accepted"] and x["kept"] > 0:  # a round that kept nothing had no candidate to reject
                ax.scatter([x["round"]], [100 * x["candidate_accuracy"]], marker="x", s=80, color=line.get_color())
    ax.set_xlabel("round (x = candidate rejected by the gate)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    name = f"{NAME}-rounds.png"
    fig.savefig(out / name, dpi=120)
    plt.close(fig)
    return name


def _outcome(x: dict[str, Any]) -> str:
    """How a round ended: accepted, rejected by the gate, or no candidate (nothing verified)."""
    if x["accepted"]:
        return "accepted"
    return "no candidate" if x["kept"] == 0 else "rejected"


def render(r: dict[str, Any], plot: str) -> str:
    """The results page."""
    lines = [
        f"# {NAME}: STaR and ReST-EM with a gate every round",
        "",
        f"Base model: {100 * r['base_accuracy']:.1f}% on {r['sizes']['heldout']} held-out 1- to 5-digit additions "
        f"(trained on {r['sizes']['seed']} hand-written 1- to 3-digit scratchpads). Training pool "
        f"{r['sizes']['pool']} problems. Each round fine-tunes the base on that round's kept samples and is gated "
        "against the champion (exact McNemar, alpha 0.05); the loop stops at the first rejection.",
        "",
        "| loop | round | kept | from hints | wrong rationale among kept | candidate | champion | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in ("star", "star-no-rationalization", "rest-em", "harmful-check"):
        for x in r["loops"][method]["rounds"]:
            lines.append(
                f"| {method}{' (unfiltered)' if x['harmful'] else ''} | {x['round']} | {x['kept']} | "
                f"{x['kept_from_rationalization']} | {100 * x['wrong_rationale_share']:.1f}% | "
                f"{100 * x['candidate_accuracy']:.1f}% | {100 * x['champion_accuracy']:.1f}% | "
                f"{_outcome(x)}: {x['verdict']} |")
    lines += ["", f"![accuracy by round]({plot})", "", "Monitors per round (pass@8 on 40 held-out problems, "
              "candidate against the base; the base winning at large k would signal collapse):", ""]
    for method in ("star", "star-no-rationalization", "rest-em"):
        for x in r["loops"][method]["rounds"]:
            if x["monitors"]:
                lines.append(f"- {method} round {x['round']}: " + ", ".join(f"{k} {v:.2f}" for k, v in x["monitors"].items()))
    return "\n".join(lines)

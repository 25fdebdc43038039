"""The main job: a digit classifier that adapts to a shifting stream, under the controls.

A stream of batches of real handwritten digits passes through a sequence of corruptions (a clean
start, then noise, then blur, ...). The deployed model normalises with each batch's statistics and Tent
adapts it continuously inside a *session scope* that starts from the live (champion) version. The
governor watches the mean prediction entropy with river's Page-Hinkley detector; when it detects a
shift it resets the session to the champion, so what was learnt for the old conditions does not leak
into the new ones. Some batches into each new session the governor asks the gate whether the session's
weights beat the champion on the labelled feedback collected in that session, without hurting a clean
canary suite; the verdict, accepted or not, goes to the ledger, and an accepted change becomes the new
champion. Every trigger, reset and verdict is recorded; the run ends with the ledger summary and an HTML
report with plots.

>>> cfg = DemoConfig.quick()
>>> cfg.segments[0].corruption
'clean'
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifelong.bench.common import Progress, quiet_from_env, torch_threads
from lifelong.control.budgets import Budget
from lifelong.control.gate import Gate
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger
from lifelong.control.resets import OnDrift
from lifelong.control.triggers import DriftTrigger
from lifelong.data.corruptions import corrupt
from lifelong.data.digits import load_digits_splits
from lifelong.models.training import pretrained_digits_cnn
from lifelong.weights.evaluation import classifier_suite
from lifelong.weights.tent import NORM_AFFINE, Tent
from lifelong.weights.tta import Source

REF = "digits/global"


@dataclass(frozen=True)
class Segment:
    """A stretch of the stream under one corruption (``clean`` = none)."""

    corruption: str
    severity: int
    batches: int


@dataclass
class DemoConfig:
    """What the demo streams and how the governor is set up."""

    segments: list[Segment] = field(
        default_factory=lambda: [
            Segment("clean", 0, 20),
            Segment("gaussian_noise", 4, 40),
            Segment("defocus_blur", 4, 40),
            Segment("clean", 0, 20),
            Segment("contrast", 5, 40),
            Segment("impulse_noise", 5, 40),
        ]
    )
    batch_size: int = 32
    feedback_share: float = 0.5  # share of served items whose true label comes back as feedback
    promote_after: int = 15  # batches into a session before the governor asks the gate
    tent_lr: float = 1e-3
    alpha: float = 0.05
    canary_tolerance: float = 0.02
    seed: int = 0
    train_epochs: int = 40

    @classmethod
    def quick(cls) -> DemoConfig:
        """A short stream for tests."""
        return cls(
            segments=[Segment("clean", 0, 12), Segment("gaussian_noise", 5, 16)],
            promote_after=6,
            train_epochs=3,
        )


@dataclass
class StreamLog:
    """Per-batch record of the run, for the report."""

    segment: list[int] = field(default_factory=list)
    source_acc: list[float] = field(default_factory=list)
    tent_ungoverned_acc: list[float] = field(default_factory=list)
    governed_acc: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    triggers: list[int] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)


def make_stream(cfg: DemoConfig, x: np.ndarray, y: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Batches of (segment index, images, labels, item ids), deterministic in the seed."""
    rng = np.random.default_rng(cfg.seed)
    out = []
    counter = 0
    for si, seg in enumerate(cfg.segments):
        for _b in range(seg.batches):
            idx = rng.choice(len(y), size=cfg.batch_size, replace=False)
            xb = x[idx]
            if seg.corruption != "clean":
                xb = corrupt(xb, seg.corruption, seg.severity, seed=cfg.seed * 100_000 + counter)
            ids = np.array([f"b{counter:04d}-{i:02d}" for i in range(cfg.batch_size)])
            out.append((si, xb, y[idx], ids))
            counter += 1
    return out


def run_demo(out_dir: str | Path = "runs/demo", cfg: DemoConfig | None = None, *, quiet: bool | None = None,
             fresh: bool = True, threads: int | None = 2, ref: str = REF, write_report: bool = True) -> dict[str, Any]:
    """Run the demo; returns a summary (also written to ``out_dir/summary.json``).

    ``ref`` names the ledger ref of the served model (the all-channel story, :mod:`lifelong.story`, puts it
    under ``tenant/demo/`` so the service's dashboard shows it); ``write_report=False`` skips this
    chapter's own HTML report and summary file (the story writes one report for all its chapters).
    """
    cfg = cfg or DemoConfig()
    quiet = quiet_from_env(quiet)
    out = Path(out_dir)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    log = StreamLog()
    with torch_threads(threads), Progress(quiet) as progress:
        data = load_digits_splits(seed=cfg.seed)
        progress.log("training (or loading) the source model on clean digits...")
        model = pretrained_digits_cnn(data.train, seed=cfg.seed, norm="batch", epochs=cfg.train_epochs)
        ledger = Ledger.open(out / "ledger.db")
        governor = Governor(
            ledger,
            ref,
            gate=Gate(alpha=cfg.alpha, canary_tolerance=cfg.canary_tolerance, n_resamples=2000, seed=cfg.seed),
            budget=Budget(steps=1, lr=cfg.tent_lr, params=NORM_AFFINE),
            # Page-Hinkley on the batch's mean entropy, both directions; delta and threshold are in nats
            # (a sustained rise of ~0.3 nats fires within ~4 batches; batch noise of 0.05 nats never does).
            trigger=DriftTrigger("page-hinkley", min_instances=10, delta=0.02, threshold=1.0),
            reset=OnDrift(),
        )
        champion = governor.register(model.state_dict(), message="source model trained on clean digits")
        served = Tent(model, governor, budget=governor.budget, reset=OnDrift())
        baseline = Source(model, Governor(ledger, "baseline/source"))
        ungoverned = Tent(model, Governor(ledger, "baseline/tent-ungoverned"))
        canary = classifier_suite("clean-canary", data.val.x, data.val.y, [f"val-{i}" for i in data.val.ids])

        def champion_system(xb: torch.Tensor) -> torch.Tensor:
            return served_with(ledger.checkout(champion_id[0]), xb)

        def served_with(state: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
            # Evaluate a version in the deployed inference mode (test-batch statistics), without
            # touching the live session: a scratch copy of the model gets the version's tensors.
            scratch.load_state_dict({k: v for k, v in state.items() if k in scratch_keys}, strict=False)
            with torch.no_grad():
                return scratch(xb)

        scratch = Tent(model, governor, budget=governor.budget).model
        scratch_keys = set(scratch.state_dict())
        champion_id = [champion.id]
        session_start = 0
        session_feedback: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        promoted_this_session = False
        rng = np.random.default_rng(cfg.seed + 1)

        stream = make_stream(cfg, data.test.x, data.test.y)
        task = progress.add("streaming batches", len(stream))
        for step, (si, xb, yb, ids) in enumerate(stream):
            xt, yt = torch.from_numpy(xb), torch.from_numpy(yb)
            with torch.no_grad():
                log.source_acc.append(float((baseline(xt).argmax(1) == yt).float().mean()))
            log.tent_ungoverned_acc.append(float((ungoverned(xt).argmax(1) == yt).float().mean()))
            pred = served(xt).argmax(1)
            correct = (pred == yt).float()
            log.governed_acc.append(float(correct.mean()))
            log.entropy.append(served.last_entropy or 0.0)
            log.segment.append(si)
            if served.last_drift:
                log.triggers.append(step)
                session_start = step
                session_feedback = []
                promoted_this_session = False
                governor.monitor = None  # its baseline belonged to the previous domain
            # Feedback: the true labels of a share of the served items arrive.
            mask = rng.random(len(yb)) < cfg.feedback_share
            session_feedback.append((xb[mask], yb[mask], ids[mask]))
            for c in correct[torch.from_numpy(mask)].tolist():
                rolled = governor.watch(c)
                if rolled is not None:
                    champion_id[0] = rolled.id
                    served.scope.load({k: v for k, v in ledger.checkout(rolled).items() if k in served.scope.reference})
                    served.scope.rebase()
                    log.rollbacks.append({"step": step, "to": rolled.short_id})
            # Promotion: once per session, after enough batches with feedback.
            if log.triggers and not promoted_this_session and step - session_start + 1 >= cfg.promote_after:
                promoted_this_session = True
                fx = np.concatenate([f[0] for f in session_feedback])
                fy = np.concatenate([f[1] for f in session_feedback])
                fid = np.concatenate([f[2] for f in session_feedback])
                target = classifier_suite(f"feedback@{step}", fx, fy, list(fid))
                candidate_state = {**ledger.checkout(champion_id[0]), **served.scope.current()}
                change = served.proposal({"session_start_batch": session_start, "feedback_items": len(fy),
                                          "segment": cfg.segments[si].corruption})
                change.base_version = champion_id[0]
                result = governor.promote(
                    change,
                    champion=champion_system,
                    candidate=lambda xb_, s=candidate_state: served_with(s, xb_),
                    target=target,
                    canaries=[canary],
                )
                verdict = ledger.verdict(result.verdict_id)
                log.promotions.append({"step": step, "accepted": result.accepted, "summary": verdict.summary(),
                                       "version": result.version.short_id, "segment": cfg.segments[si].corruption})
                if result.accepted:
                    champion_id[0] = result.version.id
                    served.scope.rebase()
            progress.advance(task)
        summary = summarise(cfg, log, ledger, out, started)
        summary["ref"] = ref
        ledger.close()
    if not write_report:
        summary["report"] = None
        return summary
    from lifelong.report import write_demo_report

    summary["report"] = str(write_demo_report(out / "report.html", cfg, log, summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarise(cfg: DemoConfig, log: StreamLog, ledger: Ledger, out: Path, started: float) -> dict[str, Any]:
    """Headline numbers of the run."""
    def mean(v: list[float]) -> float:
        return float(np.mean(v)) if v else float("nan")

    shifted = [i for i, s in enumerate(log.segment) if cfg.segments[s].corruption != "clean"]
    return {
        "config": {**asdict(cfg), "segments": [asdict(s) for s in cfg.segments]},
        "batches": len(log.segment),
        "accuracy": {
            "no_adaptation": mean(log.source_acc),
            "tent_without_controls": mean(log.tent_ungoverned_acc),
            "governed": mean(log.governed_acc),
        },
        "accuracy_on_shifted_segments": {
            "no_adaptation": mean([log.source_acc[i] for i in shifted]),
            "tent_without_controls": mean([log.tent_ungoverned_acc[i] for i in shifted]),
            "governed": mean([log.governed_acc[i] for i in shifted]),
        },
        "triggers": log.triggers,
        "promotions": log.promotions,
        "rollbacks": log.rollbacks,
        "ledger": str(out / "ledger.db"),
        "ledger_counts": ledger.stats(),
        "seconds": round(time.time() - started, 1),
        "log": log.__dict__,
    }

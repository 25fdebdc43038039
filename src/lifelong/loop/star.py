"""STaR and ReST-EM, with a statistical gate every round.

Both loops generate -> verify -> keep the good -> fine-tune -> repeat, and both fine-tune **from the base
model every round** (Zelikman et al. 2022: M_n = train(M, D_n); Singh et al. 2023: each M-step starts
from the base), which is built-in protection against drift. What no public implementation does, this one
does: every round's candidate goes through the gate against the current champion on held-out items
(exact McNemar on per-item correctness), the verdict is written to the ledger, and the loop stops when
the gate stops accepting.

- **STaR** (:func:`star_round`): sample a rationale per training question; keep the ones whose answer
  the verifier accepts; *rationalization*: for failures, give the answer as a hint, sample a rationale,
  keep it (stored without the hint) if it reaches the answer. Fine-tuning steps grow 20% per round.
- **ReST-EM** (:func:`rest_em_round`): sample ``n_samples`` per question at temperature, keep the verified
  ones, at most ``cap`` per question (so easy questions do not dominate).
- A deliberately harmful round (:func:`unfiltered_round`) trains on everything sampled, right or wrong:
  the gate must reject it.

>>> from lifelong.loop.arithmetic import Problem
>>> cfg = LoopConfig(method="star")
>>> cfg.steps_for_round(3)
576
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from lifelong.control.gate import Suite
from lifelong.control.governor import Governor
from lifelong.core.change import Change, ChangeKind, Cost
from lifelong.core.hashing import json_hash
from lifelong.loop.arithmetic import Problem, answer_is_correct, rationale_is_valid
from lifelong.loop.charlm import CharTransformer, Vocab, sample, train

METHODS = ("star", "star-no-rationalization", "rest-em")


@dataclass(frozen=True)
class LoopConfig:
    """Knobs of one self-improvement loop (defaults: STaR's 20% growth of fine-tuning steps per round)."""

    method: str = "star"
    rounds: int = 6
    base_steps: int = 400
    growth: float = 1.2
    temperature: float = 0.7
    n_samples: int = 4  # ReST-EM samples per question
    cap: int = 2  # ReST-EM kept samples per question
    batch_size: int = 64
    lr: float = 2e-3
    max_new: int = 60

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")

    def steps_for_round(self, n: int) -> int:
        """Fine-tuning steps in round ``n`` (1-based): base_steps * growth^(n-1)."""
        return int(round(self.base_steps * self.growth ** (n - 1)))


@dataclass
class RoundReport:
    """One round: what was kept, how the candidate scored, and what the gate said."""

    round: int
    method: str
    kept: int
    kept_from_rationalization: int
    wrong_rationale_share: float  # kept examples with the right answer but a wrong rationale
    candidate_accuracy: float
    champion_accuracy: float
    accepted: bool
    verdict: str
    seconds: float
    harmful: bool = False
    monitors: dict[str, float] = field(default_factory=dict)


def accuracy_scores(model: CharTransformer, vocab: Vocab, problems: Sequence[Problem], max_new: int = 60) -> list[float]:
    """Per-item correctness of greedy answers (the verifier's score: exact answer, else 0)."""
    outs = sample(model, vocab, [p.prompt() for p in problems], max_new=max_new, temperature=0.0)
    return [1.0 if answer_is_correct(p, o.text) else 0.0 for p, o in zip(problems, outs, strict=True)]


def heldout_suite(vocab: Vocab, problems: Sequence[Problem], max_new: int = 60) -> Suite:
    """The gate's target: greedy accuracy on held-out problems, pinned by the items and the verifier."""
    content = json_hash({"items": [p.id for p in problems], "verifier": "exact-answer-after-A:", "decoding": "greedy"})
    return Suite("heldout-addition", tuple(p.id for p in problems),
                 lambda model: accuracy_scores(model, vocab, problems, max_new), content)


def _finetune_from_base(base: CharTransformer, vocab: Vocab, data: list[tuple[str, str]], steps: int,
                        cfg: LoopConfig, seed: int) -> CharTransformer:
    candidate = copy.deepcopy(base)
    train(candidate, vocab, data, steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed)
    return candidate


def collect_star(policy: CharTransformer, vocab: Vocab, pool: Sequence[Problem], cfg: LoopConfig, seed: int,
                 rationalize: bool) -> tuple[list[tuple[str, str]], int, float]:
    """STaR's data for one round: kept (prompt, completion) pairs, how many came from rationalization,
    and the share of kept pairs whose rationale is wrong although the answer is right."""
    outs = sample(policy, vocab, [p.prompt() for p in pool], max_new=cfg.max_new, temperature=cfg.temperature, seed=seed)
    kept, bad = [], 0
    failures = []
    for p, o in zip(pool, outs, strict=True):
        if answer_is_correct(p, o.text):
            kept.append((p.prompt(), o.text))
            bad += not rationale_is_valid(p, o.text)
        else:
            failures.append(p)
    from_hint = 0
    if rationalize and failures:
        hinted = sample(policy, vocab, [p.prompt(hint=True) for p in failures], max_new=cfg.max_new,
                        temperature=cfg.temperature, seed=seed + 1)
        for p, o in zip(failures, hinted, strict=True):
            if answer_is_correct(p, o.text):
                kept.append((p.prompt(), o.text))  # stored without the hint
                bad += not rationale_is_valid(p, o.text)
                from_hint += 1
    return kept, from_hint, bad / max(len(kept), 1)


def collect_rest_em(policy: CharTransformer, vocab: Vocab, pool: Sequence[Problem], cfg: LoopConfig,
                    seed: int) -> tuple[list[tuple[str, str]], int, float]:
    """ReST-EM's E-step: ``n_samples`` per question, verified ones kept, at most ``cap`` per question."""
    prompts = [p.prompt() for p in pool for _ in range(cfg.n_samples)]
    outs = sample(policy, vocab, prompts, max_new=cfg.max_new, temperature=cfg.temperature, seed=seed)
    kept, bad = [], 0
    for i, p in enumerate(pool):
        good = [o.text for o in outs[i * cfg.n_samples : (i + 1) * cfg.n_samples] if answer_is_correct(p, o.text)]
        for text in list(dict.fromkeys(good))[: cfg.cap]:
            kept.append((p.prompt(), text))
            bad += not rationale_is_valid(p, text)
    return kept, 0, bad / max(len(kept), 1)


def collect_unfiltered(policy: CharTransformer, vocab: Vocab, pool: Sequence[Problem], cfg: LoopConfig,
                       seed: int) -> tuple[list[tuple[str, str]], int, float]:
    """A harmful round: every sample is kept, right or wrong (no verifier)."""
    outs = sample(policy, vocab, [p.prompt() for p in pool], max_new=cfg.max_new, temperature=1.0, seed=seed)
    kept = [(p.prompt(), o.text) for p, o in zip(pool, outs, strict=True)]
    wrong = sum(not answer_is_correct(p, o.text) for p, o in zip(pool, outs, strict=True))
    return kept, 0, wrong / max(len(kept), 1)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 - C(n-c, k)/C(n, k) (Chen et al. 2021).

    >>> pass_at_k(10, 0, 5), pass_at_k(10, 10, 1), round(pass_at_k(4, 1, 2), 3)
    (0.0, 1.0, 0.5)
    """
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_scores(model: CharTransformer, vocab: Vocab, problems: Sequence[Problem], n: int, k: int,
                     seed: int, temperature: float = 1.0) -> float:
    """Mean unbiased pass@k over problems from ``n`` samples each."""
    outs = sample(model, vocab, [p.prompt() for p in problems for _ in range(n)], temperature=temperature, seed=seed)
    total = 0.0
    for i, p in enumerate(problems):
        c = sum(answer_is_correct(p, o.text) for o in outs[i * n : (i + 1) * n])
        total += pass_at_k(n, c, k)
    return total / max(len(problems), 1)


class SelfImprovementLoop:
    """Rounds of STaR or ReST-EM from a base model, each gated against the champion and recorded."""

    def __init__(self, base: CharTransformer, vocab: Vocab, pool: Sequence[Problem], heldout: Sequence[Problem],
                 governor: Governor, cfg: LoopConfig, seed: int = 0,
                 monitor: Callable[[CharTransformer, CharTransformer], dict[str, float]] | None = None) -> None:
        self.base = base
        self.vocab = vocab
        self.pool = list(pool)
        self.heldout = list(heldout)
        self.suite = heldout_suite(vocab, self.heldout, cfg.max_new)
        self.governor = governor
        self.cfg = cfg
        self.seed = seed
        self.monitor = monitor
        self.champion = base
        self.reports: list[RoundReport] = []
        governor.register({k: v for k, v in base.state_dict().items()}, message=f"{cfg.method}: base model")

    def run_round(self, n: int, *, harmful: bool = False) -> RoundReport:
        """One round: collect from the champion, fine-tune the base, gate against the champion."""
        start = time.perf_counter()
        seed = self.seed * 1000 + n
        if harmful:
            kept, from_hint, bad = collect_unfiltered(self.champion, self.vocab, self.pool, self.cfg, seed)
        elif self.cfg.method == "rest-em":
            kept, from_hint, bad = collect_rest_em(self.champion, self.vocab, self.pool, self.cfg, seed)
        else:
            kept, from_hint, bad = collect_star(self.champion, self.vocab, self.pool, self.cfg, seed,
                                                rationalize=self.cfg.method == "star")
        if not kept:
            return self._nothing_kept(n, harmful, start)
        steps = self.cfg.steps_for_round(n)
        candidate = _finetune_from_base(self.base, self.vocab, kept, steps, self.cfg, seed)
        change = Change(
            ChangeKind.WEIGHTS, "session", self.cfg.method + (" (unfiltered)" if harmful else ""),
            tensors=dict(candidate.state_dict()),
            provenance={"round": n, "kept": len(kept), "from_rationalization": from_hint, "harmful": harmful,
                        "steps": steps, "pool": len(self.pool)},
            cost=Cost(steps=steps, examples=len(kept)),
        )
        result = self.governor.promote(change, champion=self.champion, candidate=candidate, target=self.suite)
        verdict = self.governor.ledger.verdict(result.verdict_id)
        assert verdict.target is not None
        monitors = self.monitor(self.champion, candidate) if self.monitor else {}
        report = RoundReport(n, self.cfg.method, len(kept), from_hint, bad, verdict.target.candidate_mean,
                             verdict.target.champion_mean, result.accepted, verdict.summary(),
                             time.perf_counter() - start, harmful, monitors)
        if result.accepted:
            self.champion = candidate
        self.reports.append(report)
        return report

    def _nothing_kept(self, n: int, harmful: bool, start: float) -> RoundReport:
        """A round whose sampling verified nothing proposes no change: recorded as such, and it ends the loop."""
        last = self.reports[-1] if self.reports else None
        if last is None:
            champion_acc = float(np.mean(self.suite.score(self.champion)))
        else:  # an accepted candidate became the champion
            champion_acc = last.candidate_accuracy if last.accepted else last.champion_accuracy
        verdict = "no verified samples this round: no candidate, nothing to gate"
        self.governor.ledger.record_event("note", verdict, ref=self.governor.ref, actor=self.cfg.method,
                                          data={"round": n, "pool": len(self.pool), "no_candidate": True})
        report = RoundReport(n, self.cfg.method, 0, 0, 0.0, champion_acc, champion_acc, False, verdict,
                             time.perf_counter() - start, harmful)
        self.reports.append(report)
        return report

    def run(self, harmful_round: int | None = None) -> list[RoundReport]:
        """Rounds until the gate stops accepting (a rejected harmful round does not stop the loop)."""
        for n in range(1, self.cfg.rounds + 1):
            if harmful_round == n:
                self.run_round(n, harmful=True)
                continue
            if not self.run_round(n).accepted:
                break
        return self.reports

    def summary(self) -> dict[str, Any]:
        """Plain-JSON record of the loop."""
        return {"config": asdict(self.cfg), "rounds": [asdict(r) for r in self.reports]}


def seed_data(problems: Sequence[Problem], hinted_share: float = 0.3, seed: int = 0) -> list[tuple[str, str]]:
    """The hand-written rationales the base model starts from (STaR's few-shot exemplars, as training
    data for a model too small for in-context learning); a share carry the answer hint, so the model
    knows what a hint is for when rationalization uses one."""
    rng = np.random.default_rng(seed)
    out = []
    for p in problems:
        out.append((p.prompt(hint=bool(rng.random() < hinted_share)), p.rationale()))
    return out


def set_threads(n: int) -> None:
    """Pin torch's intra-op threads (the loop is small; more threads only add overhead)."""
    torch.set_num_threads(n)

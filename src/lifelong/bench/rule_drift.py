"""``lifelong bench rule-drift``: a playbook against no memory and full history on a stream of hidden rules
that change mid-stream.

Protocol (issue 5, section 3; the reference notes' scripted stream, section 10):

1. **Rules.** Three families of hidden rules, five keys each: API quirks (which auth scheme an endpoint
   needs: ``api /orders -> hmac``), unit conventions (``units weight -> lb``) and routing rules
   (``routing refund -> billing-team``); values drawn per seed. Six **distractor** keys with confusable
   names (``/orders/v2``, ``weight-gross``, ``refund-eu``...) follow rules that never change.
2. **Stream.** 600 tasks, each a uniformly drawn key ("routing refund: which team handles refund
   tickets?"). At steps 200 and 400 one key per family **drifts** to a new value (different keys at the
   two drifts). After each answer the environment reveals the expected value; with probability 0.05 the
   revealed value is wrong (a noisy tool outcome). Answers are scored against the true rule
   (prequential: every task is answered before it is learned from).
3. **The acting policy is the same deterministic reader for every learner.** It reads the statements
   ``FAMILY KEY -> VALUE`` in its context, keeps those about the task's exact key and answers with the
   value stated most often (ties: the most recently stated); with no statement it answers the key's
   default (the first value of its list: a fixed convention, right by chance). It cites the ids of the
   bullets it used. It does not know which statements are stale: resolving conflicting evidence is the
   memory's job, and this is what the comparison measures.
4. **Learners.** *No memory*: an empty context. *Full history*: every past step in context as
   ``step t: FAMILY KEY -> revealed``. *Playbook*: :class:`~lifelong.context.playbook.PlaybookLearner`
   with a rule reflector (tags the cited bullets helpful or harmful, and states the revealed value as a
   lesson keyed by the rule), a rule curator (ADD a new key; SUPERSEDE a bullet once two consecutive
   revealed values contradict it, so one noisy label does not overturn a rule) and grow-and-refine; its
   context is the 8 bullets retrieved for the task, packed into 400 tokens.
   Sensitivity rows (not targets): full history read by a reader that trusts only the latest statement,
   or weighs statements by recency (half-life 3 statements), and a recent-history window (last 100 steps).
5. **Metrics.** Prequential accuracy (curves: rolling mean over 30 steps), accuracy in each phase;
   **steps to recover** after each drift: the exposures of a drifted key until the learner answers it
   right three times in a row (censored at the exposures left in the phase); **interference**: accuracy on
   distractor tasks in the 60 steps after each drift minus the 60 steps before; **context tokens** per
   call (``count_tokens`` of the context and question), over the last 50 steps.

Targets (issue 5): the playbook learner recovers from a drift in fewer steps than full history, and
ends with fewer context tokens per call.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifelong.bench.common import Progress, Target, quiet_from_env, write_results
from lifelong.context.text import count_tokens

NAME = "rule-drift"
FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "api": {k: ("bearer", "api-key", "hmac", "basic", "oauth2")
            for k in ("/orders", "/billing", "/search", "/users", "/export")},
    "units": {"weight": ("kg", "lb", "g"), "length": ("cm", "mm", "in"), "temperature": ("celsius", "fahrenheit", "kelvin"),
              "volume": ("l", "ml", "gal"), "speed": ("kmh", "mph", "mps")},
    "routing": {k: ("billing-team", "support-team", "infra-team", "identity-team", "logistics-team")
                for k in ("refund", "outage", "login", "invoice", "shipping")},
}
DISTRACTORS: dict[str, dict[str, tuple[str, ...]]] = {
    "api": {k: FAMILIES["api"]["/orders"] for k in ("/orders/v2", "/billing/v2")},
    "units": {"weight-gross": FAMILIES["units"]["weight"], "length-max": FAMILIES["units"]["length"]},
    "routing": {k: FAMILIES["routing"]["refund"] for k in ("refund-eu", "login-sso")},
}
QUESTIONS = {"api": "which auth scheme does endpoint {key} need?", "units": "which unit does the {key} field use?",
             "routing": "which team handles {key} tickets?"}


@dataclass(frozen=True)
class Task:
    """One step of the stream: the rule asked about, its true value now, and the value revealed after."""

    t: int
    family: str
    key: str
    truth: str
    revealed: str
    distractor: bool

    @property
    def question(self) -> str:
        """The task as text: ``FAMILY KEY: question``."""
        return f"{self.family} {self.key}: " + QUESTIONS[self.family].format(key=self.key)


@dataclass(frozen=True)
class Drift:
    """A rule change: at step ``t`` the key's value went from ``old`` to ``new``."""

    t: int
    family: str
    key: str
    old: str
    new: str


def _values(family: str, key: str) -> tuple[str, ...]:
    return FAMILIES[family].get(key) or DISTRACTORS[family][key]


def make_stream(seed: int, *, steps: int = 600, drifts: Sequence[int] = (200, 400), noise: float = 0.05
                ) -> tuple[list[Task], list[Drift]]:
    """The seeded stream and its drifts.

    >>> tasks, drifts = make_stream(0)
    >>> len(tasks), [(d.t, d.family) for d in drifts][:3], sum(t.distractor for t in tasks) > 100
    (600, [(200, 'api'), (200, 'units'), (200, 'routing')], True)
    """
    rng = random.Random(seed)
    rules = {(f, k): rng.choice(v) for fam in (FAMILIES, DISTRACTORS) for f, keys in fam.items() for k, v in keys.items()}
    keys = list(rules)
    main = {f: list(FAMILIES[f]) for f in FAMILIES}
    for f in main:
        rng.shuffle(main[f])
    events: list[Drift] = []
    tasks: list[Task] = []
    for t in range(steps):
        if t in drifts:
            n = list(drifts).index(t)
            for f in FAMILIES:
                k = main[f][n % len(main[f])]
                old = rules[(f, k)]
                new = rng.choice([v for v in _values(f, k) if v != old])
                rules[(f, k)] = new
                events.append(Drift(t, f, k, old, new))
        f, k = keys[rng.randrange(len(keys))]
        truth = rules[(f, k)]
        revealed = truth if rng.random() >= noise else rng.choice([v for v in _values(f, k) if v != truth])
        tasks.append(Task(t, f, k, truth, revealed, k in DISTRACTORS[f]))
    return tasks, events


# ---------------------------------------------------------------------------------------- the reader
_STMT = re.compile(r"^(?:\[(?P<id>[^\]]+)\]\s*)?(?:step \d+:\s*)?(?P<family>[\w-]+) (?P<key>\S+) -> (?P<value>\S+)\s*$")


def read(family: str, key: str, context: str, *, policy: str = "majority", half_life: float = 3.0
         ) -> tuple[str | None, tuple[str, ...]]:
    """The value the context states for a rule, and the ids of the bullets stating it.

    ``majority``: the value stated most often (ties: the one stated last); ``latest``: the last stated;
    ``recency``: votes weighted 0.5 ** (age / half_life), age counted in statements about this key.

    >>> ctx = "step 1: routing refund -> a\\nstep 2: routing refund-eu -> b\\nstep 3: routing refund -> c\\nstep 4: routing refund -> a"
    >>> read("routing", "refund", ctx), read("routing", "refund", ctx, policy="latest")[0]
    (('a', ()), 'a')
    >>> read("routing", "refund", "[r-1] routing refund -> c\\n[r-2] routing refund-eu -> b")
    ('c', ('r-1',))
    """
    found = []
    for line in context.splitlines():
        m = _STMT.match(line.strip())
        if m and m.group("family") == family and m.group("key") == key:
            found.append((m.group("id"), m.group("value")))
    if not found:
        return None, ()
    if policy == "latest":
        value = found[-1][1]
    else:
        score: dict[str, float] = {}
        last: dict[str, int] = {}
        n = len(found)
        for i, (_, v) in enumerate(found):
            w = 1.0 if policy == "majority" else 0.5 ** ((n - 1 - i) / half_life)
            score[v] = score.get(v, 0.0) + w
            last[v] = i
        if policy not in ("majority", "recency"):
            raise ValueError(f"policy must be majority, latest or recency, got {policy!r}")
        value = max(score, key=lambda v: (score[v], last[v]))
    return value, tuple(i for i, v in found if v == value and i)


def answer(task: Task, context: str, policy: str = "majority") -> tuple[str, tuple[str, ...]]:
    """The reader's answer: the stated value, else the key's default."""
    value, cited = read(task.family, task.key, context, policy=policy)
    return (value if value is not None else _values(task.family, task.key)[0]), cited


# ---------------------------------------------------------------------------------------- learners
class NoMemory:
    """The reader with an empty context."""

    name = "no memory"

    def act(self, task: Task) -> tuple[str, int]:
        """Answer; returns the answer and the context tokens of the call."""
        return answer(task, "")[0], count_tokens(task.question)

    def observe(self, task: Task, given: str) -> None:
        """Nothing is kept."""


class History:
    """Every past step (or the last ``window``) in context, one statement per step."""

    def __init__(self, policy: str = "majority", window: int | None = None) -> None:
        self.policy, self.window = policy, window
        self.lines: list[str] = []
        self.name = "full history" if window is None else f"recent history ({window} steps)"
        if policy != "majority":
            self.name += f", {policy} reader"

    def act(self, task: Task) -> tuple[str, int]:
        """Answer from the transcript."""
        lines = self.lines if self.window is None else self.lines[-self.window:]
        ctx = "\n".join(lines)
        return answer(task, ctx, self.policy)[0], count_tokens(ctx + "\n" + task.question)

    def observe(self, task: Task, given: str) -> None:
        """Append the step with its revealed value."""
        self.lines.append(f"step {task.t}: {task.family} {task.key} -> {task.revealed}")


class ReaderGenerator:
    """The reader as a playbook generator: the question starts with ``FAMILY KEY:``."""

    def __init__(self, policy: str = "majority") -> None:
        self.policy = policy

    def generate(self, question: str, context: str) -> Any:
        """Answer from the packed playbook, citing the bullets used."""
        from lifelong.context.roles import Generation

        family, key = question.split(":", 1)[0].split(" ", 1)
        value, cited = read(family, key, context, policy=self.policy)
        return Generation(value if value is not None else _values(family, key)[0], cited)


class PlaybookActor:
    """The playbook learner (rule roles, no LLM) behind the same reader."""

    name = "playbook"

    def __init__(self, *, confirm: int = 2, k: int = 8, budget: int = 400) -> None:
        from lifelong.context import HashingEmbedder, open_store
        from lifelong.context.playbook import Playbook, PlaybookLearner, Refiner
        from lifelong.context.roles import Lesson, RuleCurator, RuleReflector

        def lesson(question: str, target: str) -> Lesson:
            family, key = question.split(":", 1)[0].split(" ", 1)
            return Lesson(f"{family} {key} -> {target}", family, key=f"{family} {key}")

        self.store = open_store(":memory:", tenant="drift", create=True, embedder=HashingEmbedder(256))
        self.playbook = Playbook(self.store, budget=budget, k=k)
        self.learner = PlaybookLearner(self.playbook, ReaderGenerator(), RuleReflector(lesson, always_lesson=True),
                                       RuleCurator(confirm=confirm), refiner=Refiner(0.90), refine_every=25, k=k,
                                       budget=budget)
        self._last: Any = None

    def act(self, task: Task) -> tuple[str, int]:
        """Answer with the retrieved, packed bullets."""
        gen, packed = self.learner.answer(task.question)
        self._last = gen
        return gen.answer, count_tokens(packed.text + "\n" + task.question)

    def observe(self, task: Task, given: str) -> None:
        """Reflect on the revealed value and curate."""
        from lifelong.context.roles import Feedback

        self.learner.learn(task.question, self._last, Feedback(given == task.revealed, task.revealed))


def make_learners(quick: bool = False) -> list[Any]:
    """The three learners of the claim, then the sensitivity rows."""
    return [NoMemory(), History(), PlaybookActor(), History("latest"), History("recency"), History(window=100)]


# ---------------------------------------------------------------------------------------- metrics
def recovery(tasks: Sequence[Task], correct: Sequence[bool], drift: Drift, end: int, streak: int = 3
             ) -> tuple[int, bool]:
    """Exposures of the drifted key after the drift until the first of ``streak`` right answers in a
    row; (exposures in the phase, False) when that never happens before ``end``.

    >>> ts = [Task(t, "api", "/a", "x", "x", False) for t in range(10)]
    >>> recovery(ts, [0, 0, 1, 0, 1, 1, 1, 1, 1, 1], Drift(0, "api", "/a", "y", "x"), 10)
    (4, True)
    """
    idx = [i for i, t in enumerate(tasks) if drift.t <= t.t < end and t.family == drift.family and t.key == drift.key]
    ok = [bool(correct[i]) for i in idx]
    for j in range(len(ok)):
        run = ok[j:j + streak]
        if len(run) == streak and all(run):
            return j, True
    return len(ok), False


def evaluate(seed: int, steps: int, drift_at: Sequence[int], noise: float, quick: bool) -> dict[str, Any]:
    """Run every learner on one seed's stream."""
    tasks, drifts = make_stream(seed, steps=steps, drifts=drift_at, noise=noise)
    out: dict[str, Any] = {}
    for learner in make_learners(quick):
        correct, tokens = [], []
        t0 = time.perf_counter()
        for task in tasks:
            given, n = learner.act(task)
            correct.append(given == task.truth)
            tokens.append(n)
            learner.observe(task, given)
        bounds = [0, *drift_at, steps]
        phases = [sum(correct[a:b]) / max(b - a, 1) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        recs = []
        for d in drifts:
            end = min([b for b in bounds if b > d.t], default=steps)
            n_exp, ok = recovery(tasks, correct, d, end)
            recs.append({"t": d.t, "rule": f"{d.family} {d.key}", "old": d.old, "new": d.new, "exposures": n_exp,
                         "recovered": ok})
        interference = []
        for t in sorted(set(drift_at)):
            before = [c for c, x in zip(correct, tasks, strict=True) if x.distractor and t - 60 <= x.t < t]
            after = [c for c, x in zip(correct, tasks, strict=True) if x.distractor and t <= x.t < t + 60]
            if before and after:
                interference.append(sum(after) / len(after) - sum(before) / len(before))
        out[learner.name] = {
            "accuracy": sum(correct) / len(correct), "phase_accuracy": phases,
            "distractor_accuracy": _mean([c for c, x in zip(correct, tasks, strict=True) if x.distractor]),
            "recovery": recs, "recovery_mean": _mean([r["exposures"] for r in recs]),
            "recovered_share": _mean([float(r["recovered"]) for r in recs]),
            "interference": interference, "tokens_last50": _mean(tokens[-50:]), "tokens_max": max(tokens),
            "curve": _rolling(correct, 30), "tokens_curve": tokens[::10], "seconds": round(time.perf_counter() - t0, 2),
        }
        if isinstance(learner, PlaybookActor):
            out[learner.name]["ops"] = dict(learner.learner.op_counts)
            out[learner.name]["bullets"] = len(learner.playbook.bullets())
            out[learner.name]["store_items"] = len(learner.store)
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _rolling(xs: Sequence[bool], w: int) -> list[float]:
    out, s = [], 0.0
    for i, x in enumerate(xs):
        s += x
        if i >= w:
            s -= xs[i - w]
        out.append(round(s / min(i + 1, w), 4))
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Means over seeds, per learner."""
    names = list(runs[0])
    keys = ("accuracy", "distractor_accuracy", "recovery_mean", "recovered_share", "tokens_last50", "tokens_max")
    out = {}
    for n in names:
        row = {k: _mean([r[n][k] for r in runs]) for k in keys}
        row["interference"] = _mean([x for r in runs for x in r[n]["interference"]])
        row["phase_accuracy"] = [_mean([r[n]["phase_accuracy"][i] for r in runs])
                                 for i in range(len(runs[0][n]["phase_accuracy"]))]
        out[n] = row
    return out


def make_targets(summary: dict[str, dict[str, Any]]) -> list[Target]:
    """Recovery and context size, playbook against full history (same reader)."""
    pb, hist = summary["playbook"], summary["full history"]
    return [
        Target.check("playbook: exposures to recover after a drift (target: below full history's)",
                     pb["recovery_mean"], hist["recovery_mean"], "<",
                     "mean over drifted rules and seeds; full history's value is the threshold"),
        Target.check("playbook: context tokens per call, last 50 steps (target: below full history's)",
                     pb["tokens_last50"], hist["tokens_last50"], "<",
                     "full history's value is the threshold"),
    ]


def make_plot(runs: list[dict[str, Any]], drift_at: Sequence[int], out: Path) -> str:
    """Prequential accuracy and context tokens per call, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in runs[0]:
        curve = np.mean([r[name]["curve"] for r in runs], axis=0)
        tok = np.mean([r[name]["tokens_curve"] for r in runs], axis=0)
        style = "-" if name in ("playbook", "full history", "no memory") else ":"
        axes[0].plot(curve, style, label=name)
        axes[1].plot(np.arange(len(tok)) * 10, tok, style, label=name)
    for ax in axes:
        for t in drift_at:
            ax.axvline(t, color="k", alpha=0.3, ls="--")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set(xlabel="step", ylabel="accuracy (rolling 30)", ylim=(0, 1.02), title="prequential accuracy")
    axes[1].set(xlabel="step", ylabel="context tokens per call", yscale="log", title="context size")
    fig.tight_layout()
    name = f"{NAME}.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def render_markdown(summary: dict[str, Any], runs: list[dict[str, Any]], config: dict[str, Any], plot: str) -> str:
    """The results page."""
    doc = (__doc__ or "").split("\n\n", 1)[1].split("Targets (issue 5)")[0].strip()
    lines = [f"# {NAME}: playbook vs no memory vs full history under drifting rules", "", doc, "",
             f"![prequential accuracy and context size]({plot})", "",
             f"## Results (mean over seeds {config['seeds']})", "",
             "| learner | accuracy | phase 1 / 2 / 3 | distractor acc. | exposures to recover | recovered | "
             "interference on distractors | tokens/call (last 50) | max tokens/call |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, r in summary.items():
        ph = " / ".join(f"{100 * p:.1f}" for p in r["phase_accuracy"])
        lines.append(f"| {n} | {100 * r['accuracy']:.1f}% | {ph} | {100 * r['distractor_accuracy']:.1f}% | "
                     f"{r['recovery_mean']:.2f} | {100 * r['recovered_share']:.0f}% | "
                     f"{100 * r['interference']:+.1f} pts | {r['tokens_last50']:.0f} | {r['tokens_max']:.0f} |")
    pb = runs[0]["playbook"]
    pb_s, hist = summary["playbook"], summary["full history"]
    lat, rec = summary["full history, latest reader"], summary["full history, recency reader"]
    win = summary["recent history (100 steps)"]
    lines += ["", f"Playbook operations applied (seed {config['seeds'][0]}): {pb.get('ops')}; "
                  f"{pb.get('bullets')} current bullets, {pb.get('store_items')} items kept in the store "
                  "(superseded rules stay as history).", "",
              "## Is the comparison fair?", "",
              "Every learner answers through the same reader, which sees only its context; the learners differ "
              "only in what they put there. Full history holds all the evidence, old and new, and the reader has to "
              "weigh it: counting statements (the reader every learner uses) keeps the old value of a drifted rule "
              f"until the new one has been stated more often (full history needs {hist['recovery_mean']:.1f} "
              f"exposures, recovering within the phase {100 * hist['recovered_share']:.0f}% of the time; a lower bound, "
              "since a drift not recovered from counts only the exposures left in its phase). The "
              "playbook resolves the conflict in memory instead: a rule is superseded after two consistent "
              f"contradictions, so it recovers in {pb_s['recovery_mean']:.1f} exposures, and its context stays a "
              f"handful of bullets ({pb_s['tokens_last50']:.0f} tokens per call against {hist['tokens_last50']:.0f}).",
              "",
              "The sensitivity rows show where that advantage comes from and where it ends. A reader that trusts only "
              f"the latest statement in the full history recovers faster than the playbook ({lat['recovery_mean']:.1f} "
              f"exposures), but it follows every noisy label, so its accuracy is {100 * lat['accuracy']:.1f}% against "
              f"the playbook's {100 * pb_s['accuracy']:.1f}%; a recency-weighted reader ({100 * rec['accuracy']:.1f}%, "
              f"{rec['recovery_mean']:.1f} exposures) and a window of the last 100 steps "
              f"({100 * win['accuracy']:.1f}%, {win['recovery_mean']:.1f} exposures, {win['tokens_last50']:.0f} "
              "tokens) come close to the playbook at many times its context. A reader that knows which evidence is "
              "stale is doing the memory's job itself; the targets therefore compare the playbook with full history "
              "under the reader the playbook uses too, and these rows are reported so that the choice is visible.",
              ""]
    return "\n".join(lines)


def run(out_dir: str | Path = "docs/results", *, seeds: tuple[int, ...] | None = None, quick: bool = False,
        quiet: bool | None = None) -> dict[str, Any]:
    """Run the benchmark and write NAME.md, NAME.json and NAME.png into ``out_dir``. Quick mode: one seed
    and a 150-step stream with drifts at 50 and 100."""
    quiet = quiet_from_env(quiet)
    started = time.time()
    seeds = seeds or ((0,) if quick else (0, 1, 2, 3, 4))
    steps, drift_at, noise = (150, (50, 100), 0.05) if quick else (600, (200, 400), 0.05)
    runs = []
    with Progress(quiet) as progress:
        task = progress.add("seeds", len(seeds))
        for seed in seeds:
            runs.append(evaluate(seed, steps, drift_at, noise, quick))
            progress.advance(task)
    summary = summarise(runs)
    targets = make_targets(summary)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot = make_plot(runs, drift_at, out)
    config = {"seeds": list(seeds), "quick": quick, "steps": steps, "drifts": list(drift_at), "noise": noise,
              "keys": {f: list(k) for f, k in FAMILIES.items()}, "distractors": {f: list(k) for f, k in DISTRACTORS.items()},
              "playbook": {"confirm": 2, "k": 8, "budget": 400, "refine_threshold": 0.90, "refine_every": 25,
                           "embedder": "hashing-256"},
              "reader": "majority (ties: latest); sensitivity: latest, recency half-life 3", "recovery_streak": 3,
              "interference_window": 60}
    write_results(NAME, out, markdown=render_markdown(summary, runs, config, plot), config=config,
                  table={"summary": summary, "runs": runs}, targets=targets, started=started, packages=("numpy",))
    return {"result": summary, "targets": [t.to_dict() for t in targets]}

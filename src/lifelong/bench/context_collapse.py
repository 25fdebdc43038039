"""``lifelong bench context-collapse``: do delta updates keep the details that iterative rewriting loses?

Protocol (issue 5, section 3; ACE's "context collapse", arXiv 2510.04618):

1. **Notes.** 50 procedural notes in 10 sections (retries, timeouts, paging, rate limits, auth, units,
   routing, deploys, caching, retention), one per service and section, each with exactly three
   specifics: numbers with units, thresholds, named exceptions ("on HTTP 429 wait 4 s, at most 6
   attempts, only idempotent calls"; "no deploys after 15:00 on Fridays"). Values are drawn from a
   seeded generator. 150 specifics in all.
2. **Probes.** A specific is *kept* when some line of the memory names the note's anchors (the service
   and the topic) and the specific's value, in that line or in the lines that follow it up to the next
   line naming another service (so a rewrite that groups a service's rules under a heading still
   counts). The check is a regular expression, the same for every arm, deliberately lenient ("4 s",
   "4s" and "4 seconds" all match).
3. **Rounds.** 10 rounds of four lessons, round r aimed at section r: a new fact about a new service,
   a refinement of an existing note (an exception with its own specific), a paraphrase of an existing
   note and a verbatim repeat of another (nothing new in the last two: they must not grow the memory).
4. **Arms, with the same LLM** (the embedded SmolLM2-135M-Instruct through ``LocalChat``, greedy):
   (a) **delta curation**: the playbook learner's curator (:class:`~lifelong.context.roles.LLMCurator`)
   asks the model for JSON delta operations for the round's lessons; a malformed or unsafe reply is
   rejected with a recorded error and the deterministic :class:`~lifelong.context.roles.RuleCurator`
   proposes instead; then grow-and-refine (:class:`~lifelong.context.playbook.Refiner`, all-MiniLM-L6-v2
   embeddings, threshold 0.90) merges candidate pairs through :class:`~lifelong.context.roles.LLMMerger`
   (the model merges; a merge that drops a specific is refused and the decision remembered). Model
   generation is bounded so the run fits a shared 2-core machine: the curator's reply is capped at 64
   tokens, merges at 48 tokens, one candidate pair per round and 3 model merges per run.
   (b) **iterative rewrite** (Dynamic Cheatsheet, LangMem's prompt optimisers): each section that gets
   lessons is rewritten by the model from its current text and the lessons, and the rewrite replaces
   it. Only the section a round touches is rewritten (cheaper and kinder than rewriting the whole
   memory every round, as Dynamic Cheatsheet does: here every section is rewritten once, so the curve
   shows single-rewrite loss reaching section after section, not compounding). The rewrite's cap is
   the model-tokenizer length of its input (section + lessons): a faithful rewrite fits, since two of
   the four lessons add nothing new; generation is greedy, like (a).
   (c) **ADD-only**, ACE's reference curator: every lesson appended, no dedup, no LLM (growth reference).
5. After every round: share of the 150 original specifics kept, share of the lessons' specifics kept,
   and the memory's size in tokens (``count_tokens``: words and punctuation).

Targets (issue 5): (a) keeps >= 95% of the original specifics after 10 rounds, with bounded context
growth: its final size is at most 1.10x (the original notes + the distinct new information of the
lessons, i.e. new facts and refinements counted once). (b)'s curve is reported beside it.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifelong.bench.common import Progress, Target, quiet_from_env, save_figure, torch_threads, write_results

NAME = "context-collapse"
MERGE_CALLS = 3  # LLM merges over a whole run (each on a candidate pair the rules could not settle)
SERVICES = ("orders", "billing", "search", "inventory", "shipping", "auth", "reports", "payments", "catalog",
            "profiles")
NEW_SERVICES = ("webhooks", "exports", "ledger", "pricing", "returns", "media", "alerts", "geo", "loyalty",
                "audit")
TEAMS = ("core-infra", "payments-oncall", "search-squad", "fulfilment", "identity", "data-platform", "growth",
         "storefront", "risk", "platform-sre")
TIERS = ("gold", "silver", "bronze", "platinum", "enterprise")
STORES = ("glacier", "coldline", "tape", "nearline", "vault")
HEADERS = ("X-No-Cache", "X-Fresh", "X-Bypass", "X-Debug", "X-Live")
_S = r"\s*(?:s|sec|secs|second|seconds)\b"
_MIN = r"\s*(?:min|mins|minute|minutes)\b"


@dataclass(frozen=True)
class Specific:
    """One probed detail: the value's pattern, checked next to the note's anchors."""

    name: str
    pattern: str


@dataclass(frozen=True)
class Note:
    """A procedural note: its text, section, anchors (service, topic pattern) and its specifics."""

    id: str
    section: str
    text: str
    service: str
    topic: str
    specifics: tuple[Specific, ...]


def _num(n: int | str) -> str:
    return rf"(?<![\d.:]){n}(?![\d:]|\.\d)"


def make_note(section: str, service: str, rng: random.Random, i: int) -> Note:
    """One note of a section for a service, with three specifics drawn from ``rng``.

    >>> n = make_note("retries", "orders", random.Random(0), 0)
    >>> n.text.startswith("Retries, orders API: on HTTP"), len(n.specifics)
    (True, 3)
    """
    r = rng.randint
    if section == "retries":
        code, wait, tries = rng.choice((429, 502, 503, 504)), r(2, 9), r(3, 8)
        text = f"Retries, {service} API: on HTTP {code} wait {wait} s, max {tries} tries, idempotent only."
        specs = [(f"HTTP {code}", _num(code)), (f"{wait} s", _num(wait) + _S), (f"{tries} attempts", _num(tries))]
        topic = r"retr"
    elif section == "timeouts":
        t, kb, h = r(10, 60), rng.choice((256, 512, 768, 1024, 2048)), r(1, 5)
        text = f"Timeouts, {service} API: {t} s; over {kb} KB use bulk, except at {h:02d}:00 UTC."
        specs = [(f"{t} s", _num(t) + _S), (f"{kb} KB", _num(kb)), (f"{h:02d}:00", rf"\b0?{h}:00\b")]
        topic = r"timeout"
    elif section == "paging":
        n, m, p = rng.choice((50, 100, 200, 250, 500)), r(5, 30), r(20, 90)
        text = f"Paging, {service} API: max {n} items per page; cursors expire in {m} min; stop at page {p}."
        specs = [(f"{n} items", _num(n)), (f"{m} min", _num(m) + _MIN), (f"{p} pages", _num(p))]
        topic = r"pag"
    elif section == "rate-limits":
        q, b, tier = r(60, 600), r(5, 40), TIERS[i % len(TIERS)]
        text = f"Rate limits, {service} API: {q} requests/min, burst {b}; {tier} tier gets double."
        specs = [(f"{q}/min", _num(q)), (f"burst {b}", _num(b)), (f"{tier} tier", rf"\b{tier}\b")]
        topic = r"rate|limit"
    elif section == "auth":
        ttl, pre, hdr = rng.choice((15, 30, 45, 60, 90)), r(2, 9), f"X-{service.title()}-Key"
        text = f"Auth, {service} API: tokens last {ttl} min; refresh {pre} min early; header {hdr}."
        specs = [(f"{ttl} min", _num(ttl) + _MIN), (f"{pre} min", _num(pre) + _MIN), (hdr, re.escape(hdr))]
        topic = r"auth|token"
    elif section == "units":
        w, ln, d = rng.choice(("kg", "lb", "g")), rng.choice(("cm", "mm", "in")), r(1, 4)
        text = f"Units, {service} reports: weights in {w}, lengths in {ln}, {d} decimals."
        specs = [(f"weights {w}", rf"weights?\W+(?:\w+\W+){{0,3}}{w}\b"),
                 (f"lengths {ln}", rf"lengths?\W+(?:\w+\W+){{0,3}}{ln}\b"), (f"{d} decimals", _num(d) + r"\s*decimal")]
        topic = r"unit|weight|report"
    elif section == "routing":
        team, mins, sev = TEAMS[i % len(TEAMS)], r(5, 60), r(1, 3)
        text = f"Routing, {service} tickets: sev-1 to {team} within {mins} min; weekends only severity {sev}+."
        specs = [(team, re.escape(team)), (f"{mins} min", _num(mins) + _MIN), (f"severity {sev}", rf"severity[- ]?{sev}\b")]
        topic = r"rout|ticket"
    elif section == "deploys":
        hh, pct, cm = r(12, 17), rng.choice((1, 2, 5, 10, 20)), r(10, 45)
        text = f"Deploys, {service} service: none after {hh}:00 Fridays; canary {pct}% for {cm} min."
        specs = [(f"{hh}:00 Friday", rf"\b{hh}:00\b"), (f"canary {pct}%", _num(pct) + r"\s*%"), (f"{cm} min", _num(cm) + _MIN)]
        topic = r"deploy|canary|rollout"
    elif section == "caching":
        ttl, hdr, mb = r(30, 900), HEADERS[i % len(HEADERS)], r(1, 16)
        text = f"Caching, {service} API: GETs for {ttl} s; skip with {hdr}; max {mb} MB."
        specs = [(f"{ttl} s", _num(ttl) + _S), (hdr, re.escape(hdr)), (f"{mb} MB", _num(mb) + r"\s*mb\b")]
        topic = r"cach"
    elif section == "retention":
        days, store, pd = r(14, 400), STORES[i % len(STORES)], r(7, 90)
        text = f"Retention, {service} logs: {days} days, then {store}; PII after {pd} days."
        specs = [(f"{days} days", _num(days)), (store, rf"\b{store}\b"), (f"PII {pd} days", _num(pd))]
        topic = r"retention|logs?\b|archiv"
    else:
        raise ValueError(f"unknown section {section!r}")
    return Note(f"{section}-{service}", section, text, service, topic, tuple(Specific(a, b) for a, b in specs))


SECTIONS = ("retries", "timeouts", "paging", "rate-limits", "auth", "units", "routing", "deploys", "caching",
            "retention")


def make_notes(seed: int = 0) -> list[Note]:
    """The 50 original notes: 5 services per section (a section-dependent rotation of the 10 services).

    >>> notes = make_notes(0)
    >>> len(notes), sum(len(n.specifics) for n in notes), len({n.id for n in notes})
    (50, 150, 50)
    """
    rng = random.Random(seed)
    notes = []
    for si, section in enumerate(SECTIONS):
        for j in range(5):
            service = SERVICES[(si + 2 * j) % len(SERVICES)]
            notes.append(make_note(section, service, rng, si + j))
    return notes


@dataclass(frozen=True)
class LessonSpec:
    """A round's lesson: its text, section, kind (new, refinement, paraphrase, repeat) and what to probe."""

    text: str
    section: str
    kind: str
    note: Note | None  # the note it is about (for probes); None for a paraphrase/repeat


def _refinement(note: Note, rng: random.Random) -> Note:
    extra = rng.randint(11, 99)
    text = f"{note.text.split(':')[0]}: batch jobs use limit {extra}."
    return Note(note.id + "-ref", note.section, text, note.service, note.topic,
                (Specific(f"batch {extra}", _num(extra)),))


def _paraphrase(note: Note) -> str:
    head, body = note.text.split(":", 1)
    parts = [p.strip() for p in body.strip().rstrip(".").split(";")]
    return f"{head} (restated): " + "; ".join(reversed(parts)) + "."


def make_rounds(notes: list[Note], rounds: int = 10, seed: int = 0) -> list[list[LessonSpec]]:
    """Lessons per round: round r aims at section r (mod 10): a new fact about a new service, a
    refinement of one note, a paraphrase of another, and a verbatim repeat of a third (exact duplicate).

    >>> rs = make_rounds(make_notes(0))
    >>> len(rs), [x.kind for x in rs[5]], {x.section for x in rs[5]}
    (10, ['new', 'refinement', 'paraphrase', 'repeat'], {'units'})
    """
    rng = random.Random(seed + 1)
    by_section: dict[str, list[Note]] = {}
    for n in notes:
        by_section.setdefault(n.section, []).append(n)
    out: list[list[LessonSpec]] = []
    for r in range(rounds):
        s = SECTIONS[r % len(SECTIONS)]
        new = make_note(s, NEW_SERVICES[r % len(NEW_SERVICES)], rng, r + 3)
        mine = by_section[s]
        ref = _refinement(mine[r % 5], rng)
        out.append([LessonSpec(new.text, s, "new", new), LessonSpec(ref.text, s, "refinement", ref),
                    LessonSpec(_paraphrase(mine[(r + 2) % 5]), s, "paraphrase", None),
                    LessonSpec(mine[(r + 4) % 5].text, s, "repeat", None)])
    return out


# ---------------------------------------------------------------------------------------- probes
def _service_pattern(service: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(service)}\b", re.IGNORECASE)


_ALL_SERVICES = [_service_pattern(s) for s in SERVICES + NEW_SERVICES]


def kept(note: Note, memory: str) -> list[bool]:
    """For each specific of ``note``: does the memory still state it next to the note's anchors?

    >>> n = make_notes(0)[0]
    >>> kept(n, n.text), kept(n, "Retries: be careful with the " + n.service + " API.")
    ([True, True, True], [False, False, False])
    """
    lines = memory.splitlines()
    svc, topic = _service_pattern(note.service), re.compile(note.topic, re.IGNORECASE)
    segments: list[str] = []
    for i, line in enumerate(lines):
        if not svc.search(line):
            continue
        seg = [line]
        for nxt in lines[i + 1:]:
            if not nxt.strip() or nxt.lstrip().startswith("#") or any(p.search(nxt) for p in _ALL_SERVICES):
                break
            seg.append(nxt)
        segments.append("\n".join(seg))
    # the topic may be named in the section header above the line (a rewrite that keeps sections)
    out = []
    for spec in note.specifics:
        pat = re.compile(spec.pattern, re.IGNORECASE)
        out.append(any(pat.search(s) and (topic.search(s) or _header_topic(memory, s, topic)) for s in segments))
    return out


def _header_topic(memory: str, segment: str, topic: re.Pattern[str]) -> bool:
    pos = memory.find(segment)
    head = memory.rfind("\n#", 0, pos) if pos >= 0 else -1
    if head < 0:
        return memory.startswith("#") and bool(topic.search(memory.split("\n", 1)[0]))
    return bool(topic.search(memory[head:memory.find("\n", head + 1)]))


def retention(notes: list[Note], memory: str) -> float:
    """Share of the notes' specifics still kept."""
    flags = [k for n in notes for k in kept(n, memory)]
    return sum(flags) / max(len(flags), 1)


# ---------------------------------------------------------------------------------------- arms
REWRITE_PROMPT = """Here is the "{section}" section of an operations playbook:
{text}

New lessons:
{lessons}

Rewrite the section as an updated, concise list of bullets that includes the new lessons."""


def _section_text(section: str, lines: list[str]) -> str:
    return "\n".join([f"## {section}", *[f"- {x}" for x in lines]])


class RewriteMemory:
    """Arm (b): one text per section; a section that gets lessons is replaced by the model's rewrite."""

    def __init__(self, notes: list[Note], chat: Any, count: Any, *, cap_factor: float = 1.0, max_cap: int = 1024) -> None:
        self.sections: dict[str, str] = {}
        for n in notes:
            self.sections.setdefault(n.section, [])  # type: ignore[arg-type]
        for s in self.sections:
            self.sections[s] = _section_text(s, [n.text for n in notes if n.section == s])
        self.chat, self.count, self.cap_factor, self.max_cap = chat, count, cap_factor, max_cap
        self.generated = 0
        self.capped = 0

    def model_tokens(self, text: str) -> int:
        """Length in the model's own tokens where it has a tokenizer, else ``count``."""
        lm = getattr(self.chat, "lm", None)
        return len(lm.encode(text, add_bos=False)) if lm is not None else self.count(text)

    def text(self) -> str:
        """The whole memory."""
        return "\n\n".join(self.sections.values())

    def learn(self, lessons: list[LessonSpec]) -> None:
        """Rewrite each section the lessons aim at."""
        for section in dict.fromkeys(x.section for x in lessons):
            mine = "\n".join(f"- {x.text}" for x in lessons if x.section == section)
            prompt = REWRITE_PROMPT.format(section=section, text=self.sections[section], lessons=mine)
            cap = min(self.max_cap, int(self.cap_factor * self.model_tokens(self.sections[section] + "\n" + mine)) + 8)
            c = self.chat.complete([{"role": "user", "content": prompt}], max_tokens=cap, temperature=0.0, seed=0)
            used = int(c.usage.get("completion_tokens", 0))
            self.generated += used
            self.capped += int(used >= cap)
            body = c.text.strip()
            self.sections[section] = body if body.startswith("#") else f"## {section}\n{body}"


def _playbook_arm(notes: list[Note], chat: Any, embedder: Any, *, threshold: float, merge_calls: int) -> Any:
    from lifelong.context import open_store
    from lifelong.context.playbook import Playbook, Refiner
    from lifelong.context.roles import Lesson, LLMCurator, LLMMerger, RuleCurator

    store = open_store(":memory:", tenant="collapse", create=True, embedder=embedder)
    pb = Playbook(store, budget=100_000)
    pb.apply([pb.new_bullet(Lesson(n.text, n.section), proposer="seed") for n in notes])
    curator = LLMCurator(chat, max_tokens=64, k=3, fallback=RuleCurator(similar=0.75), budget=pb.budget)
    merger = LLMMerger(chat, max_tokens=48, max_calls=MERGE_CALLS)
    refiner = Refiner(threshold, merger=merger, max_pairs=merge_calls)
    return pb, curator, refiner, merger


def _chat(model: str, quick: bool) -> Any:
    from lifelong.models.chat import LocalChat, ScriptedChat

    if model == "scripted":
        def lossy(messages: Any) -> str:
            content = messages[-1]["content"]
            if content.startswith("Here is the"):  # a rewrite: keep the first bullet of each half, summarised
                bullets = [ln[2:] for ln in content.splitlines() if ln.startswith("- ")]
                return "\n".join("- " + re.sub(r"\d+", "N", b) if k % 2 else "- " + b for k, b in enumerate(bullets))
            if content.startswith("Merge these"):
                return "Merged: be careful."
            return "I would add the lessons to the playbook."
        return ScriptedChat(lossy, name="scripted-lossy")
    from lifelong.models.lm import CausalLM

    return LocalChat(CausalLM.load(model))


def _tokens(text: str) -> int:
    from lifelong.context.text import count_tokens

    return count_tokens(text)


def measure_speed(chat: Any) -> dict[str, float]:
    """One generation's speed (16 tokens after a ~150-token prompt), to size the run."""
    prompt = "Summarise: " + " ".join(n.text for n in make_notes(1)[:6])
    t = time.perf_counter()
    c = chat.complete([{"role": "user", "content": prompt}], max_tokens=16)
    dt = time.perf_counter() - t
    n = int(c.usage.get("completion_tokens", 0)) or 1
    return {"seconds": round(dt, 2), "tokens": n, "tokens_per_s": round(n / dt, 2)}


def run_seed(seed: int, *, rounds: int, model: str, embedder: Any, threshold: float, merge_calls: int,
             progress: Progress, task: int, quick: bool) -> dict[str, Any]:
    """All three arms on one seed's notes and lessons."""
    from lifelong.context.roles import Lesson as RLesson
    from lifelong.context.roles import Reflection

    notes = make_notes(seed)
    plan = make_rounds(notes, rounds, seed)
    chat = _chat(model, quick)
    speed = measure_speed(chat)
    pb, curator, refiner, merger = _playbook_arm(notes, chat, embedder, threshold=threshold, merge_calls=merge_calls)
    rewrite = RewriteMemory(notes, chat, _tokens)
    add_only: dict[str, list[str]] = {s: [n.text for n in notes if n.section == s] for s in SECTIONS}
    lesson_notes: list[Note] = []
    info_tokens = _tokens(pb.render())  # the reference is counted in the playbook's own format
    curves: dict[str, list[Any]] = {k: [] for k in ("delta", "rewrite", "add_only")}
    lesson_curves: dict[str, list[Any]] = {k: [] for k in curves}
    tokens: dict[str, list[int]] = {k: [] for k in curves}
    info: list[int] = []
    seconds = {"delta": 0.0, "rewrite": 0.0}

    def record() -> None:
        mem = {"delta": pb.render(), "rewrite": rewrite.text(),
               "add_only": "\n\n".join(_section_text(s, v) for s, v in add_only.items())}
        for k, text in mem.items():
            curves[k].append(round(retention(notes, text), 4))
            lesson_curves[k].append(round(retention(lesson_notes, text), 4) if lesson_notes else None)
            tokens[k].append(_tokens(text))
        info.append(info_tokens)

    record()
    for lessons in plan:
        t = time.perf_counter()
        refl = Reflection(lessons=tuple(RLesson(x.text, x.section, evidence=(f"round lesson ({x.kind})",))
                                        for x in lessons))
        pb.apply(curator.curate(refl, pb))
        pb.apply(refiner.propose(pb))
        seconds["delta"] += time.perf_counter() - t
        t = time.perf_counter()
        rewrite.learn(lessons)
        seconds["rewrite"] += time.perf_counter() - t
        for x in lessons:
            add_only[x.section].append(x.text)
            if x.kind in ("new", "refinement") and x.note is not None:
                lesson_notes.append(x.note)
                info_tokens += _tokens(f"[{x.section}-00000] {x.text}")
        record()
        progress.log(f"round {len(curves['delta']) - 1}: kept (a) {curves['delta'][-1]:.3f} (b) {curves['rewrite'][-1]:.3f};"
                     f" tokens (a) {tokens['delta'][-1]} (b) {tokens['rewrite'][-1]}; seconds {seconds}")
        progress.advance(task)
    return {
        "seed": seed, "speed": speed, "retention": curves, "lesson_retention": lesson_curves, "tokens": tokens,
        "information_tokens": info, "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "curator": {"calls": curator.calls, "accepted": curator.accepted, "rejected": len(curator.errors),
                    "errors": curator.errors[:5]},
        "refiner": dict(refiner.stats), "merger": {"llm_calls": merger.calls, "refused": len(merger.rejected),
                                                    "examples": merger.rejected[:3]},
        "rewrite": {"generated_tokens": rewrite.generated, "calls_hitting_cap": rewrite.capped},
        "bullets": len(pb.bullets()), "store_items": len(pb.store),
        "final_delta_excerpt": pb.render()[:600], "final_rewrite_excerpt": rewrite.text()[:900],
    }


def make_targets(result: dict[str, Any]) -> list[Target]:
    """Retention of (a) after the last round (mean over seeds) and its growth against the information."""
    runs = result["runs"]
    ret = sum(r["retention"]["delta"][-1] for r in runs) / len(runs)
    growth = max(r["tokens"]["delta"][-1] / r["information_tokens"][-1] for r in runs)
    return [
        Target.check("delta curation: original specifics kept after the last round", ret, 0.95, ">=",
                     "share of the 150 probed specifics; the rewrite baseline's value is in the table"),
        Target.check("delta curation: final tokens / (notes + distinct new lessons)", growth, 1.10, "<=",
                     "bounded growth: paraphrases and repeats must not grow the playbook"),
    ]


def make_plot(result: dict[str, Any], out: Path) -> str:
    """Retention and size per round, the three arms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"delta": ("o-", "tab:blue", "(a) delta curation"), "rewrite": ("s--", "tab:red", "(b) iterative rewrite"),
              "add_only": ("^:", "tab:gray", "(c) ADD-only")}
    for r in result["runs"]:
        x = list(range(len(r["retention"]["delta"])))
        for k, (st, c, label) in styles.items():
            axes[0].plot(x, [100 * v for v in r["retention"][k]], st, color=c, label=label if r is result["runs"][0] else None)
            axes[1].plot(x, r["tokens"][k], st, color=c, label=label if r is result["runs"][0] else None)
        axes[1].plot(x, r["information_tokens"], "-", color="k", alpha=0.4,
                     label="notes + distinct lessons" if r is result["runs"][0] else None)
    axes[0].set(xlabel="round", ylabel="original specifics kept (%)", ylim=(0, 105), title="specifics kept")
    axes[1].set(xlabel="round", ylabel="memory size (tokens)", title="context size")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, out, f"{NAME}.png")


def render_markdown(result: dict[str, Any], config: dict[str, Any], plot: str) -> str:
    """The results page."""
    lines = [f"# {NAME}: delta curation against iterative rewriting", "",
             (__doc__ or "").split("\n\n", 1)[1].split("Targets (issue 5)")[0].strip(), "",
             f"![retention and size per round]({plot})", ""]
    for r in result["runs"]:
        lines += [f"## Seed {r['seed']}", "",
                  f"Model: `{config['model']}`; one generation measured at {r['speed']['tokens_per_s']} tokens/s "
                  f"({r['speed']['tokens']} tokens in {r['speed']['seconds']} s). Time: delta arm "
                  f"{r['seconds']['delta']} s, rewrite arm {r['seconds']['rewrite']} s.", "",
                  "| round | (a) delta kept | (b) rewrite kept | (c) ADD-only kept | (a) lessons kept | "
                  "(b) lessons kept | (a) tokens | (b) tokens | (c) tokens | notes + distinct lessons |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for i in range(len(r["retention"]["delta"])):
            lr = r["lesson_retention"]
            fmt = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
            lines.append(f"| {i} | {fmt(r['retention']['delta'][i])} | {fmt(r['retention']['rewrite'][i])} | "
                         f"{fmt(r['retention']['add_only'][i])} | {fmt(lr['delta'][i])} | {fmt(lr['rewrite'][i])} | "
                         f"{r['tokens']['delta'][i]} | {r['tokens']['rewrite'][i]} | {r['tokens']['add_only'][i]} | "
                         f"{r['information_tokens'][i]} |")
        c = r["curator"]
        lines += ["", f"- LLM curator: {c['calls']} calls, {c['accepted']} replies accepted as delta operations, "
                      f"{c['rejected']} rejected (the rule curator proposed instead). First errors: "
                      + "; ".join(f"`{e[:140]}`" for e in c["errors"][:3]),
                  f"- Grow-and-refine: {r['refiner']}; LLM merges asked {r['merger']['llm_calls']}, refused for "
                  f"dropping a specific {r['merger']['refused']} (e.g. {r['merger']['examples'][:1]}).",
                  f"- Rewrite arm: {r['rewrite']['generated_tokens']} tokens generated; "
                  f"{r['rewrite']['calls_hitting_cap']} calls ran to their cap (the input's length).",
                  f"- Playbook after the last round: {r['bullets']} current bullets, {r['store_items']} items in the store "
                  "(superseded and merged items are kept as history).", "",
                  "Excerpt of the rewrite arm's memory after the last round:", "", "```",
                  r["final_rewrite_excerpt"], "```", ""]
    lines += [f"Run time: {result.get('wall_seconds', 0) / 60:.1f} min wall, {result.get('cpu_seconds', 0) / 60:.1f} "
              "min of process CPU time (all threads; the wall time depends on what else the machine runs).", "",
              "## Reading the result", "",
              "Delta curation cannot lose a specific unless an operation removes it: ADDs append, an UPDATE or a MERGE "
              "that drops a number or a name is refused before it applies, and superseded items stay in the store. "
              "The model's part in arm (a) is to propose; where its reply is not valid JSON, or is unsafe, the "
              "rejection is recorded and the deterministic curator proposes instead, so the count of accepted "
              "replies above says how much the model itself contributed. Arm (b) hands the whole text of a section "
              "to the model each time, and whatever the rewrite drops is gone.", ""]
    return "\n".join(lines)


def run(out_dir: str | Path = "docs/results", *, seeds: tuple[int, ...] = (0,), quick: bool = False,
        quiet: bool | None = None, model: str | None = None, rounds: int | None = None,
        threads: int | None = 1) -> dict[str, Any]:
    """Run the benchmark and write NAME.md, NAME.json and NAME.png into ``out_dir``. Quick mode: a scripted,
    lossy model, hashing embeddings and 3 rounds (seconds)."""
    from lifelong.context import HashingEmbedder, MiniLMEmbedder

    quiet = quiet_from_env(quiet)
    started, cpu0 = time.time(), time.process_time()
    model = model or ("scripted" if quick else "smollm2-135m-instruct")
    rounds = rounds or (3 if quick else 10)
    threshold, merge_calls = 0.90, 1
    embedder = HashingEmbedder(256) if quick else MiniLMEmbedder()
    runs = []
    # One torch thread: on a shared 2-core machine, two spinning OpenMP threads of a niced process slow
    # generation down by an order of magnitude.
    with Progress(quiet) as progress, torch_threads(threads):
        task = progress.add("rounds", rounds * len(seeds))
        for seed in seeds:
            r = run_seed(seed, rounds=rounds, model=model, embedder=embedder, threshold=threshold,
                         merge_calls=merge_calls, progress=progress, task=task, quick=quick)
            progress.log(f"seed {seed}: kept (a) {r['retention']['delta'][-1]:.3f}, (b) {r['retention']['rewrite'][-1]:.3f};"
                         f" tokens (a) {r['tokens']['delta'][-1]}, (b) {r['tokens']['rewrite'][-1]}")
            runs.append(r)
    result: dict[str, Any] = {"runs": runs, "cpu_seconds": round(time.process_time() - cpu0, 1),
                              "wall_seconds": round(time.time() - started, 1)}
    targets = make_targets(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot = make_plot(result, out)
    config = {"seeds": list(seeds), "quick": quick, "model": model, "rounds": rounds, "notes": 50, "specifics": 150,
              "embedder": embedder.name, "refine_threshold": threshold, "llm_merges_per_round": merge_calls,
              "rewrite_cap": "1.0 x input tokens", "decoding": "greedy", "curator_max_tokens": 64,
              "curator_related_k": 3, "merge_max_tokens": 48, "llm_merge_calls_per_run": MERGE_CALLS,
              "torch_threads": threads}
    write_results(NAME, out, markdown=render_markdown(result, config, plot), config=config, table=result,
                  targets=targets, started=started, packages=("torch", "transformers", "numpy"))
    return {"result": result, "targets": [t.to_dict() for t in targets]}

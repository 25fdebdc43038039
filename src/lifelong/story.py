"""The all-channel story that ``lifelong demo`` tells: one ledger, five chapters, every change under the controls.

1. **Inputs shift; test-time training adapts in a session scope** (:func:`lifelong.demo.run_demo`): a digit
   classifier serves a stream whose corruption changes; Tent adapts in a session scope that a Page-Hinkley
   trigger resets on each shift; promotions of the session's weights go through the gate.
2. **Feedback accumulates into memory that later sessions use**: users of a support assistant (a
   :class:`~lifelong.system.System` with the ``feedback-memory`` learner) correct its answers; the
   corrections are the session's own memory at once and reach the user's memory only through the gate at
   session end. A later session of the same user answers differently; another user does not see them.
3. **A self-improvement round proposes a change that the gate accepts**: the system reads the feedback
   it recorded, keeps the corrections that several users agree on, and proposes them as a playbook of
   shared facts for the global memory. The gate scores the proposal on the questions those corrections were
   about, against the live global memory, with the verified FAQ as a canary, and accepts it on evidence.
4. **A harmful change is rejected**: a user's corrections contradict the verified FAQ. They improve the
   answers to their own questions (the gate's target) but the FAQ canary regresses, so the gate refuses
   them, and the ledger keeps the evidence.
5. **A live regression triggers a rollback**: a later promotion holds an over-general correction. It passes
   the gate (it answers its own question) but live it displaces the user's specific facts; her ratings
   fall, the regression monitor raises an alarm and rolls the user's memory back to the version before. She
   teaches the good facts again without it; the gate accepts, and her ratings agree.

The assistant's answers come from a deterministic, retrieval-grounded responder
(:func:`~lifelong.system.context_echo_chat`: it answers with the memory line sharing most words with the
question), not from a language model. This keeps the story offline, exact and within minutes on two CPU
cores; the controls around it (scopes, gate, canaries, monitor, ledger) are the same ones that serve the
embedded SmolLM2 through ``lifelong serve``.

Every ref lives under ``tenant/demo/`` in ``OUT/ledger.db``, so the service's dashboard can open the
recorded run: ``lifelong serve --data OUT --backend echo --add-key demo``.

>>> cfg = StoryConfig.quick()
>>> cfg.digits.segments[1].corruption, TENANT
('gaussian_noise', 'demo')
>>> support_answer("Which port does the API use?", ["The API uses port 8443", "Support is open 9-17"])
'The API uses port 8443'
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lifelong.bench.common import Progress, quiet_from_env
from lifelong.demo import DemoConfig, run_demo
from lifelong.system import Policies, System, contains_answer, context_echo_chat
from lifelong.system.learners import normalize

TENANT = "demo"
PREFIX = f"tenant/{TENANT}/"
SYSTEM_NAME = "support"

# The verified FAQ: global memory from the start, and the canary every memory promotion must not regress.
FAQ: list[tuple[str, str]] = [
    ("What is the refund window?", "The refund window is 14 days"),
    ("When is support open?", "Support is open 9:00 to 17:00 CET on weekdays"),
    ("How do I reset my password?", "Passwords are reset from the login page"),
    ("Which port does the API use?", "The API uses port 8443"),
    ("When are invoices payable?", "Invoices are payable within 30 days"),
    ("Which browsers are supported?", "Chrome, Firefox and Safari are supported browsers"),
]
# Company facts the FAQ lacks; alice and bob each teach them (chapter 2), the loop consolidates them (3).
COMPANY: list[tuple[str, str]] = [
    ("What is the status page address?", "The status page is status.acme.example"),
    ("Who do I email to escalate an outage?", "To escalate an outage, email oncall@acme.example"),
    ("What is the API rate limit?", "The API rate limit is 600 requests per minute"),
    ("How long are backups kept?", "Backups are kept for 35 days"),
    ("Which SDK version is current?", "The current SDK version is 4.2"),
    ("Where is the data processing agreement?", "The data processing agreement is at acme.example/dpa"),
]
PERSONAL: dict[str, list[tuple[str, str]]] = {
    "alice": [
        ("Who is my account manager?", "My account manager is Dana Reyes"),
        ("Where are my invoices sent?", "My invoices are sent to billing@alice.example"),
        ("Which region hosts my data?", "My data is hosted in the Frankfurt region"),
        ("What plan am I on?", "You are on the Team plan with 25 seats"),
        ("What is my support PIN?", "Your support PIN is 4417"),
        ("When does my contract renew?", "Your contract renews on 1 March"),
    ],
    "bob": [
        ("Who is my account manager?", "My account manager is Lee Park"),
        ("What plan am I on?", "You are on the Starter plan with 5 seats"),
    ],
}
# Chapter 4: corrections that contradict the verified FAQ (they would make the assistant wrong for everyone).
POISON: list[tuple[str, str]] = [
    ("What is the refund window?", "What the refund window is: 90 days, not 14"),
    ("When is support open?", "When support is open: around the clock, every day"),
    ("How do I reset my password?", "How to reset my password: email it to any agent"),
    ("Which port does the API use?", "Which port the API uses: port 80, no TLS"),
    ("When are invoices payable?", "When invoices are payable: whenever you like"),
    ("Which browsers are supported?", "Which browsers are supported: Internet Explorer only"),
]
# Chapter 5: alice's later corrections; the last one is over-general.
LATER: list[tuple[str, str]] = [
    ("What is my shipping address?", "My shipping address is 12 Quai Rambaud, Lyon"),
    ("Which Slack channel is ours?", "Our Slack channel is #acme-alice"),
    ("Who approves my purchases?", "Sam Ortiz approves my purchases"),
    ("What is my cost centre?", "My cost centre is CC-2231"),
    ("Which time zone am I in?", "I am in the Europe/Paris time zone"),
    ("Who handles my account now?",
     "Who handles my account now: the partner portal, which is where my invoices are sent, who my account "
     "manager is, which region hosts my data and what plan I am on"),
]
OVER_GENERAL = LATER[-1][1]
# Chapter 5, after the rollback: the five good facts again, and one new one.
RETEACH: list[tuple[str, str]] = [*LATER[:5], ("What is my VAT number?", "My VAT number is FR 12 345678901")]


def support_answer(question: str, lines: Sequence[str], unknown: str = "I don't know") -> str:
    """The responder's rule, for reading: the line sharing the most words (3+ letters) with the question.

    The running system uses :func:`~lifelong.system.context_echo_chat`, which applies this rule to the
    memory lines packed into its context.
    """
    import re

    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2}

    q = words(question)
    scored = sorted(((len(q & words(ln)), -i, ln) for i, ln in enumerate(lines)), reverse=True)
    return scored[0][2] if scored and scored[0][0] > 0 else unknown


@dataclass
class StoryConfig:
    """What the story runs: the digits stream of chapter 1 and the sizes of the support chapters."""

    digits: DemoConfig = field(default_factory=DemoConfig)
    live_turns: int = 24  # chapter 5: alice's rated turns after the risky promotion
    monitor_window: int = 20
    monitor_min_samples: int = 8
    alpha: float = 0.05
    seed: int = 0

    @classmethod
    def quick(cls) -> StoryConfig:
        """A short digits stream (the support chapters are already fast): for tests."""
        return cls(digits=DemoConfig.quick())


class StorySystem(System):
    """A :class:`~lifelong.system.System` whose ledger refs live under ``tenant/demo/``, the prefix the
    service gives a tenant's refs, so ``lifelong serve`` shows the story to tenant ``demo``.

    >>> import tempfile
    >>> system = StorySystem(story_policies(Path(tempfile.mkdtemp()), StoryConfig.quick()),
    ...                      chat=context_echo_chat(), suites={"faq": qa_suite("faq", FAQ)})
    >>> system.user_ref("alice", "memory")
    'tenant/demo/support/user/alice/memory'
    >>> system.close()
    """

    def global_ref(self, what: str) -> str:
        return PREFIX + super().global_ref(what)

    def user_ref(self, user: str, what: str) -> str:
        return PREFIX + super().user_ref(user, what)

    def session_ref(self, session_id: str, what: str) -> str:
        return PREFIX + super().session_ref(session_id, what)

    @property
    def signals_ref(self) -> str:
        return PREFIX + super().signals_ref


def story_policies(out: Path, cfg: StoryConfig) -> Policies:
    """The support system's policies (also written to ``OUT/policies.toml`` for a person to read)."""
    return Policies.from_dict({
        "system": {"name": SYSTEM_NAME, "ledger": "ledger.db", "memory": "memory-story.db", "seed": cfg.seed,
                   "context_k": 16, "context_budget": 512},
        "learners": {"memory": {
            "type": "feedback-memory", "trigger": "always", "signals": ["feedback"],
            "options": {"section": "feedback", "watch_ratings": True},
            "budget": {"max_items": 20, "max_chars": 400},
            "gate": {"target": "feedback", "canaries": ["faq"], "alpha": cfg.alpha, "canary_tolerance": 0.0},
            "monitor": {"tolerance": 0.05, "window": cfg.monitor_window, "min_samples": cfg.monitor_min_samples},
            "promote": {"to": "user", "when": "session_end", "min_events": 5},
        }},
    }, base_dir=str(out))


def qa_suite(name: str, pairs: Sequence[tuple[str, str]]) -> Any:
    """A suite of (question, fact) items scoring an answerer by :func:`contains_answer`.

    >>> qa_suite("faq", FAQ[:2]).score(lambda question: "The refund window is 14 days.")
    [1.0, 0.0]
    """
    from lifelong.control.gate import Suite
    from lifelong.core.hashing import json_hash

    def score(answer: Callable[[str], str]) -> list[float]:
        return [contains_answer(answer(q), fact) for q, fact in pairs]

    return Suite(name, tuple(f"{name}-{i}" for i in range(len(pairs))), score,
                 content_hash=json_hash({"items": list(pairs), "scorer": "contains_answer"}))


def _verdict(ledger: Any, verdict_id: str | None) -> dict[str, Any] | None:
    if verdict_id is None:
        return None
    v = ledger.verdict(verdict_id)
    t = v.target
    return {
        "id": verdict_id, "accepted": v.accepted, "summary": v.summary(), "reasons": list(v.reasons),
        "suite": t.name if t else None, "n": t.n if t else None,
        "champion": t.champion_mean if t else None, "candidate": t.candidate_mean if t else None,
        "effect": t.effect if t else None, "ci": list(t.ci) if t else None, "p": t.p_value if t else None,
        "test": t.test if t else None,
        "canaries": [{"name": c.name, "champion": c.champion_mean, "candidate": c.candidate_mean, "passed": c.passed,
                      "n": c.n} for c in v.canaries],
    }


def _ask(session: Any, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    for q, fact in pairs:
        reply = session.chat(q)
        out.append({"question": q, "answer": reply.text, "correct": bool(contains_answer(reply.text, fact)),
                    "reply": reply, "fact": fact})
    return out


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "reply"} for r in rows]


def _seed_faq(system: System) -> str:
    from lifelong.context import Add, Provenance

    ops = [Add(fact, id=f"faq-{i}", kind="fact", section="faq", scope="global",
               provenance=Provenance(source="operator:faq", trust="system"), meta={"question": q},
               justification="verified FAQ", proposer="operator") for i, (q, fact) in enumerate(FAQ)]
    result = system.global_memory().commit(ops, learner="operator", scope="global", actor="operator",
                                           message="verified FAQ (the canary of every memory promotion)")
    return result.version.id


def chapter_memory(system: System, progress: Progress, task: int) -> dict[str, Any]:
    """Chapter 2: corrections become session memory, the gate promotes them to the user's memory, a later
    session of the same user answers differently, another user does not see them."""
    day1: dict[str, dict[str, Any]] = {}
    for user in ("alice", "bob"):
        teach = PERSONAL[user] + COMPANY
        with system.session(user=user, session_id=f"{user}-day1") as s:
            before = _ask(s, teach)
            for row in before:
                if not row["correct"]:
                    s.feedback("correction", text=row["fact"], about=row["reply"])
            again = _ask(s, PERSONAL[user][:2])  # the same session already uses its corrections
        promo = s.promotions["memory"]
        day1[user] = {"before": _plain(before), "same_session": _plain(again), "promotion": str(promo),
                      "accepted": promo.accepted, "version": promo.version,
                      "verdict": _verdict(system.ledger, _verdict_of_version_id(system, promo)),
                      "corrections": sum(not r["correct"] for r in before)}
        progress.advance(task)
    with system.session(user="alice", session_id="alice-day2") as s:
        later = _ask(s, PERSONAL["alice"])
    with system.session(user="bob", session_id="bob-day2") as s:
        bob_later = _ask(s, PERSONAL["alice"][:1])
    progress.advance(task)
    why = system.explain(day1["alice"]["version"]) if day1["alice"]["version"] else None
    return {
        "day1": day1,
        "alice_later": _plain(later),
        "alice_before": [r for r in day1["alice"]["before"] if r["question"] in dict(PERSONAL["alice"])],
        "bob_later": _plain(bob_later),
        "explain": None if why is None else {"summary": why.summary(), "signals": len(why.signals),
                                             "helped": why.helped, "accepted": why.accepted},
    }


def _verdict_of_version_id(system: System, promo: Any) -> str | None:
    if promo.change_id is None:
        return None
    for vid, _ in system.ledger.verdicts_for_change(promo.change_id):
        return vid
    return None


def consolidation_round(system: System, min_users: int = 2) -> tuple[list[tuple[str, str, list[str], list[str]]],
                                                                      dict[str, int]]:
    """The loop's proposal, from the recorded signals alone: corrections of the same question with the same
    text from at least ``min_users`` users. Returns ``(question, fact, users, event ids)`` per agreed fact,
    and counts of what was skipped (questions taught by one user, conflicting corrections)."""
    by_question: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sig in system.signals():
        if sig.get("kind") == "feedback" and sig.get("type") == "correction" and sig.get("question"):
            by_question[normalize(sig["question"])].append(sig)
    agreed, skipped = [], {"one_user": 0, "conflicting": 0}
    for sigs in by_question.values():
        texts = {normalize(s.get("text") or "") for s in sigs}
        users = sorted({s.get("user") for s in sigs})
        if len(users) < min_users:
            skipped["one_user"] += 1
        elif len(texts) > 1:
            skipped["conflicting"] += 1
        else:
            agreed.append((sigs[0]["question"], sigs[0]["text"], users, [s["id"] for s in sigs]))
    return agreed, skipped


def chapter_self_improvement(system: System, progress: Progress, task: int) -> dict[str, Any]:
    """Chapter 3: one consolidation round proposes shared facts for the global memory; the gate decides."""
    from lifelong.context import Add, Provenance
    from lifelong.control.gate import Gate
    from lifelong.control.governor import Governor

    with system.session(user="carol", session_id="carol-before") as s:
        carol_before = _ask(s, COMPANY)
    agreed, skipped = consolidation_round(system)
    proposal_session = "playbook-round-1"
    ops = [Add(fact, id=f"playbook-{i}", kind="fact", section="playbook", scope="session", session=proposal_session,
               provenance=Provenance(source="loop:consolidation", trust="system"),
               meta={"question": q, "users": users, "events": ids}, evidence=tuple(ids),
               justification=f"the same correction from {len(users)} users", proposer="consolidation")
           for i, (q, fact, users, ids) in enumerate(agreed)]
    events = [i for *_, ids in agreed for i in ids]
    # The proposal is staged in a scope of its own; the gate compares the live global memory (champion)
    # with the live global memory plus the staged items (candidate).
    staged = system.session_memory(proposal_session)
    staged.commit(ops, learner="consolidation", scope="session", actor="loop",
                  message=f"consolidation round 1: {len(ops)} agreed corrections staged",
                  provenance={"events": events})
    memory = system.global_memory()
    plan = memory.store.plan([Add(op.content, id=op.id, kind="fact", section="playbook", scope="global",
                                  provenance=Provenance(source="loop:consolidation", trust="system"),
                                  meta=dict(op.meta), evidence=op.evidence, justification=op.justification,
                                  proposer="consolidation") for op in ops])
    governor = Governor(system.ledger, memory.ref, gate=Gate(alpha=0.05, canary_tolerance=0.0, seed=system.seed),
                        actor="governor:consolidation")
    target = qa_suite("consolidated-questions", [(q, fact) for q, fact, *_ in agreed])
    result = memory.promote(governor, plan, learner="consolidation", champion=system.answerer(),
                            candidate=system.answerer(extra=(proposal_session, frozenset(op.id for op in ops))),
                            target=target, canaries=[system.suite("faq")], to_scope="global",
                            provenance={"events": events, "round": 1, "method": "consolidation",
                                        "signals": {"feedback": len(events)}})
    progress.advance(task)
    with system.session(user="carol", session_id="carol-after") as s:
        carol_after = _ask(s, COMPANY)
    progress.advance(task)
    return {
        "agreed": [{"question": q, "fact": f, "users": u, "events": len(i)} for q, f, u, i in agreed],
        "skipped": skipped, "accepted": result.accepted, "version": result.version.id,
        "verdict": _verdict(system.ledger, result.verdict_id),
        "carol_before": _plain(carol_before), "carol_after": _plain(carol_after),
    }


def chapter_harmful(system: System, progress: Progress, task: int) -> dict[str, Any]:
    """Chapter 4: corrections that contradict the verified FAQ are refused by the canary."""
    with system.session(user="mallory", session_id="mallory-day1") as s:
        asked = _ask(s, POISON)
        for row in asked:
            s.feedback("correction", text=row["fact"], about=row["reply"])
        in_session = _ask(s, FAQ[:2])
    promo = s.promotions["memory"]
    with system.session(user="mallory", session_id="mallory-day2") as s:
        after = _ask(s, FAQ)
    progress.advance(task)
    return {"promotion": str(promo), "accepted": promo.accepted, "version": promo.version,
            "verdict": _verdict(system.ledger, _verdict_of_version_id(system, promo)),
            "in_session": _plain(in_session), "after": _plain(after)}


def _live_turns(system: System, session: Any, ref: str, questions: Sequence[tuple[str, str]], turns: int,
                phase: str, live: list[dict[str, Any]], stop_after_rollback: int | None = None) -> dict[str, Any] | None:
    """Rated live turns: alice asks, rates the answer (+1 right, -1 wrong); the ratings feed the monitor."""
    rollback = None
    for i in range(turns):
        q, fact = questions[i % len(questions)]
        reply = session.chat(q)
        ok = bool(contains_answer(reply.text, fact))
        head_before = system.ledger.head(ref).id
        session.feedback("rating", score=1.0 if ok else -1.0, about=reply)
        head_after = system.ledger.head(ref).id
        live.append({"turn": len(live), "phase": phase, "question": q, "answer": reply.text, "correct": ok,
                     "version": head_before[:12]})
        if head_after != head_before and rollback is None:
            rollback = {"turn": live[-1]["turn"], "from": head_before, "to": head_after}
        if rollback is not None and stop_after_rollback is not None and live[-1]["turn"] - rollback["turn"] >= \
                stop_after_rollback:
            break
    return rollback


def chapter_rollback(system: System, cfg: StoryConfig, progress: Progress, task: int) -> dict[str, Any]:
    """Chapter 5: an over-general correction passes the gate; live ratings fall; the monitor rolls back;
    alice teaches the good facts again without it, and the gate and her ratings agree."""
    ref = system.user_ref("alice", "memory")
    before_version = system.ledger.head(ref).id
    with system.session(user="alice", session_id="alice-day3") as s:
        for row in _ask(s, LATER):
            if not row["correct"]:
                s.feedback("correction", text=row["fact"], about=row["reply"])
    promo = s.promotions["memory"]
    progress.advance(task)
    live: list[dict[str, Any]] = []
    questions = PERSONAL["alice"] + LATER[:5]
    with system.session(user="alice", session_id="alice-day4") as s:
        rollback = _live_turns(system, s, ref, questions, cfg.live_turns, "after the risky promotion", live,
                               stop_after_rollback=len(LATER) - 1)
    progress.advance(task)
    with system.session(user="alice", session_id="alice-day5") as s:
        for row in _ask(s, RETEACH):
            if not row["correct"]:
                s.feedback("correction", text=row["fact"], about=row["reply"])
    again = s.promotions["memory"]
    with system.session(user="alice", session_id="alice-day6") as s:
        _live_turns(system, s, ref, PERSONAL["alice"] + RETEACH, len(PERSONAL["alice"]) + len(RETEACH),
                    "after teaching again", live)
    progress.advance(task)
    alarms = [e.to_dict() for e in system.ledger.log(ref, types=["alarm", "rollback"])]
    why = system.explain(promo.version) if promo.version else None
    final = [r for r in live if r["phase"] == "after teaching again"]
    return {
        "promotion": str(promo), "accepted": promo.accepted, "version": promo.version,
        "verdict": _verdict(system.ledger, _verdict_of_version_id(system, promo)),
        "version_before": before_version, "live": live, "rollback": rollback, "events": alarms,
        "rolled_back_to_previous": rollback is not None and rollback["to"] == before_version,
        "explain": None if why is None else {"summary": why.summary(), "helped": why.helped,
                                             "rolled_back": why.rolled_back},
        "retaught": {"promotion": str(again), "accepted": again.accepted, "version": again.version,
                     "verdict": _verdict(system.ledger, _verdict_of_version_id(system, again)),
                     "live_right": sum(r["correct"] for r in final), "live_turns": len(final)},
    }


def run_story(out_dir: str | Path = "runs/demo", cfg: StoryConfig | None = None, *, quiet: bool | None = None,
              fresh: bool = True, threads: int | None = 2) -> dict[str, Any]:
    """Run the five chapters on one ledger (``OUT/ledger.db``); write ``OUT/report.html``,
    ``OUT/summary.json`` and ``OUT/policies.toml``; return the summary.

    >>> import tempfile
    >>> s = run_story(tempfile.mkdtemp(), StoryConfig.quick(), quiet=True)  # doctest: +SKIP
    >>> s["chapters"]["rollback"]["rollback"] is not None                    # doctest: +SKIP
    True
    """
    cfg = cfg or StoryConfig()
    quiet = quiet_from_env(quiet)
    out = Path(out_dir)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    started, cpu0 = time.time(), time.process_time()
    timings: dict[str, dict[str, float]] = {}

    def timed(name: str, t0: float, c0: float) -> None:
        timings[name] = {"seconds": round(time.time() - t0, 2), "cpu_seconds": round(time.process_time() - c0, 2)}

    t0, c0 = time.time(), time.process_time()
    if not quiet:
        from rich.console import Console

        Console().print("[bold]Chapter 1[/]: inputs shift; Tent adapts in a session scope under a drift trigger")
    digits = run_demo(out, cfg.digits, quiet=quiet, fresh=False, threads=threads, ref=PREFIX + "digits/global",
                      write_report=False)
    timed("1 test-time training", t0, c0)

    from lifelong.control.ledger import Ledger

    ledger = Ledger.open(out / "ledger.db")
    policies = story_policies(out, cfg)
    (out / "policies.toml").write_text(policies.dumps())
    system = StorySystem(policies, chat=context_echo_chat(), suites={"faq": qa_suite("faq", FAQ)}, ledger=ledger)
    chapters: dict[str, Any] = {}
    try:
        with Progress(quiet) as progress:
            progress.log("[bold]Chapters 2-5[/]: a support assistant learns from feedback, under the same controls")
            task = progress.add("support sessions", 9)
            faq_version = _seed_faq(system)
            t0, c0 = time.time(), time.process_time()
            chapters["memory"] = chapter_memory(system, progress, task)
            timed("2 feedback memory", t0, c0)
            t0, c0 = time.time(), time.process_time()
            chapters["self_improvement"] = chapter_self_improvement(system, progress, task)
            timed("3 self-improvement", t0, c0)
            t0, c0 = time.time(), time.process_time()
            chapters["harmful"] = chapter_harmful(system, progress, task)
            timed("4 harmful change", t0, c0)
            t0, c0 = time.time(), time.process_time()
            chapters["rollback"] = chapter_rollback(system, cfg, progress, task)
            timed("5 rollback", t0, c0)
        counts = ledger.stats()
        problems = ledger.verify()
    finally:
        system.close()
        ledger.close()
    digits_log = digits.pop("log")
    summary: dict[str, Any] = {
        "ledger": str(out / "ledger.db"), "report": None, "policies": str(out / "policies.toml"),
        "tenant": TENANT, "faq_version": faq_version,
        "digits": digits, "chapters": chapters, "claims": claims(digits, chapters),
        "ledger_counts": counts, "ledger_problems": problems,
        "seconds": round(time.time() - started, 1), "cpu_seconds": round(time.process_time() - cpu0, 1),
        "timings": timings, "responder": "deterministic retrieval-grounded responder (context_echo_chat), no LLM",
        "config": {"digits": {**asdict(cfg.digits), "segments": [asdict(s) for s in cfg.digits.segments]},
                   "live_turns": cfg.live_turns, "monitor_window": cfg.monitor_window,
                   "monitor_min_samples": cfg.monitor_min_samples, "alpha": cfg.alpha, "seed": cfg.seed},
        "dashboard": f"lifelong serve --data {out} --backend echo --add-key {TENANT}",
    }
    from lifelong.demo import StreamLog
    from lifelong.report import write_story_report

    log = StreamLog(**digits_log)
    summary["report"] = str(write_story_report(out / "report.html", cfg.digits, log, summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    summary["digits"]["log"] = digits_log
    return summary


def short_verdict(v: dict[str, Any] | None) -> str:
    """A verdict in one short line: target before -> after, p, n, and the canaries.

    >>> short_verdict({"accepted": True, "suite": "feedback", "champion": 0.0, "candidate": 1.0, "p": 0.0156,
    ...                "n": 6, "canaries": [{"name": "faq", "passed": True, "champion": 1.0, "candidate": 1.0}]})
    'accepted: feedback 0% -> 100% (p=0.016, n=6); canary faq held'
    """
    if not v:
        return "no verdict"
    text = f"{'accepted' if v['accepted'] else 'rejected'}: {v['suite']} {100 * v['champion']:.0f}% -> " \
           f"{100 * v['candidate']:.0f}% (p={v['p']:.2g}, n={v['n']})"
    for c in v.get("canaries", []):
        text += f"; canary {c['name']} " + ("held" if c["passed"] else
                                           f"regressed {100 * c['champion']:.0f}% -> {100 * c['candidate']:.0f}%")
    return text


def claims(digits: dict[str, Any], ch: dict[str, Any]) -> list[dict[str, Any]]:
    """The story's claims, each checked on this run: ``{"chapter", "claim", "met", "detail"}``."""
    acc = digits["accuracy_on_shifted_segments"]
    mem, si, harm, rb = ch["memory"], ch["self_improvement"], ch["harmful"], ch["rollback"]
    later_right = sum(r["correct"] for r in mem["alice_later"])
    before_right = sum(r["correct"] for r in mem["alice_before"])
    accepted = sum(p["accepted"] for p in digits["promotions"])
    out = [
        ("1", "drift triggers fired on the shifts and reset the session scope", bool(digits["triggers"]),
         f"{len(digits['triggers'])} triggers at batches {digits['triggers']}; {len(digits['promotions'])} "
         f"gated promotions ({accepted} accepted)"),
        ("1", "governed Tent beats no adaptation on the shifted segments", acc["governed"] > acc["no_adaptation"],
         f"{100 * acc['governed']:.1f}% vs {100 * acc['no_adaptation']:.1f}%"),
        ("2", "alice's corrections reached her memory through the gate", mem["day1"]["alice"]["accepted"],
         short_verdict(mem["day1"]["alice"]["verdict"])),
        ("2", "a later session of alice answers from them", later_right > before_right,
         f"{before_right}/{len(mem['alice_before'])} right before her feedback, "
         f"{later_right}/{len(mem['alice_later'])} in her later session"),
        ("2", "another user does not see them", not any(r["correct"] for r in mem["bob_later"]),
         f"bob: {mem['bob_later'][0]['answer']!r}"),
        ("3", "a self-improvement round's change was accepted on evidence", si["accepted"],
         short_verdict(si["verdict"])),
        ("4", "a harmful change was rejected", harm["promotion"] is not None and not harm["accepted"]
         and harm["verdict"] is not None, short_verdict(harm["verdict"])),
        ("5", "a live regression after a promotion was rolled back", rb["accepted"] and
         rb["rolled_back_to_previous"], (f"monitor alarm at live turn {rb['rollback']['turn']}; alice's memory "
                                         f"back at {rb['rollback']['to'][:12]}; taught again without the over-general "
                                         f"item: {rb['retaught']['live_right']}/{rb['retaught']['live_turns']} "
                                         "rated answers right") if rb["rollback"] else "no rollback"),
    ]
    return [{"chapter": c, "claim": t, "met": bool(m), "detail": d} for c, t, m, d in out]

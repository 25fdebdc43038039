"""Credit assignment (change -> events -> verdict) and promotions through the gate, in the ledger."""

from __future__ import annotations

from lifelong.control.gate import Suite
from lifelong.models.chat import ScriptedChat

POLICY = """
[system]
name = "c"
memory = "memory.db"
ledger = "ledger.db"
[learners.memory]
type = "feedback-memory"
[learners.memory.gate]
n_resamples = 200
{gate}
[learners.memory.monitor]
window = 5
min_samples = 5
tolerance = 0.05
[learners.memory.promote]
min_events = 5
"""


def test_explain_links_a_version_to_the_feedback_that_made_it(make_system, teach, facts):
    system = make_system(POLICY.format(gate=""))
    with system.session(user="alice") as s:
        teach(s)
    result = s.promotions["memory"]
    assert result.accepted
    feedback_ids = [e.id for e in s.events.values() if e.kind == "feedback"]
    assert sorted(result.events) == sorted(feedback_ids)

    why = system.explain(result.version)
    assert why.ref == "c/user/alice/memory"
    assert [c.learner for c in why.changes] == ["memory"]
    assert sorted(sig["id"] for sig in why.signals) == sorted(feedback_ids)
    assert {sig["text"] for sig in why.signals} == {fact for _, fact in facts}
    assert all(sig["user"] == "alice" and sig["session"] == s.id for sig in why.signals)
    assert why.accepted and why.helped is True and not why.rolled_back
    (verdict,) = why.verdicts
    assert verdict["suite"] == "feedback" and verdict["effect"] == 1.0 and verdict["p_value"] < 0.05
    assert "learned from 6 feedback" in why.summary()

    # the other direction: what did one piece of feedback cause?
    caused = system.changes_from(feedback_ids[0])
    assert [(c.scope, c.ref) for c in caused] == [("session", f"c/session/{s.id}/memory"),
                                                  ("user", "c/user/alice/memory")]
    # and the raw ledger record carries the same links
    record = system.ledger.changes_producing(result.version)[0]
    assert sorted(record.provenance["events"]) == sorted(feedback_ids)
    assert record.provenance["session"] == s.id


def test_a_change_that_does_not_help_is_rejected_and_recorded(make_system, teach):
    system = make_system(POLICY.format(gate=""), chat=ScriptedChat(lambda m: "no idea"))
    with system.session(user="alice") as s:
        teach(s)
    result = s.promotions["memory"]
    assert not result.accepted and result.verdict.startswith("REJECT")
    assert system.ledger.head("c/user/alice/memory").id != result.version  # the ref did not move
    assert len(system.user_memory("alice").store) == 0  # the store was not touched
    (event,) = system.ledger.log("c/user/alice/memory", types=["reject"])
    assert event.change_id == result.change_id
    why = system.explain(result.version)  # the rejected candidate is kept and explained too
    assert not why.accepted and why.helped is False and len(why.signals) == 6
    # the session's memory is kept, unpromoted
    with system.session(user="alice", session_id=s.id) as again:
        assert len(again.search("Who runs support?")) > 0


def test_a_regressing_canary_blocks_the_promotion(make_system, teach, facts):
    questions = tuple(q for q, _ in facts)
    # "these questions must stay unanswered" (a privacy canary): the new items make the system answer them
    canary = Suite("quiet", questions, lambda answer: [float(answer(q) == "I don't know") for q in questions],
                   content_hash="quiet-v1")
    system = make_system(POLICY.format(gate='canaries = ["quiet"]\ncanary_tolerance = 0.1'), suites={"quiet": canary})
    with system.session(user="alice") as s:
        teach(s)
    result = s.promotions["memory"]
    assert not result.accepted and "canary 'quiet' regressed" in result.verdict
    stored = system.ledger.verdict(system.ledger.log("c/user/alice/memory", types=["reject"])[0].verdict_id)
    assert stored.target.passed and [c.name for c in stored.canaries] == ["quiet"]


def test_a_live_regression_rolls_the_promotion_back(make_system, teach):
    system = make_system(POLICY.format(gate=""))
    with system.session(user="alice") as s:
        teach(s)
    version = s.promotions["memory"].version
    assert len(system.user_memory("alice").store) == 6
    rolled = [system.watch("memory", 0.0, user="alice") for _ in range(5)]
    assert rolled[:4] == [None] * 4 and rolled[4] is not None
    assert len(system.user_memory("alice").store) == 0  # the store follows the ledger back
    why = system.explain(version)
    assert why.rolled_back and why.helped is False and why.alarms
    types = [e.type for e in system.ledger.log("c/user/alice/memory")]
    assert types[:3] == ["rollback", "alarm", "commit"]


def test_bad_ratings_of_answers_that_used_promoted_items_roll_them_back(make_system, teach):
    system = make_system(POLICY.format(gate=""))
    with system.session(user="alice") as s:
        teach(s)
    version = s.promotions["memory"].version
    with system.session(user="alice") as later:
        for _ in range(5):
            reply = later.chat("When are invoices due?")
            assert reply.context_ids  # the promoted item was used
            later.feedback("rating", score=-1.0, about=reply)
    assert system.ledger.head("c/user/alice/memory").id != version
    assert len(system.user_memory("alice").store) == 0
    why = system.explain(version)
    assert why.rolled_back and "live score 0.000" in why.alarms[0]
    # ratings of answers without promoted items feed nothing
    with system.session(user="bob") as bob:
        bob.feedback("rating", score=-1.0, about=bob.chat("When are invoices due?"))

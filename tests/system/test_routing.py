"""Events reach exactly the learners that declared their type; triggers decide when they adapt."""

from __future__ import annotations

import pytest

from lifelong.core.errors import DataInputError
from lifelong.system import (
    LEARNERS,
    Feedback,
    Implicit,
    Input,
    Learner,
    LearnerPolicy,
    Output,
    Policies,
    System,
    ToolCall,
    ToolOutcome,
)


class Recorder(Learner):
    """Records what it is routed; learns from tool outcomes and implicit signals only."""

    type = "recorder"
    kind = "context"
    signals = (ToolOutcome, Implicit)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []

    def learn(self, event, session):
        self.seen.append(event.kind)
        return event.kind


@pytest.fixture
def recorder_registered():
    LEARNERS["recorder"] = Recorder
    yield
    del LEARNERS["recorder"]


def test_each_event_goes_only_to_learners_that_declared_it(make_system, recorder_registered, teach, facts):
    system = make_system("""
[system]
name = "r"
memory = ":memory:"
ledger = "ledger.db"
[learners.memory]
type = "feedback-memory"
[learners.memory.promote]
to = "none"
[learners.rec]
type = "recorder"
""")
    assert system.routes()["feedback"] == ["memory"]
    assert system.routes()["tool_outcome"] == ["rec"] and system.routes()["implicit"] == ["rec"]
    assert system.routes()["input"] == [] and system.routes()["tool_call"] == []
    with system.session(user="u") as s:
        reply = s.chat("Where is the Acme office?")
        call = s.tool_call("search", {"q": "acme"}, result="Lyon")
        s.tool_outcome("search", success=True, call_id=call.id)
        s.implicit("retry", about=reply)
        s.implicit("latency", amount=2.5)
        fb = s.feedback("correction", text="The Acme office is in Lyon", about=reply)
        s.feedback("rating", score=1.0, about=reply)
    assert system.learners["rec"].seen == ["tool_outcome", "implicit", "implicit"]
    assert len(s.routed["memory"]) == 2 and fb.id in s.routed["memory"]
    assert len(s.routed["rec"]) == 3
    # every event was recorded in the ledger, with its kind
    kinds = [e["kind"] for e in system.signals()]
    assert kinds == ["input", "output", "tool_call", "tool_outcome", "implicit", "implicit", "feedback", "feedback"]
    # the feedback was filled in with the question of the answer it corrected
    assert s.events[fb.id].question == "Where is the Acme office?"
    assert s.events[fb.id].user == "u" and s.events[fb.id].session == s.id


def test_policy_signals_narrow_what_a_learner_hears(make_system, recorder_registered):
    system = make_system("""
[system]
memory = ":memory:"
[learners.rec]
type = "recorder"
signals = ["implicit"]
""")
    with system.session(user="u") as s:
        s.tool_outcome("pytest", success=False)
        s.implicit("abandonment")
    assert system.learners["rec"].seen == ["implicit"]
    assert s.routed["rec"] == [e for e in s.events if isinstance(s.events[e], Implicit)]


def test_triggers_decide_which_routed_events_are_learned_from(make_system, recorder_registered):
    system = make_system("""
[system]
memory = ":memory:"
[learners.slow]
type = "recorder"
trigger = "every:2"
[learners.bad_only]
type = "recorder"
trigger = "below:0.5"
""")
    with system.session(user="u") as s:
        for ok in (True, False, True, False, False):
            s.tool_outcome("deploy", success=ok)
    assert len(s.routed["slow"]) == 5 and len(s.adapted["slow"]) == 2
    assert len(s.adapted["bad_only"]) == 3  # value 0.0 on failure
    assert [s.events[i].success for i in s.adapted["bad_only"]] == [False, False, False]


def test_memory_learner_ignores_ratings_and_respects_its_budget(make_system):
    system = make_system("""
[system]
memory = ":memory:"
[learners.memory]
type = "feedback-memory"
[learners.memory.budget]
max_items = 2
max_chars = 40
[learners.memory.promote]
to = "none"
""")
    with system.session(user="u") as s:
        s.feedback("rating", score=-1.0)
        s.feedback("correction", text="x" * 41)
        for i in range(3):
            s.feedback("correction", text=f"fact number {i}")
    assert len(s.routed["memory"]) == 5
    assert len(system.session_memory(s.id).store) == 2
    notes = [e for e in system.ledger.log(system.session_ref(s.id, "memory"), types=["note"])]
    assert len(notes) == 2 and all(e.data["reason"] == "budget" for e in notes)


def test_events_are_validated():
    with pytest.raises(DataInputError, match="needs text"):
        Feedback(type="correction")
    with pytest.raises(DataInputError, match="from -1"):
        Feedback(type="rating", score=3)
    with pytest.raises(DataInputError, match="not one of"):
        Implicit(type="sigh")
    with pytest.raises(DataInputError, match="ToolCall.name"):
        ToolCall()
    with System(Policies.loads('[system]\nmemory=":memory:"\nledger=":memory:"')) as system:
        with system.session(user="u") as s:
            with pytest.raises(DataInputError, match="this session's user"):
                s.emit(Input(content="x", user="someone-else"))
            out = s.emit(Output(content="y"))
            with pytest.raises(DataInputError, match="already emitted"):
                s.emit(out)


def test_learners_can_be_given_directly(tmp_path):
    rec = Recorder("direct", LearnerPolicy("direct", "recorder"))
    policies = Policies.loads('[system]\nmemory=":memory:"\nledger="l.db"', base_dir=str(tmp_path))
    with System(policies, learners=[rec]) as system:
        with system.session(user="u") as s:
            s.implicit("retry")
    assert rec.seen == ["implicit"]

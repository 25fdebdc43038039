"""Scopes: session writes are the session's own until the gate promotes them."""

from __future__ import annotations

MANUAL = """
[system]
name = "t"
memory = "memory.db"
ledger = "ledger.db"
[learners.memory]
type = "feedback-memory"
[learners.memory.gate]
n_resamples = 200
[learners.memory.promote]
when = "manual"
min_events = 5
"""


def test_session_memory_is_invisible_to_other_sessions_and_users_until_promoted(make_system, teach, facts):
    system = make_system(MANUAL)
    with system.session(user="alice", session_id="a1") as s:
        teach(s)
        assert s.chat("Who runs support?").text == "Support is run by Dana"
        with system.session(user="alice", session_id="a2") as other_session:
            assert other_session.chat("Who runs support?").text == "I don't know"
        with system.session(user="bob") as bob:
            assert bob.chat("Who runs support?").text == "I don't know"
    assert len(system.user_memory("alice").store) == 0  # nothing reached alice's memory
    assert s.promotions == {}  # when = "manual": leaving did not promote
    with system.session(user="alice") as later:
        assert later.chat("Who runs support?").text == "I don't know"
    with system.session(user="alice", session_id="a1") as again:  # the session's memory was kept
        assert again.chat("Who runs support?").text == "Support is run by Dana"


def test_promotion_to_user_reaches_later_sessions_of_that_user_only(make_system, teach, facts):
    system = make_system(MANUAL)
    with system.session(user="alice") as s:
        teach(s)
        result = s.promote()["memory"]
    assert result.accepted and result.to == "user"
    assert result.ref == "t/user/alice/memory"
    assert system.ledger.head(result.ref).id == result.version
    assert len(system.user_memory("alice").store) == len(facts)
    with system.session(user="alice") as later:
        assert later.chat("When are invoices due?").text == "Invoices are due in 30 days"
    with system.session(user="bob") as bob:
        assert bob.chat("When are invoices due?").text == "I don't know"
    assert system.user_memory("alice").in_sync()


def test_promotion_to_global_reaches_every_user(make_system, teach, facts):
    system = make_system(MANUAL)
    with system.session(user="alice") as s:
        teach(s)
        assert s.promote(to="global")["memory"].accepted
    with system.session(user="bob") as bob:
        assert bob.chat("Which VPN do we use?").text == "We use the WireGuard VPN"


def test_a_second_promotion_proposes_only_new_items(make_system, teach, facts):
    system = make_system(MANUAL)
    with system.session(user="alice") as s:
        teach(s)
        assert s.promote()["memory"].accepted
        again = s.promote()["memory"]
    assert again.skipped and "0 new items" in again.skipped


def test_session_end_promotes_by_policy_and_exception_skips_it(make_system, teach, facts):
    system = make_system()  # when = "session_end"
    try:
        with system.session(user="carol") as s:
            teach(s)
            raise RuntimeError("the client crashed")
    except RuntimeError:
        pass
    assert s.closed and s.promotions == {}
    assert len(system.user_memory("carol").store) == 0
    with system.session(user="carol") as s2:
        teach(s2)
    assert s2.promotions["memory"].accepted
    assert len(system.user_memory("carol").store) == len(facts)


def test_closed_sessions_refuse_events_and_bad_names_are_refused(make_system, teach, facts):
    import pytest

    from lifelong.core.errors import DataInputError

    system = make_system()
    with system.session(user="dave") as s:
        pass
    with pytest.raises(DataInputError, match="has ended"):
        s.chat("hello")
    with pytest.raises(DataInputError, match="user 'a/b' is not a valid name"):
        system.session(user="a/b")
    with system.session(user="dave", session_id="fixed"):
        with pytest.raises(DataInputError, match="already open"):
            system.session(user="dave", session_id="fixed")

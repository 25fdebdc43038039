"""Forgetting: Beta utility (mean and bounds, decay) drives ranking and pruning by soft delete; TTL;
near-duplicates merged (with remembered keep decisions); contradictions supersede, never delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifelong.context import Add, HashingEmbedder, Item, MemoryStore, Tag, open_store
from lifelong.context.forgetting import (
    DAY,
    Consolidator,
    ContradictionResolver,
    ForgettingPolicy,
    LLMContradiction,
    RuleContradiction,
    beta_bounds,
    beta_mean,
    merge_text,
    utility,
    with_ttl,
)
from lifelong.context.ops import Merge, Supersede, Update
from lifelong.models.chat import ScriptedChat


@pytest.fixture
def store(tmp_path: Path) -> MemoryStore:
    s = open_store(str(tmp_path / "f.db"), tenant="t", create=True, embedder=HashingEmbedder(128))
    yield s
    s.close()


# ---------------------------------------------------------------------- utility
def test_beta_posterior_mean_and_bounds() -> None:
    assert beta_mean(0, 0) == 0.5 and beta_mean(3, 1) == pytest.approx(4 / 6)
    lo1, hi1 = beta_bounds(2, 2)
    lo2, hi2 = beta_bounds(20, 20)
    assert lo1 < lo2 < 0.5 < hi2 < hi1  # more evidence, narrower interval
    assert beta_bounds(9, 0)[0] > 0.7 and beta_bounds(0, 9)[1] < 0.3
    with pytest.raises(ValueError, match="credibility"):
        beta_bounds(1, 1, credibility=1.0)


def test_decay_fades_evidence_toward_the_prior() -> None:
    item = Item(id="a", content="x", helpful=0, harmful=10, updated_at=0.0)
    fresh = utility(item, now=0.0, half_life_days=10)
    old = utility(item, now=100 * DAY, half_life_days=10)
    assert fresh.mean < old.mean < 0.5 and old.evidence == pytest.approx(10 / 1024)
    assert utility(item, now=100 * DAY).mean == fresh.mean  # no half-life: no decay
    with pytest.raises(ValueError, match="half_life_days"):
        utility(item, half_life_days=0)


def test_rerank_uses_utility_but_never_drops(store: MemoryStore) -> None:
    store.apply([Add("Retry on HTTP 503 after 2 s", id="good", kind="bullet"),
                 Add("Retry on HTTP 503 after 2 s always", id="bad", kind="bullet")])
    store.apply([Tag(id="good", tag="helpful", count=5), Tag(id="bad", tag="harmful", count=5)])
    hits = store.search("retry on 503", k=5)
    ranked = ForgettingPolicy().rerank(hits)
    assert [h.item.id for h in ranked] == ["good", "bad"]
    assert ranked[0].utility > 1.0 > ranked[1].utility
    assert ForgettingPolicy().rank([store.get("bad"), store.get("good")])[0].id == "good"


# ---------------------------------------------------------------------- pruning
def test_sweep_soft_deletes_confidently_harmful_only(store: MemoryStore) -> None:
    store.apply([Add(f"rule {n}", id=n, kind="bullet") for n in ("harmful", "mixed", "new", "pinned", "block")]
                [:4] + [Add("persona", id="block", kind="block", limit=50)])
    store.apply([Tag(id="harmful", tag="harmful", count=4), Tag(id="mixed", tag="harmful", count=3),
                 Tag(id="mixed", tag="helpful", count=2), Tag(id="pinned", tag="harmful", count=9),
                 Tag(id="block", tag="harmful", count=9)])
    store.apply([Update(id="pinned", tags=("pinned",))])
    sweep = ForgettingPolicy().sweep(store)
    assert [o.id for o in sweep.ops] == ["harmful"]
    assert "0 helpful / 4 harmful" in sweep.reasons["harmful"]
    store.apply(list(sweep.ops))
    item = store.get("harmful")
    assert item.status.value == "deleted" and item.harmful == 4  # kept, auditable
    assert "harmful" not in [h.item.id for h in store.search("rule", k=10)]
    assert store.ops()[-1]["op"]["justification"].startswith("confidently unhelpful")
    assert ForgettingPolicy().sweep(store).ops == ()  # idempotent


def test_ttl_by_kind_and_by_item(store: MemoryStore) -> None:
    store.apply([Add("promo SPRING", id="promo", kind="fact", meta={"expires_at": 1500.0}),
                 Add("session note", id="fact-old", kind="fact"), Add("rule", id="rule", kind="bullet")], at=1000.0)
    policy = ForgettingPolicy(ttl={"fact": 2 * DAY})
    assert policy.sweep(store, now=1200.0).ops == ()
    assert [o.id for o in policy.sweep(store, now=1600.0).ops] == ["promo"]
    late = policy.sweep(store, now=1000.0 + 3 * DAY)
    assert sorted(o.id for o in late.ops) == ["fact-old", "promo"] and "TTL expired" in late.reasons["fact-old"]


def test_hard_ttl_via_validity_interval(store: MemoryStore) -> None:
    store.apply([with_ttl(Add("Code SPRING24 gives 10% off", id="promo", kind="fact"), 100.0, now=1000.0)],
                at=1000.0)
    assert [h.item.id for h in store.search("discount code", now=1050.0)] == ["promo"]
    assert store.search("discount code", now=1200.0) == []
    assert [h.item.id for h in store.search("discount code", as_of=1050.0, now=1200.0)] == ["promo"]
    assert store.get("promo").meta["ttl"] == 100.0
    with pytest.raises(ValueError, match="TTL"):
        with_ttl(Add("x"), 0)


def test_capacity_prunes_lowest_ranked(store: MemoryStore) -> None:
    store.apply([Add(f"rule number {i}", id=f"r{i}", kind="bullet") for i in range(5)])
    store.apply([Tag(id="r0", tag="helpful", count=3), Tag(id="r4", tag="harmful", count=1),
                 Tag(id="r3", tag="harmful", count=2)])
    sweep = ForgettingPolicy(max_items=3).sweep(store)
    assert sorted(o.id for o in sweep.ops) == ["r3", "r4"] and "over capacity 3" in sweep.reasons["r4"]


# ---------------------------------------------------------------------- consolidation
def test_consolidation_merges_duplicates_and_keeps_history(store: MemoryStore) -> None:
    store.apply([Add("On 429 wait 2 s and back off exponentially", id="a", kind="bullet", section="api"),
                 Add("on 429: wait 2 s, and back off exponentially", id="b", kind="bullet", section="api"),
                 Add("On 429 wait 2 s and back off exponentially", id="c", kind="bullet", section="other"),
                 Add("Reports use SI units", id="d", kind="bullet", section="api")])
    store.apply([Tag(id="b", tag="helpful", count=2), Tag(id="a", tag="harmful")])
    cons = Consolidator(threshold=0.95).propose(store)
    assert [(type(o).__name__, o.ids, o.into) for o in cons.ops] == [("Merge", ("b", "a"), "b")]
    store.apply(list(cons.ops))
    merged = store.get("b")
    assert (merged.helpful, merged.harmful) == (2, 1)
    assert store.get("a").superseded_by == "b" and store.get("a").status.value == "active"
    assert store.get("c").superseded_by is None  # other section
    assert Consolidator(threshold=0.95).propose(store).ops == ()


def test_merge_text_keeps_specifics() -> None:
    a = Item(id="a", content="On 429 wait 2 s.")
    b = Item(id="b", content="On 429 wait 2 s. Only for idempotent endpoints; never for POST.")
    text = merge_text([a, b])
    for fragment in ("2 s", "idempotent", "POST"):
        assert fragment in text


def test_model_keep_decision_is_remembered(store: MemoryStore) -> None:
    store.apply([Add("Deploy on Tuesdays", id="x", kind="bullet"), Add("Deploy on Thursdays", id="y", kind="bullet")])
    chat = ScriptedChat([json.dumps({"decision": "keep"})])
    cons = Consolidator(threshold=0.5, chat=chat).propose(store)
    assert all(isinstance(o, Update) for o in cons.ops) and len(cons.ops) == 2
    assert "<<<DATA" not in chat.calls[0][-1]["content"]  # trusted user items are not quoted
    store.apply(list(cons.ops))
    assert store.get("x").meta["distinct_from"] == ["y"]
    again = Consolidator(threshold=0.5, chat=chat).propose(store)
    assert again.ops == () and len(chat.calls) == 1  # never asked about the same pair again


def test_model_merge_text_and_unusable_reply(store: MemoryStore) -> None:
    store.apply([Add("Use UTC in logs", id="x", kind="bullet"), Add("Use UTC in all logs", id="y", kind="bullet")])
    cons = Consolidator(threshold=0.5, chat=ScriptedChat(['{"decision": "merge", "content": "Log in UTC."}']))
    (op,) = cons.propose(store).ops
    assert isinstance(op, Merge) and op.content == "Log in UTC."
    (op,) = Consolidator(threshold=0.5, chat=ScriptedChat(["hmm"])).propose(store).ops
    assert isinstance(op, Merge) and "UTC" in op.content


# ---------------------------------------------------------------------- contradiction
@pytest.mark.parametrize(("new", "old", "expected"), [
    ("My name is Bob", "My name is Alice", True),
    ("my name is alice.", "My name is Alice", False),
    ("Alice lives in Berlin", "Alice lives in Paris", True),
    ("Alice moved to Berlin", "Alice lives in Paris", True),
    ("Alice works for Initech", "Alice works at Acme", True),
    ("I hate Chinese food", "I love Chinese food", True),
    ("I no longer like jazz", "I like jazz", True),
    ("I like tea", "I like coffee", False),
    ("The API is not rate limited", "The API is rate limited", True),
    ("Alice lives in Paris", "Bob lives in Berlin", False),
    ("Alice lives in Paris", "Alice works at Acme", False),
    ("The weather was nice yesterday", "It rained", False),
])
def test_rule_contradiction(new: str, old: str, expected: bool) -> None:
    assert RuleContradiction().contradicts(new, old) is expected


def test_contradiction_supersedes_and_keeps_history(store: MemoryStore) -> None:
    """mem0 #4896 kept both names; #4536 deleted the old fact and lost the new one."""
    store.apply([Add("My name is Alice", id="name1", kind="fact"), Add("I love Chinese food", id="food1", kind="fact"),
                 Add("I live in Leeds", id="home1", kind="fact")], at=1000.0)
    resolver = ContradictionResolver(store)
    r1 = resolver.apply(Add("My name is Alicia", id="name2", kind="fact"))
    r2 = resolver.apply(Add("I hate Chinese food", kind="fact"))
    assert r1.superseded == ("name1",) and r2.superseded == ("food1",)
    current = {h.item.content for h in store.search("name food Leeds", k=10)}
    assert current == {"My name is Alicia", "I hate Chinese food", "I live in Leeds"}
    old = store.get("name1")
    assert old.superseded_by == "name2" and old.valid_until is not None and old.status.value == "active"
    assert [h.item.id for h in store.search("what is my name", as_of=1500.0, now=1500.0, k=1)] == ["name1"]
    r3 = resolver.propose(Add("I live in Leeds near the station", kind="fact"))
    assert r3.superseded == () and isinstance(r3.ops[0], Add)


def test_one_fact_can_supersede_several(store: MemoryStore) -> None:
    store.apply([Add("Dana's office is room 12", id="o1", kind="fact", section="a"),
                 Add("Dana's office is room 14", id="o2", kind="fact", section="b")])
    r = ContradictionResolver(store).propose(Add("Dana's office is room 30", id="o3", kind="fact"))
    assert sorted(r.superseded) == ["o1", "o2"]
    assert isinstance(r.ops[0], Supersede) and r.ops[0].new is not None and r.ops[1].by == "o3"
    store.apply(list(r.ops))
    assert {store.get(i).superseded_by for i in ("o1", "o2")} == {"o3"}


def test_llm_contradiction_detector(store: MemoryStore) -> None:
    store.apply([Add("Sam eats steak every day", id="diet1", kind="fact")])
    chat = ScriptedChat(lambda m: "Yes, the new statement replaces it.")
    r = ContradictionResolver(store, LLMContradiction(chat)).propose(Add("Sam went vegan in May", kind="fact"))
    assert r.superseded == ("diet1",)
    assert chat.calls[0][-1]["content"].count("<<<DATA") == 2
    assert not LLMContradiction(ScriptedChat(["no"])).contradicts("a", "b")
    assert not LLMContradiction(ScriptedChat(['{"contradicts": false}'])).contradicts("a", "b")


def test_refinement_is_not_a_contradiction() -> None:
    rc = RuleContradiction()
    assert not rc.contradicts("Alice lives in Paris, France", "Alice lives in Paris")
    assert rc.contradicts("Dana's office is room 30", "Dana's office is room 12")


def test_index_path_finds_the_same_groups(store: MemoryStore) -> None:
    store.apply([Add(f"Rule {i}: retry {i} times on timeout", id=f"r{i}", kind="bullet") for i in range(6)]
                + [Add("Rule 0: retry 0 times on timeout!", id="dup", kind="bullet")])
    exact = Consolidator(threshold=0.97).propose(store)
    indexed = Consolidator(threshold=0.97, exact_below=1).propose(store)
    assert [o.ids for o in indexed.ops] == [o.ids for o in exact.ops] == [("dup", "r0")]


def test_recall_log_and_reflections_are_not_consolidated(store: MemoryStore) -> None:
    from lifelong.context.tiers import TieredMemory

    mem = TieredMemory(store, session="s", budget=10_000)
    mem.log("user", "ok thanks")
    mem.log("user", "ok thanks")
    store.apply([Add("Check the edge case", id="rx1", kind="reflection", meta={"task": "a"}),
                 Add("Check the edge case", id="rx2", kind="reflection", meta={"task": "b"})])
    assert Consolidator(threshold=0.5).propose(store).ops == ()


def test_resolver_bad_input_and_relevance_gate(store: MemoryStore) -> None:
    from lifelong.context import TextEncodingError

    store.apply([Add("Sam eats steak every day", id="diet1", kind="fact")])
    with pytest.raises(TextEncodingError):
        ContradictionResolver(store).propose(Add(b"Sam \xff", kind="fact"))  # type: ignore[arg-type]
    chat = ScriptedChat(["yes"])
    gated = ContradictionResolver(store, LLMContradiction(chat), min_relevance=0.99)
    assert gated.propose(Add("The sky is green", kind="fact")).superseded == () and chat.calls == []
    assert len(store) == 1


def test_learners_on_every_backend(make_store) -> None:  # type: ignore[no-untyped-def]
    """The learners use only the store's API, so they work on SQLite and PostgreSQL alike."""
    from lifelong.context.notes import NoteLearner
    from lifelong.context.tiers import TieredMemory

    s = make_store()
    ContradictionResolver(s).apply(Add("My name is Alice", id="n1", kind="fact"))
    ContradictionResolver(s).apply(Add("My name is Alicia", id="n2", kind="fact"))
    assert s.get("n1").superseded_by == "n2"
    s.apply([Add("Use UTC in logs", id="u1", kind="bullet"), Add("use UTC in logs!", id="u2", kind="bullet")])
    s.apply(list(Consolidator(threshold=0.9).propose(s).ops))
    assert s.get("u2").superseded_by == "u1"
    notes = NoteLearner(s, min_similarity=0.2)
    notes.add("Miso the cat eats tuna", id="c1")
    notes.add("Miso the cat loves tuna", id="c2")
    assert s.get("c1").links == ("c2",)
    mem = TieredMemory(s, session="x", budget=40)
    for i in range(6):
        mem.log("user", f"message {i} about the garden")
    assert mem.summaries() and len(mem.messages()) == 6 and mem.context_tokens() <= 40

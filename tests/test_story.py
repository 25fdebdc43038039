"""The all-channel story (``lifelong demo``) in quick mode: each chapter's claim, checked on the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lifelong.control.ledger import Ledger
from lifelong.story import (
    FAQ,
    OVER_GENERAL,
    PREFIX,
    StoryConfig,
    consolidation_round,
    run_story,
    support_answer,
)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_story(tmp_path_factory.mktemp("story") / "demo", StoryConfig.quick(), quiet=True)


def test_every_claim_is_met_and_the_ledger_verifies(story: dict[str, Any]) -> None:
    assert [c["chapter"] for c in story["claims"]] == ["1", "1", "2", "2", "2", "3", "4", "5"]
    assert all(c["met"] for c in story["claims"]), [c for c in story["claims"] if not c["met"]]
    assert story["ledger_problems"] == []
    assert set(story["timings"]) == {"1 test-time training", "2 feedback memory", "3 self-improvement",
                                     "4 harmful change", "5 rollback"}


def test_chapter1_triggers_fire_in_the_session_scope(story: dict[str, Any]) -> None:
    digits = story["digits"]
    assert digits["triggers"] and digits["triggers"][0] >= 12  # not before the shift at batch 12
    with Ledger.open(story["ledger"], create=False) as ledger:
        types = [e.type for e in ledger.log(PREFIX + "digits/global")]
    assert "trigger" in types and "reset" in types


def test_chapter2_feedback_promoted_and_used_by_a_later_session(story: dict[str, Any]) -> None:
    mem = story["chapters"]["memory"]
    assert mem["day1"]["alice"]["accepted"] and mem["day1"]["bob"]["accepted"]
    assert not any(r["correct"] for r in mem["alice_before"])
    assert all(r["correct"] for r in mem["alice_later"])  # the later answers changed
    assert "Dana" not in mem["bob_later"][0]["answer"]  # bob never sees alice's memory
    assert mem["explain"]["helped"] and mem["explain"]["signals"] == mem["day1"]["alice"]["corrections"]


def test_chapter3_self_improvement_accepted_on_evidence(story: dict[str, Any]) -> None:
    si = story["chapters"]["self_improvement"]
    assert si["accepted"]
    v = si["verdict"]
    assert v["n"] == len(si["agreed"]) >= 5 and v["p"] < 0.05 and v["ci"][0] > 0
    assert v["canaries"][0]["name"] == "faq" and v["canaries"][0]["passed"]
    assert si["skipped"]["conflicting"] == 2  # account manager and plan differ between alice and bob
    assert sum(r["correct"] for r in si["carol_after"]) > sum(r["correct"] for r in si["carol_before"])
    with Ledger.open(story["ledger"], create=False) as ledger:
        assert ledger.head(PREFIX + "support/global/memory").id == si["version"]


def test_chapter4_harmful_change_rejected_with_evidence(story: dict[str, Any]) -> None:
    harm = story["chapters"]["harmful"]
    v = harm["verdict"]
    assert not harm["accepted"] and not v["accepted"]
    assert v["candidate"] > v["champion"]  # the target alone would have let it through...
    assert not v["canaries"][0]["passed"]  # ...the FAQ canary refused it
    assert [r["correct"] for r in harm["after"]] == [True] * len(FAQ)
    with Ledger.open(story["ledger"], create=False) as ledger:
        assert "reject" in [e.type for e in ledger.log(PREFIX + "support/user/mallory/memory")]


def test_chapter5_live_regression_rolls_back(story: dict[str, Any]) -> None:
    rb = story["chapters"]["rollback"]
    assert rb["accepted"] and rb["rollback"] is not None and rb["rolled_back_to_previous"]
    assert rb["explain"]["rolled_back"] and rb["explain"]["helped"] is False
    types = [e["type"] for e in rb["events"]]
    assert "alarm" in types and "rollback" in types
    with Ledger.open(story["ledger"], create=False) as ledger:
        rollbacks = ledger.log(PREFIX + "support/user/alice/memory", types=["rollback"])
        assert [e.to_version for e in rollbacks] == [rb["version_before"]] and rollbacks[0].actor == "monitor"
        assert ledger.head(PREFIX + "support/user/alice/memory").id == rb["retaught"]["version"]
    assert any(OVER_GENERAL in r["answer"] for r in rb["live"][: rb["rollback"]["turn"] + 1])
    # Taught again without the over-general item: the gate accepts, and the live ratings agree with it.
    again = rb["retaught"]
    assert again["accepted"] and again["live_right"] == again["live_turns"] > 0


def test_report_has_a_section_per_chapter(story: dict[str, Any]) -> None:
    report = Path(story["report"]).read_text()
    for title in ("1. Inputs shift", "2. Feedback accumulates", "3. A self-improvement round",
                  "4. A harmful change", "5. A live regression", "The dashboard", "The ledger"):
        assert title in report
    assert report.count("data:image/png;base64") >= 2
    assert "lifelong serve --data" in report


def test_the_service_opens_the_recorded_run(story: dict[str, Any]) -> None:
    from lifelong.models.chat import ScriptedChat
    from lifelong.service import ServiceConfig
    from lifelong.service.core import Service

    service = Service(ServiceConfig(Path(story["ledger"]).parent, chat=ScriptedChat(["hi"])))
    try:
        refs = service.tenant_ledger("demo").refs()
        assert {"digits/global", "support/global/memory", "support/user/alice/memory"} <= set(refs)
        assert any(e["type"] == "rollback" for e in service.tenant_ledger("demo").log(limit=500))
    finally:
        service.close()


def test_support_answer_and_consolidation_rule() -> None:
    assert support_answer("When are invoices payable?", [f for _, f in FAQ]) == "Invoices are payable within 30 days"
    assert support_answer("Who won the cup?", ["Paris is in France"]) == "I don't know"

    class Recorded:
        def signals(self) -> list[dict[str, Any]]:
            fb = {"kind": "feedback", "type": "correction"}
            return [{**fb, "id": "1", "user": "a", "question": "Q?", "text": "X is 1"},
                    {**fb, "id": "2", "user": "b", "question": "q", "text": "x is 1."},
                    {**fb, "id": "3", "user": "a", "question": "R?", "text": "Y"},
                    {**fb, "id": "4", "user": "a", "question": "S?", "text": "Z is 1"},
                    {**fb, "id": "5", "user": "b", "question": "S?", "text": "Z is 2"}]

    agreed, skipped = consolidation_round(Recorded())  # type: ignore[arg-type]
    assert [(q, users, ids) for q, _, users, ids in agreed] == [("Q?", ["a", "b"], ["1", "2"])]
    assert skipped == {"one_user": 1, "conflicting": 1}


def test_demo_command_offers_the_story_and_chapter_one_alone() -> None:
    from typer.testing import CliRunner

    from lifelong.cli import app

    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--digits-only" in result.output and "--quiet" in result.output and "--quick" in result.output

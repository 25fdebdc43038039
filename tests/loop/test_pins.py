"""Verifiers and evaluation data lie outside every change scope: the governor rejects changes that
touch them (and the ledger records it), and a verifier or evaluation set that changed is detected."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifelong.control.gate import Gate
from lifelong.control.governor import Governor
from lifelong.control.ledger import Ledger
from lifelong.core import Change
from lifelong.loop.errors import VerifierChangedError
from lifelong.loop.pins import Pins, items_hash, protected_targets, verified_suite
from lifelong.loop.verifiers import ExactMatch, FunctionVerifier, Item, NumericMatch

ITEMS = [Item(f"q{i}", prompt=f"{i}+{i}", answer=2 * i) for i in range(40)]


@pytest.fixture()
def ledger(tmp_path: Path) -> Ledger:
    with Ledger.open(tmp_path / "ledger.db") as led:
        yield led


def _governor(ledger: Ledger, pins: Pins) -> Governor:
    ledger.commit("agent/global", records={"scaffold/prompt": "Answer briefly."}, message="base", replace=True)
    return Governor(ledger, "agent/global", gate=Gate(n_resamples=200), protected=protected_targets(pins))


def _systems():
    weak = lambda item: "I do not know"            # noqa: E731
    strong = lambda item: f"The answer is {item.answer}"  # noqa: E731
    return weak, strong


@pytest.mark.parametrize("target", [
    "verifier/source.py",                # the verifier itself
    "scaffold/verifier.py",              # the verifier, nested in a scaffold tree
    "eval/holdout.jsonl",                # the evaluation items
    "agent/evaluation/items.json",
    "agent/logging/config.yaml",         # the logs a detector reads (DGM node 114)
    "agent/logs/hallucinations.jsonl",
    "numeric-match",                     # the pinned verifier, by name
    "scaffold/holdout",                  # the pinned evaluation set, by name
])
def test_a_change_touching_the_verifier_eval_data_or_logs_is_rejected_and_recorded(ledger: Ledger, target: str) -> None:
    verifier = NumericMatch()
    pins = Pins().pin_verifier(verifier).pin_items("holdout", ITEMS)
    gov = _governor(ledger, pins)
    suite = verified_suite("holdout", ITEMS, verifier)
    weak, strong = _systems()
    # The change also improves the real scaffold, and its candidate would win the gate on scores alone:
    # it is refused for what it touches, before any evaluation.
    evil = Change("scaffold", "global", "evolver",
                  records={"scaffold/prompt": "Show your work.", target: "def verify(output, item): return 1.0"})
    result = gov.promote(evil, champion=weak, candidate=strong, target=suite)
    assert not result.accepted
    verdict = ledger.verdict(result.verdict_id)
    assert "protected targets" in verdict.reasons[0] and verdict.target is None  # never even evaluated
    (event,) = ledger.log("agent/global", types=["reject"])
    assert event.change_id == evil.id and "protected" in event.message
    assert ledger.records(gov.champion())["scaffold/prompt"] == "Answer briefly."


def test_the_same_improvement_without_touching_the_judge_is_accepted(ledger: Ledger) -> None:
    verifier = NumericMatch()
    pins = Pins().pin_verifier(verifier).pin_items("holdout", ITEMS)
    gov = _governor(ledger, pins)
    pins.record(ledger, "agent/global")
    weak, strong = _systems()
    good = Change("scaffold", "global", "evolver", records={"scaffold/prompt": "Show your work.",
                                                              "scaffold/dialog_policy": "ask when unsure"})
    result = gov.promote(good, champion=weak, candidate=strong, target=verified_suite("holdout", ITEMS, verifier))
    assert result.accepted
    verdict = ledger.verdict(result.verdict_id)
    assert verdict.target.suite_hash == verified_suite("holdout", ITEMS, verifier).hash
    (note,) = ledger.log("agent/global", types=["note"])
    assert note.data["pins"][f"verifier:{verifier.name}"]["hash"] == verifier.hash


def test_a_verifier_whose_hash_changed_is_detected() -> None:
    v = NumericMatch(rel_tol=1e-6)
    pins = Pins().pin_verifier(v)
    pins.check(verifiers=[v])
    pinned_score = v("2", Item("a", answer=2))
    v.rel_tol = 0.5  # loosened in place after pinning: 2 would now "match" 3
    with pytest.raises(VerifierChangedError, match="numeric-match.*changed"):
        pins.check(verifiers=[v])
    with pytest.raises(VerifierChangedError, match="unpinned or changed"):
        pins.check_scores([pinned_score, v("3", Item("b", answer=2))])
    pins.check_scores([pinned_score])
    with pytest.raises(VerifierChangedError, match="already pinned"):
        pins.pin_verifier(v)  # the bar cannot be moved mid-run
    rewritten = FunctionVerifier(lambda o, i: 1.0, name="numeric-match")  # same name, other code
    with pytest.raises(VerifierChangedError):
        pins.check(verifiers=[rewritten])
    with pytest.raises(VerifierChangedError, match="never pinned"):
        pins.check(verifiers=[ExactMatch()])


def test_evaluation_items_that_changed_are_detected() -> None:
    pins = Pins().pin_items("holdout", ITEMS)
    pins.check(items={"holdout": list(ITEMS)})
    edited = list(ITEMS)
    edited[3] = Item("q3", prompt="3+3", answer=7)  # one answer quietly edited
    with pytest.raises(VerifierChangedError, match="evaluation set 'holdout' changed"):
        pins.check(items={"holdout": edited})
    assert items_hash(edited) != items_hash(ITEMS)
    with pytest.raises(VerifierChangedError):
        pins.check(items={"holdout": ITEMS[:-1]})  # an item dropped


def test_suite_hash_covers_the_verifier() -> None:
    a = verified_suite("s", ITEMS, NumericMatch(rel_tol=1e-6))
    b = verified_suite("s", ITEMS, NumericMatch(rel_tol=1e-3))
    assert a.hash != b.hash and a.item_ids == b.item_ids

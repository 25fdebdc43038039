"""The LoCoMo benchmark: its scorer against hand-computed cases, its recall, and a quick end-to-end run on
synthetic data in the LoCoMo format (the real file is never needed by the tests)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lifelong.bench import locomo
from lifelong.bench.locomo_metrics import (
    adversarial_correct,
    answer_tokens,
    evidence_recall,
    locomo_f1,
    multi_answer_f1,
    normalize_answer,
    token_f1,
)


# ------------------------------------------------------------------ official normalisation and F1
@pytest.mark.parametrize(("raw", "expected"), [
    ("The Cat, and a Hat!", "cat hat"),          # commas, articles a/the/and, punctuation, case
    ("7 May, 2023", "7 may 2023"),
    ("  An apple  a day ", "apple day"),
    ("rock-and-roll", "rockandroll"),             # punctuation is deleted, not replaced by a space
    ("bandana", "bandana"),                       # 'and' only as a whole word
    (2022, "2022"),                               # numeric answers are scored as text
])
def test_normalize_answer_matches_the_official_rules(raw: object, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_porter_stemming_is_applied_to_both_sides() -> None:
    assert answer_tokens("Running races") == ["run", "race"]
    assert token_f1("she runs", "running") == pytest.approx(2 * 0.5 * 1 / 1.5)  # P 1/2, R 1/1


def test_token_f1_hand_computed() -> None:
    # prediction "caroline went to the support group" -> [carolin, went, to, support, group] (5 tokens)
    # gold "support group" -> 2 tokens; overlap 2: P = 2/5, R = 1, F1 = 2 * 0.4 / 1.4
    assert token_f1("Caroline went to the support group", "support group") == pytest.approx(0.8 / 1.4)
    assert token_f1("yes yes", "yes") == pytest.approx(2 * 0.5 * 1 / 1.5)   # repeated tokens count once each
    assert token_f1("Paris", "Berlin") == 0.0
    assert token_f1("the", "a") == 0.0  # both normalise to nothing


def test_category_rules() -> None:
    # category 1: gold split on commas, mean of each part's best match among the prediction's parts
    assert multi_answer_f1("pottery, camping", "camping, pottery, painting") == pytest.approx(2 / 3)
    assert locomo_f1("pottery", "pottery, painting", category=1) == pytest.approx(0.5)
    # category 3: gold cut at the first ';'
    assert locomo_f1("Psychology", "Psychology; counseling certification", category=3) == 1.0
    # categories 2 and 4: plain token F1, no comma split (the commas are simply removed)
    assert locomo_f1("7 May 2023", "7 May, 2023", category=2) == 1.0
    assert locomo_f1("adoption agencies", "Adoption agencies", category=4) == 1.0
    # category 5: credit only for saying it is not there
    assert adversarial_correct("Not mentioned in the conversation") == 1.0
    assert adversarial_correct("No information available.") == 1.0
    assert locomo_f1("self-care", "self-care is important", category=5) == 0.0
    with pytest.raises(ValueError, match="categories are 1-5"):
        locomo_f1("x", "y", category=7)


def test_evidence_recall() -> None:
    ranked = ["D1:1", "D2:2", "D3:3", "D4:4"]
    assert evidence_recall(ranked, ["D2:2"], k=1) == 0.0
    assert evidence_recall(ranked, ["D2:2"], k=2) == 1.0
    assert evidence_recall(ranked, ["D2:2", "D4:4", "D9:9"], k=4) == pytest.approx(2 / 3)
    assert evidence_recall(ranked, ["D2:2", "D2:2"], k=2) == 1.0  # duplicates count once
    with pytest.raises(ValueError):
        evidence_recall(ranked, [], k=5)


def test_evidence_ids_are_repaired_and_checked() -> None:
    assert locomo.parse_evidence(["D9:1 D4:4 D4:6"]) == ("D9:1", "D4:4", "D4:6")
    assert locomo.parse_evidence(["D:11:26", "D30:05", "D"]) == ("D11:26", "D30:5")
    assert locomo.parse_evidence(["D1:1", "D1:2"], known={"D1:2"}) == ("D1:2",)


def test_bm25_index_hand_computed() -> None:
    idx = locomo.BM25Index(["a b", "a c c"], tokenize=str.split)
    # N = 2; 'c' is in 1 doc: idf = ln(1.5 / 1.5) = 0 -> FTS5's floor 1e-6; 'b' likewise
    assert idx.scores("c")[1] == pytest.approx(1e-6 * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3 / 2.5)))
    assert idx.scores("zzz").tolist() == [0.0, 0.0]


def test_hybrid_retriever_uses_context_date_and_speaker() -> None:
    from lifelong.context import HashingEmbedder

    turns = [locomo.Turn("D1:1", "Ana", "Did you finish the kiln course?", None, 1, "1:56 pm on 8 May, 2023", 0),
             locomo.Turn("D1:2", "Ben", "Yes, last week!", None, 1, "1:56 pm on 8 May, 2023", 1),
             locomo.Turn("D2:1", "Ana", "I like tea.", None, 2, "10:37 am on 27 June, 2023", 2)]
    e = HashingEmbedder(64)
    settings = locomo.HybridSettings(dense=0.0, bm25_before=1.0, bm25_around=0.0, speaker_boost=0.5)
    r = locomo.HybridRetriever(turns, e.embed([t.content for t in turns]), ("Ana", "Ben"), settings)
    q = "When did Ben finish the kiln course?"
    # "Yes, last week!" shares no word with the question: its preceding turn and its speaker find it
    assert r.rank(q, e.embed([q])[0], 1) == ["D1:2"]
    assert locomo.context_document(turns, 2, 2, 0, True) == "Ana: I like tea. 27 June 2023"  # sessions never mix


def test_missing_data_names_the_flag_and_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFELONG_LOCOMO", str(tmp_path / "nowhere.json"))
    with pytest.raises(locomo.LocomoDataError, match=r"--data PATH.*\$LIFELONG_LOCOMO"):
        locomo.resolve_data(None)
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "locomo"}')
    with pytest.raises(locomo.LocomoDataError, match="not LoCoMo data"):
        locomo.load_locomo(bad)


def test_embedding_cache_round_trip(tmp_path: Path) -> None:
    from lifelong.context import HashingEmbedder

    first = locomo.CachedEmbedder(HashingEmbedder(32), tmp_path)
    v = first.embed(["one", "two", "one"])
    first.save()
    again = locomo.CachedEmbedder(HashingEmbedder(32), tmp_path)
    assert np.allclose(again.embed(["two"])[0], v[1]) and again.computed == 0 and first.computed == 2


# ------------------------------------------------------------------ end to end on synthetic data
def test_quick_run_writes_results_with_computed_targets(tmp_path: Path) -> None:
    out = locomo.run(tmp_path, quick=True, quiet=True)
    data = json.loads((tmp_path / "locomo.json").read_text())
    assert {"config", "machine", "packages", "table", "targets", "commit", "qa_rows"} <= set(data)
    ops = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    assert len(data["targets"]) == 5
    for t in data["targets"]:
        assert set(t) >= {"name", "measured", "target", "comparison", "met"}
        assert t["met"] == (t["measured"] is not None and ops[t["comparison"]](t["measured"], t["target"]))
    assert out["targets"] == data["targets"]
    recall = data["table"]["recall"]
    assert set(recall) == set(locomo.RETRIEVERS)
    for name in recall:
        for split in ("all", "tune"):
            row = recall[name][split]["10"]
            assert all(v is None or 0.0 <= v <= 100.0 for k, v in row.items() if k != "n")
    # recall@10 over categories 1-4 is the mean over their questions, not over categories
    hyb = recall["hybrid"]["all"]["10"]
    n = {c: hyb["n"][str(c)] for c in (1, 2, 3, 4)}
    weighted = sum(hyb[str(c)] * n[c] for c in n) / sum(n.values())
    assert math.isclose(hyb["all"], weighted, abs_tol=0.02)
    qa = data["table"]["qa"]
    assert qa["questions"] == 10 and set(qa["table"]) == {"memory", "full-context", "no-memory"}
    assert all(len(r["retrieved"]) == 3 for r in data["qa_rows"])
    assert all(r["gold"] is None for r in data["qa_rows"] if r["category"] == 5)  # never shown, never stored
    md = (tmp_path / "locomo.md").read_text()
    assert "## Targets" in md and "held_out" in md and "locomo-recall.png" in md
    for png in ("locomo-recall.png", "locomo-qa-f1.png"):
        assert (tmp_path / png).stat().st_size > 1000

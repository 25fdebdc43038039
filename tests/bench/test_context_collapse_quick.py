"""The context-collapse benchmark runs end to end in its quick configuration (a scripted, lossy model and
hashing embeddings) and writes honest files; the probes see a lost specific."""

from __future__ import annotations

import json
from pathlib import Path

from lifelong.bench.context_collapse import kept, make_notes, make_rounds, retention, run


def test_notes_and_probes() -> None:
    notes = make_notes(0)
    assert len(notes) >= 50 and sum(len(n.specifics) for n in notes) >= 150
    memory = "\n".join(n.text for n in notes)
    assert retention(notes, memory) == 1.0
    first = notes[0]
    damaged = memory.replace(first.text, first.text.replace(first.service, "some"))
    assert kept(first, damaged) == [False, False, False] and retention(notes, damaged) < 1.0
    # a rewrite that groups a service's rules under a heading still counts
    grouped = f"## {first.section}\n- {first.service} API:\n" + "\n".join(
        f"  - {part}" for part in first.text.split(":", 1)[1].split(";"))
    assert all(kept(first, grouped))
    rounds = make_rounds(notes)
    assert len(rounds) == 10 and {x.kind for r in rounds for x in r} == {"new", "refinement", "paraphrase", "repeat"}


def test_quick_run_writes_results_with_computed_targets(tmp_path: Path) -> None:
    out = run(tmp_path, quick=True, quiet=True)
    data = json.loads((tmp_path / "context-collapse.json").read_text())
    assert {"config", "machine", "packages", "table", "targets", "commit"} <= set(data)
    r = data["table"]["runs"][0]
    assert len(r["retention"]["delta"]) == 4  # before the first round and after each of 3
    assert r["retention"]["delta"][-1] == 1.0  # delta curation keeps every original specific
    assert r["retention"]["rewrite"][-1] < 1.0  # the scripted lossy rewrite loses some
    assert r["tokens"]["delta"][-1] < r["tokens"]["add_only"][-1] + 200
    assert r["curator"]["rejected"] == r["curator"]["calls"] > 0  # the scripted model never emits JSON
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
    for t in data["targets"]:
        assert t["met"] == (t["measured"] is not None and ops[t["comparison"]](t["measured"], t["target"]))
    assert out["targets"] == data["targets"]
    md = (tmp_path / "context-collapse.md").read_text()
    assert "## Targets" in md and "context-collapse.png" in md
    assert (tmp_path / "context-collapse.png").stat().st_size > 1000

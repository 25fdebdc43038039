"""The policy file: parsing, round trips through the emitter, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifelong.control.triggers import AlwaysTrigger, DriftTrigger, ScheduleTrigger, ThresholdTrigger
from lifelong.system import Policies, PolicyError, System, parse_trigger, to_toml

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies.toml"


def test_the_example_file_parses_and_round_trips(tmp_path):
    p = Policies.load(EXAMPLE)
    assert p.name == "example" and set(p.learners) == {"memory", "tent"}
    memory, tent = p.learners["memory"], p.learners["tent"]
    assert memory.type == "feedback-memory" and memory.promote.to == "user" and memory.promote.min_events == 5
    assert memory.gate.target == "feedback" and memory.budget.max_items == 20
    assert tent.trigger == "above:0.5" and tent.budget.params == ("*norm.weight", "*norm.bias")
    assert tent.budget.max_distance == 1.0 and tent.reset.policy == "periodic:200"
    assert p.path(p.ledger) == str(EXAMPLE.parent / "runs/example/ledger.db")
    again = Policies.load(p.dump(tmp_path / "copy.toml"))
    assert again == p


def test_defaults_fill_what_the_file_leaves_out():
    p = Policies.loads('[learners.m]\ntype = "feedback-memory"')
    m = p.learners["m"]
    assert (p.name, p.ledger, p.embedder) == ("lifelong", "ledger.db", "hashing-256")
    assert (m.trigger, m.gate.alpha, m.monitor.window, m.reset.policy) == ("always", 0.05, 100, "never")
    assert (m.promote.to, m.promote.when) == ("user", "session_end")
    assert Policies.loads('[learners.t]\ntype = "tent"').learners["t"].promote.to == "none"


def test_trigger_specs():
    assert isinstance(parse_trigger("always"), AlwaysTrigger)
    assert isinstance(parse_trigger("every:3"), ScheduleTrigger)
    assert isinstance(parse_trigger("above:0.5"), ThresholdTrigger)
    assert isinstance(parse_trigger("drift:page-hinkley"), DriftTrigger)
    for bad in ("sometimes", "every:0", "every:x", "below:", "above:nan", "drift:magic", "always:1"):
        with pytest.raises(PolicyError, match="bad trigger spec"):
            parse_trigger(bad)


BAD = [
    ('[learners.m]\ntype = "feedbak-memory"', "learners.m.type", "did you mean 'feedback-memory'"),
    ("[learners.m]\ntrigger = \"always\"", "learners.m.type", "missing; name the learner"),
    ('[learners.m]\ntype = "tent"\ntriger = "always"', "learners.m.triger", "did you mean 'trigger'"),
    ('[learners.m]\ntype = "tent"\ntrigger = "every:0"', "learners.m.trigger", "bad trigger spec 'every:0'"),
    ('[learners.m]\ntype = "tent"\n[learners.m.budget]\nsteps = -1', "learners.m.budget.steps", "must be >= 0"),
    ('[learners.m]\ntype = "tent"\n[learners.m.budget]\nlr = 0', "learners.m.budget.lr", "must be > 0"),
    ('[learners.m]\ntype = "tent"\n[learners.m.budget]\nmax_distance = -0.5', "learners.m.budget.max_distance",
     "must be >= 0"),
    ('[learners.m]\ntype = "tent"\n[learners.m.budget]\nsteps = 1.5', "learners.m.budget.steps", "whole number"),
    ('[learners.m]\ntype = "tent"\n[learners.m.budget]\nsteps = "1"', "learners.m.budget.steps", "must be a number"),
    ('[learners.m]\ntype = "tent"\n[learners.m.gate]\nalpha = 1.5', "learners.m.gate.alpha", "must lie in (0, 1)"),
    ('[learners.m]\ntype = "tent"\n[learners.m.gate]\ncanary_rule = "strict"', "learners.m.gate.canary_rule",
     "is not one of point, ci"),
    ('[learners.m]\ntype = "tent"\n[learners.m.monitor]\nwindow = 10', "learners.m.monitor.window",
     "must be >= min_samples"),
    ('[learners.m]\ntype = "tent"\n[learners.m.reset]\npolicy = "sometimes"', "learners.m.reset.policy",
     "unknown reset policy"),
    ('[learners.m]\ntype = "tent"\n[learners.m.promote]\nto = "everyone"', "learners.m.promote.to",
     "is not one of none, user, global"),
    ('[learners.m]\ntype = "tent"\nsignals = ["feedback"]', "learners.m.signals", "does not learn from 'feedback'"),
    ('[learners.m]\ntype = "tent"\n[learners.m.options]\nepisodc = true', "learners.m.options.episodc",
     "did you mean 'episodic'"),
    ('[learners.m]\ntype = "tent"\nbudget = 3', "learners.m.budget", "must be a table"),
    ('[sytem]\nname = "x"', "sytem", "did you mean 'system'"),
    ('[system]\nname = "a/b"', "system.name", "cannot name ledger refs"),
    ('[system]\ncontext_budget = -5', "system.context_budget", "must be >= 0"),
    ("[system\nname = 1", "<policies>", "is not valid TOML"),
]


@pytest.mark.parametrize(("text", "key", "message"), BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_policies_name_the_key_and_the_fix(text, key, message):
    with pytest.raises(PolicyError) as info:
        Policies.loads(text)
    assert info.value.key == key
    assert str(info.value).startswith(key + ": ")
    assert message in str(info.value)


def test_missing_file_and_system_level_errors(tmp_path):
    with pytest.raises(PolicyError, match="no such policy file"):
        Policies.load(tmp_path / "nope.toml")
    (tmp_path / "p.toml").write_text('[system]\nmemory = ":memory:"\n[learners.m]\ntype = "feedback-memory"\n'
                                     '[learners.m.gate]\ncanaries = ["smoke"]\n')
    with pytest.raises(PolicyError, match=r"learners.m.type: 'feedback-memory' .* needs a chat backend"):
        System.from_config(tmp_path / "p.toml")
    from lifelong.system import context_echo_chat

    with pytest.raises(PolicyError, match=r"learners.m.gate.canaries: unknown suite 'smoke'.*suites=\{'smoke'"):
        System.from_config(tmp_path / "p.toml", chat=context_echo_chat())
    (tmp_path / "e.toml").write_text('[system]\nmemory = ":memory:"\nembedder = "word2vec"\n')
    with pytest.raises(PolicyError, match="system.embedder"):
        System.from_config(tmp_path / "e.toml")


def test_the_emitter_writes_valid_toml_for_awkward_values():
    import tomllib

    data = {"system": {"name": 'a "quoted"\tname\\', "list": [1, 2.5, True, "x"], "none": None},
            "learners": {"weird key": {"options": {"inline": "é"}}}}
    parsed = tomllib.loads(to_toml(data))
    assert parsed["system"] == {"name": 'a "quoted"\tname\\', "list": [1, 2.5, True, "x"]}
    assert parsed["learners"]["weird key"]["options"]["inline"] == "é"

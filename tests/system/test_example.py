"""The shipped example policy file drives a system with both learners, end to end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from lifelong.system import Policies, System, context_echo_chat

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies.toml"


def test_example_policies_run_memory_and_weights_in_one_session(tmp_path, tiny_model, teach, facts):
    policies = dataclasses.replace(Policies.load(EXAMPLE), base_dir=str(tmp_path))
    with System(policies, chat=context_echo_chat(), model=tiny_model) as system:
        assert system.routes()["feedback"] == ["memory"] and system.routes()["input"] == ["tent"]
        g = torch.Generator().manual_seed(0)
        with system.session(user="alice") as s:
            teach(s)
            for _ in range(3):
                s.predict(torch.randn(8, 4, generator=g))
        # tent declares Input but only takes tensor batches: chat messages are not routed to it
        assert len(s.routed["tent"]) == 3 and all(s.events[i].content.shape == (8, 4) for i in s.routed["tent"])
        assert len(s.adapted["memory"]) == len(facts)
        assert s.promotions["memory"].accepted
        assert "tent" not in s.promotions  # promote.to = "none"
        assert (tmp_path / "runs/example/ledger.db").exists()
        refs = system.ledger.refs()
        assert "example/user/alice/memory" in refs and "example/global/weights/tent" in refs

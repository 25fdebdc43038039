"""The LM reader in a session weight scope: documents adapt LoRA weights of this session only."""

from __future__ import annotations

import pytest
import torch

from lifelong.control.gate import Suite
from lifelong.system import Policies, System, context_echo_chat

pytestmark = pytest.mark.slow  # builds a tiny transformers model (~10 s on a busy 2-core machine)

DOC = "The vault code is 4417. The courier arrives at noon. " * 6
SNIPPETS = ["The vault code is 4417.", "The courier arrives at noon.", " The vault code", " arrives at noon.",
            "code is 4417.", "The courier", " is 4417. The", "at noon. The"]
POLICY = """
[system]
name = "lm"
memory = ":memory:"
ledger = "ledger.db"
[learners.reader]
type = "lm-reader"
[learners.reader.options]
chunk_tokens = 32
window = 32
[learners.reader.budget]
steps = 2
lr = 0.01
[learners.reader.gate]
target = "recall"
n_resamples = 200
[learners.reader.promote]
to = "user"
when = "manual"
"""


@pytest.fixture(scope="module")
def lm():
    from lifelong.models.lm import CausalLM

    return CausalLM.tiny_random()


def _adapters(reader):
    return {n: p.detach().clone() for n, p in reader.params.items()}


def test_reading_adapts_the_session_only_and_promotes_through_the_gate(tmp_path, lm):
    recall = Suite("recall", tuple(map(str, range(len(SNIPPETS)))),
                   lambda reader: [-reader.score(s) for s in SNIPPETS], content_hash="recall-v1")
    with System(Policies.loads(POLICY, base_dir=str(tmp_path)), lm=lm, suites={"recall": recall},
                chat=context_echo_chat()) as system:
        with system.session(user="alice") as s:
            s.chat("What is the vault code?")  # chat messages are not routed to the reader
            doc = s.read(DOC)
            assert s.routed["reader"] == [doc.id]
            reader = s.state["reader"].adapter
            assert reader.scope.distance() > 0 and reader.report.steps > 0
            with system.session(user="bob") as bob:
                assert bob.state["reader"].adapter.scope.distance() == 0.0
                base = _adapters(bob.state["reader"].adapter)
            adapted = _adapters(reader)
            result = s.promote()["reader"]
        assert result.accepted and result.ref == "lm/user/alice/weights/reader"
        assert result.events == (doc.id,)
        why = system.explain(result.version)
        assert [sig["role"] for sig in why.signals] == ["document"] and why.helped is True
        with system.session(user="alice") as again:  # alice's next session starts from her version
            now = _adapters(again.state["reader"].adapter)
            assert all(torch.equal(now[n], adapted[n]) for n in now)
        with system.session(user="bob") as bob2:
            now = _adapters(bob2.state["reader"].adapter)
            assert all(torch.equal(now[n], base[n]) for n in now)
        resets = system.ledger.log("lm/global/weights/reader", types=["reset"])
        assert any(e.data.get("session") == s.id for e in system.ledger.log("lm/global/weights/reader"))
        assert {e.data["reason"] for e in resets} == {"session end"}


def test_reader_needs_a_language_model(tmp_path):
    from lifelong.system import PolicyError

    with pytest.raises(PolicyError, match="pass lm=<lifelong.models.lm.CausalLM>"):
        System(Policies.loads(POLICY.replace('to = "user"', 'to = "none"'), base_dir=str(tmp_path)))

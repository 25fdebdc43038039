"""Fixtures for the system tests: a policy file in a temp folder, a context-echo chat, a tiny BN model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lifelong.system import System, context_echo_chat

FACTS = [
    ("Where is the Acme office?", "The Acme office is in Lyon"),
    ("Who runs support?", "Support is run by Dana"),
    ("When are invoices due?", "Invoices are due in 30 days"),
    ("Which port does the API use?", "The API uses port 8443"),
    ("What is the refund window?", "The refund window is 14 days"),
    ("Which VPN do we use?", "We use the WireGuard VPN"),
]

MEMORY_ONLY = """
[system]
name = "t"
memory = "memory.db"
ledger = "ledger.db"
[learners.memory]
type = "feedback-memory"
[learners.memory.gate]
n_resamples = 200
[learners.memory.promote]
min_events = 5
"""


class TinyNet(nn.Module):
    """Linear -> BatchNorm -> ReLU -> Linear: Tent adapts ``norm.weight`` and ``norm.bias``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 8)
        self.norm = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.fc(x))))


@pytest.fixture
def make_system(tmp_path):
    """Build a System from TOML text written into tmp_path; closes every system at the end."""
    made: list[System] = []

    def make(text: str = MEMORY_ONLY, **kwargs) -> System:
        path = tmp_path / f"policies{len(made)}.toml"
        path.write_text(text, encoding="utf-8")
        kwargs.setdefault("chat", context_echo_chat())
        system = System.from_config(path, **kwargs)
        made.append(system)
        return system

    yield make
    for s in made:
        s.close()


def _teach(session, facts=FACTS):
    for question, fact in facts:
        reply = session.chat(question)
        session.feedback("correction", text=fact, about=reply)


@pytest.fixture
def teach():
    """``teach(session, facts=FACTS)``: ask each question, then correct the answer with the fact."""
    return _teach


@pytest.fixture
def facts():
    """Six (question, fact) pairs: enough discordant items for an exact paired test at alpha 0.05."""
    return list(FACTS)


@pytest.fixture
def tiny_model():
    """A fresh :class:`TinyNet` (seeded)."""
    return TinyNet()

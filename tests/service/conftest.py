"""Fixtures: a service on a temporary folder with two tenants and a scripted backend that records what it
was sent, reached through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lifelong.context import HashingEmbedder  # noqa: E402
from lifelong.models.chat import ScriptedChat  # noqa: E402
from lifelong.service import ServiceConfig, create_app  # noqa: E402

KEY_A = "ll-test-key-tenant-a"
KEY_B = "ll-test-key-tenant-b"
AUTH_A = {"Authorization": f"Bearer {KEY_A}"}
AUTH_B = {"Authorization": f"Bearer {KEY_B}"}


def echo(messages: Any) -> str:
    """The scripted model: repeats the last user message."""
    return "echo: " + messages[-1]["content"]


@dataclass
class Harness:
    """A TestClient on a fresh service; ``a`` and ``b`` are the auth headers of tenants A and B."""

    client: TestClient
    chat: ScriptedChat
    data: Path
    key_a: str = KEY_A
    a: dict[str, str] = field(default_factory=lambda: dict(AUTH_A))
    b: dict[str, str] = field(default_factory=lambda: dict(AUTH_B))

    @property
    def service(self) -> Any:
        return self.client.app.state.service  # type: ignore[attr-defined]

    def session(self, auth: dict[str, str] | None = None, user: str = "alice") -> str:
        r = self.client.post("/v1/sessions", json={"user": user}, headers=auth or self.a)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def last_sent(self) -> list[dict[str, str]]:
        """The messages the backend received on its last call."""
        return self.chat.calls[-1]


@pytest.fixture()
def make_harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    clients: list[TestClient] = []

    def make(chat: ScriptedChat | None = None, **options: Any) -> Harness:
        chat = chat or ScriptedChat(echo, name="scripted")
        options.setdefault("embedder", HashingEmbedder(64))
        data = tmp_path / f"svc{len(clients)}"
        config = ServiceConfig(data, chat=chat, keys={KEY_A: "tenant-a", KEY_B: "tenant-b"}, **options)
        client = TestClient(create_app(config))
        client.__enter__()
        clients.append(client)
        return Harness(client, chat, data)

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture()
def h(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()

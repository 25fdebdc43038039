"""The real service under uvicorn on 127.0.0.1, called with the official `openai` client, and the
`lifelong serve` command started as a process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

openai = pytest.importorskip("openai")

from lifelong.context import HashingEmbedder  # noqa: E402
from lifelong.models.chat import ScriptedChat  # noqa: E402
from lifelong.service import BackgroundServer, ServiceConfig, create_app  # noqa: E402

KEY_A = "ll-test-key-tenant-a"


def echo(messages: object) -> str:
    return "echo: " + messages[-1]["content"]  # type: ignore[index]


def test_openai_client_against_the_running_service(tmp_path: Path) -> None:
    chat = ScriptedChat(echo, name="scripted")
    config = ServiceConfig(tmp_path / "svc", chat=chat, keys={KEY_A: "tenant-a"}, embedder=HashingEmbedder(64))
    with BackgroundServer(create_app(config)) as server:
        assert server.host == "127.0.0.1"
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY_A, timeout=10.0, max_retries=0)
        messages = [{"role": "user", "content": "tell me about the weather in Lyon"}]

        plain = client.chat.completions.create(model="scripted", messages=messages)
        text = plain.choices[0].message.content
        assert text == "echo: tell me about the weather in Lyon" and plain.choices[0].finish_reason == "stop"
        assert plain.usage is not None and plain.usage.completion_tokens > 0

        stream = client.chat.completions.create(model="scripted", messages=messages, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0

        # Learned context through a session: feedback recorded over HTTP, then used by the OpenAI call.
        auth = {"Authorization": f"Bearer {KEY_A}"}
        sid = httpx.post(server.url + "/v1/sessions", json={"user": "alice"}, headers=auth, timeout=10).json()["id"]
        r = httpx.post(server.url + "/v1/feedback", json={"type": "correction", "session_id": sid,
                                                          "text": "Alice lives in Lyon and likes rain"},
                       headers=auth, timeout=10)
        assert r.status_code == 201
        resp = client.chat.completions.create(model="scripted", messages=messages, extra_headers={"X-Session-Id": sid})
        system = [m for m in chat.calls[-1] if m["role"] == "system"]
        assert system and "likes rain" in system[0]["content"]
        trace_id = resp.model_extra["lifelong"]["trace_id"]
        trace = httpx.get(f"{server.url}/v1/traces/{trace_id}", headers=auth, timeout=10).json()
        assert trace["session"] == sid and trace["reply"] == text

        with pytest.raises(openai.AuthenticationError, match="unknown API key"):
            openai.OpenAI(base_url=server.url + "/v1", api_key="ll-wrong", max_retries=0).chat.completions.create(
                model="scripted", messages=messages)
        with pytest.raises(openai.NotFoundError, match="no session"):
            client.chat.completions.create(model="scripted", messages=messages, extra_body={"session_id": "s-missing"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lifelong_serve_binds_localhost_and_prints_a_key(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lifelong.cli", "serve", "--backend", "echo", "--port", str(port),
                             "--data", str(tmp_path / "svc"), "--add-key", "acme"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        key = None
        deadline = time.monotonic() + 60
        while key is None and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            if "API key for tenant acme:" in line:
                key = line.split(":", 1)[1].split()[0]
        assert key and key.startswith("ll-"), "no key printed"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10,
                       json={"model": "echo", "messages": [{"role": "user", "content": "ping"}]},
                       headers={"Authorization": f"Bearer {key}"})
        assert r.json()["choices"][0]["message"]["content"] == "echo: ping"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_concurrent_feedback_every_acknowledged_event_is_in_the_ledger(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from lifelong.control.ledger import Ledger

    config = ServiceConfig(tmp_path / "svc", chat=ScriptedChat(echo, name="scripted"), keys={KEY_A: "tenant-a"},
                           embedder=HashingEmbedder(64), rate_limit=None)
    auth = {"Authorization": f"Bearer {KEY_A}"}
    with BackgroundServer(create_app(config)) as server, httpx.Client(base_url=server.url, headers=auth,
                                                                      timeout=30) as http:
        sessions = [http.post("/v1/sessions", json={"user": f"u{i}"}).json()["id"] for i in range(4)]

        def send(i: int) -> dict:
            kind = ("rating", "correction")[i % 2]
            body = {"type": kind, "session_id": sessions[i % 4], **({"score": 1} if kind == "rating" else {"text": f"fact {i}"})}
            r = http.post("/v1/feedback", json=body)
            assert r.status_code == 201, r.text
            return r.json()

        with ThreadPoolExecutor(8) as pool:
            acks = list(pool.map(send, range(40)))
    with Ledger.open(tmp_path / "svc" / "ledger.db", create=False) as ledger:
        recorded = {e.data["id"] for e in ledger.log("tenant/tenant-a/feedback")}
        assert {a["id"] for a in acks} <= recorded and len(recorded) == 40
        assert ledger.verify() == []

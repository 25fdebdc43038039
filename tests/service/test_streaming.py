"""Streaming chat completions, token by token from the backend, seen with the official `openai` client
against the service under uvicorn on 127.0.0.1: pieces arrive as the backend makes them, the stream
joins to the plain answer, the trace holds the full text once the stream ends, and a backend that fails,
stalls or a client that goes away mid-answer leaves a clean error and a marked trace."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

openai = pytest.importorskip("openai")

from lifelong.context import HashingEmbedder  # noqa: E402
from lifelong.models.chat import ChatModelError, Completion, LocalChat, OpenAIChat, ScriptedChat  # noqa: E402
from lifelong.models.lm import CausalLM  # noqa: E402
from lifelong.service import BackgroundServer, ServiceConfig, create_app  # noqa: E402

KEY_A = "ll-test-key-tenant-a"
AUTH = {"Authorization": f"Bearer {KEY_A}"}
QUESTION = [{"role": "user", "content": "tell me about the weather in Lyon today"}]


def echo(messages: Any) -> str:
    return "echo: " + messages[-1]["content"]


class StepChat:
    """A backend whose ``stream`` is a given generator function of the messages (``complete`` joins it)."""

    def __init__(self, name: str, pieces: Callable[[Sequence[dict[str, str]]], Iterator[str]]) -> None:
        self.name = name
        self.pieces = pieces
        self.closed = threading.Event()

    def complete(self, messages: Sequence[dict[str, str]], **options: Any) -> Completion:
        return Completion("".join(self.pieces(messages)), model=self.name)

    def stream(self, messages: Sequence[dict[str, str]], **options: Any) -> Generator[str, None, None]:
        try:
            yield from self.pieces(messages)
        finally:
            self.closed.set()


class OnlyComplete:
    """A third-party backend without ``stream``."""

    name = "whole"

    def complete(self, messages: Sequence[dict[str, str]], **options: Any) -> Completion:
        return Completion("the whole answer at once", model=self.name)


def serve(tmp_path: Path, chat: Any, **options: Any) -> BackgroundServer:
    options.setdefault("embedder", HashingEmbedder(64))
    config = ServiceConfig(tmp_path / "svc", chat=chat, keys={KEY_A: "tenant-a"}, **options)
    return BackgroundServer(create_app(config))


def client_for(server: BackgroundServer) -> Any:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY_A, timeout=20.0, max_retries=0)


def get_trace(server: BackgroundServer, trace_id: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/v1/traces/{trace_id}", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_stream_arrives_piece_by_piece_equals_the_plain_answer_and_is_traced(tmp_path: Path) -> None:
    released = threading.Event()

    def gated(messages: Any) -> Iterator[str]:
        # The rest of the answer is made only once the client has the first piece: a service that
        # waited for the whole answer before sending would never get here.
        yield "Sunny"
        if not released.wait(10):
            raise ChatModelError("the first piece never reached the client before the answer was finished")
        yield from [" and", " mild", " in", " Lyon", " today."]

    tiny = LocalChat(CausalLM.tiny_random(seed=3))
    backends = {"scripted": ScriptedChat(echo, name="scripted"), "gated": StepChat("gated", gated),
                "whole": OnlyComplete(), "tiny": tiny}
    with serve(tmp_path, backends) as server:
        client = client_for(server)
        # learned context, so the trace has something to record
        sid = httpx.post(server.url + "/v1/sessions", json={"user": "alice"}, headers=AUTH, timeout=10).json()["id"]
        r = httpx.post(server.url + "/v1/feedback", headers=AUTH, timeout=10,
                       json={"type": "correction", "session_id": sid, "text": "Alice checks the weather in Lyon"})
        assert r.status_code == 201

        plain = client.chat.completions.create(model="scripted", messages=QUESTION, extra_body={"session_id": sid})
        text = plain.choices[0].message.content
        stream = client.chat.completions.create(model="scripted", messages=QUESTION, stream=True,
                                                stream_options={"include_usage": True}, extra_body={"session_id": sid})
        chunks = list(stream)
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(pieces) > 1 and "".join(pieces) == text == "echo: tell me about the weather in Lyon today"
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0 and not chunks[-1].choices

        # the trace is stored once the stream ends, with the full text and what the plain path records
        first = chunks[0].model_extra["lifelong"]
        trace, plain_trace = get_trace(server, first["trace_id"]), get_trace(server, plain.model_extra["lifelong"]["trace_id"])
        assert chunks[0].id == "chatcmpl-" + first["trace_id"]
        assert trace["reply"] == text and trace["status"] == "ok" and trace["kind"] == "completions"
        assert trace["session"] == sid and trace["user"] == "alice" and trace["context"]["ids"]
        assert trace["context"] == plain_trace["context"] and trace["messages"] == plain_trace["messages"]
        assert first["context_ids"] == trace["context"]["ids"] == plain.model_extra["lifelong"]["context_ids"]

        # pieces are sent as the backend makes them
        with client.chat.completions.create(model="gated", messages=QUESTION, stream=True) as gated_stream:
            got = []
            for chunk in gated_stream:
                content = chunk.choices[0].delta.content if chunk.choices else None
                if content:
                    got.append(content)
                    released.set()
        assert got == ["Sunny", " and", " mild", " in", " Lyon", " today."]

        # a backend with only `complete` streams its answer in one piece
        whole = list(client.chat.completions.create(model="whole", messages=QUESTION, stream=True))
        assert [c.choices[0].delta.content for c in whole if c.choices and c.choices[0].delta.content] == [
            "the whole answer at once"]

        # an in-process model streams token by token what it answers without streaming (greedy)
        body = {"model": "tiny", "messages": QUESTION, "max_tokens": 24, "temperature": 0}
        tiny_plain = client.chat.completions.create(**body).choices[0].message.content
        tiny_stream = [c.choices[0].delta.content or "" for c in client.chat.completions.create(**body, stream=True)
                       if c.choices]
        assert "".join(tiny_stream) == tiny_plain == tiny.complete(QUESTION, max_tokens=24).text

        # OpenAIChat streams from an OpenAI-compatible server (here, this one)
        remote = OpenAIChat("scripted", base_url=server.url + "/v1", api_key=KEY_A, timeout=20.0, max_retries=0)
        remote_pieces = list(remote.stream(QUESTION))
        assert len(remote_pieces) > 1 and "".join(remote_pieces) == remote.complete(QUESTION).text == text


def test_backend_errors_and_stalls_end_the_stream_cleanly_with_a_trace(tmp_path: Path) -> None:
    def breaks(messages: Any) -> Iterator[str]:
        yield "The answer"
        yield " is"
        raise ChatModelError("connection to the model dropped")

    def fails_first(messages: Any) -> Iterator[str]:
        raise ChatModelError("model not loaded")
        yield ""  # pragma: no cover

    def slow_start(messages: Any) -> Iterator[str]:
        time.sleep(1.0)
        yield "late"

    def stalls(messages: Any) -> Iterator[str]:
        yield "Half"
        time.sleep(1.0)
        yield " an answer"

    backends = {name: StepChat(name, fn) for name, fn in
                (("breaks", breaks), ("fails-first", fails_first), ("slow-start", slow_start), ("stalls", stalls))}
    with serve(tmp_path, backends, backend_timeout=0.3) as server:
        client = client_for(server)

        # mid-stream error: what was sent stays, then an error event the client raises
        got: list[str] = []
        with pytest.raises(openai.APIError, match="connection to the model dropped") as caught:
            for chunk in client.chat.completions.create(model="breaks", messages=QUESTION, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    got.append(chunk.choices[0].delta.content)
        assert "".join(got) == "The answer is"
        err = caught.value.body
        assert err["type"] == "backend_error" and err["code"] == 502
        trace = get_trace(server, err["trace_id"])
        assert trace["status"] == "error" and trace["reply"] == "The answer is"
        assert "connection to the model dropped" in trace["error"]

        # the same on the wire: an error event, then [DONE], and the connection ends
        with httpx.stream("POST", server.url + "/v1/chat/completions", headers=AUTH, timeout=10,
                          json={"model": "breaks", "messages": QUESTION, "stream": True}) as r:
            data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert data[-1] == "[DONE]" and json.loads(data[-2])["error"]["type"] == "backend_error"

        # failing before the first piece, or no first piece within backend_timeout: a plain HTTP error
        with pytest.raises(openai.APIStatusError, match="model not loaded") as failed:
            client.chat.completions.create(model="fails-first", messages=QUESTION, stream=True)
        assert failed.value.status_code == 502
        with pytest.raises(openai.APIStatusError, match="no first token within 0.3 s") as late:
            client.chat.completions.create(model="slow-start", messages=QUESTION, stream=True)
        assert late.value.status_code == 504
        assert get_trace(server, late.value.body["trace_id"])["status"] == "timeout"

        # a backend that stalls mid-answer longer than backend_timeout: an error event, not a hung connection
        got = []
        started = time.monotonic()
        with pytest.raises(openai.APIError, match="sent nothing more within 0.3 s") as stalled:
            for chunk in client.chat.completions.create(model="stalls", messages=QUESTION, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    got.append(chunk.choices[0].delta.content)
        assert got == ["Half"] and time.monotonic() - started < 5
        trace = get_trace(server, stalled.value.body["trace_id"])
        assert trace["status"] == "timeout" and trace["reply"] == "Half"


def test_a_client_that_goes_away_mid_answer_leaves_a_marked_partial_trace(tmp_path: Path) -> None:
    made: list[str] = []

    def long_answer(messages: Any) -> Iterator[str]:
        for i in range(400):
            time.sleep(0.02)
            made.append(f" w{i}")
            yield f" w{i}"

    chat = StepChat("long", long_answer)
    with serve(tmp_path, chat) as server:
        with httpx.stream("POST", server.url + "/v1/chat/completions", headers=AUTH, timeout=10,
                          json={"model": "long", "messages": QUESTION, "stream": True}) as r:
            trace_id = r.headers["x-lifelong-trace"]
            received = 0
            for line in r.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    received += 1
                    if received == 3:
                        break  # leaving the block closes the connection mid-answer
        assert chat.closed.wait(10), "the backend was not told to stop"
        deadline = time.monotonic() + 10
        while (r := httpx.get(f"{server.url}/v1/traces/{trace_id}", headers=AUTH, timeout=10)).status_code == 404:
            assert time.monotonic() < deadline, "no trace after the disconnect"
            time.sleep(0.05)
        trace = r.json()
        assert trace["status"] == "disconnected" and "client disconnected" in trace["error"]
        full = "".join(f" w{i}" for i in range(400)).strip()
        assert trace["reply"] and full.startswith(trace["reply"].strip()) and len(made) < 400

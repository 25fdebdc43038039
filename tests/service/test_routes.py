"""The routes through FastAPI's TestClient: sessions, chat, feedback, memory, ledger, completions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the fixtures come from conftest.py
    from tests.service.conftest import Harness



def test_openapi_schema_lists_the_routes_and_the_bearer_scheme(h: Harness) -> None:
    schema = h.client.get("/openapi.json").json()
    paths = set(schema["paths"])
    for path in ("/v1/sessions", "/v1/sessions/{session_id}/chat", "/v1/feedback", "/v1/memory/search",
                 "/v1/memory/items/{item_id}/history", "/v1/ledger/log", "/v1/ledger/diff", "/v1/ledger/rollback",
                 "/v1/chat/completions"):
        assert path in paths
    assert any(s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values())
    assert h.client.get("/health").json()["status"] == "ok"


def test_session_lifecycle_and_chat_with_history(h: Harness) -> None:
    sid = h.session()
    assert h.client.get(f"/v1/sessions/{sid}", headers=h.a).json()["user"] == "alice"
    first = h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "hello"}, headers=h.a).json()
    assert first["reply"] == "echo: hello"
    h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "again"}, headers=h.a)
    assert [m["content"] for m in h.last_sent()] == ["hello", "echo: hello", "again"]
    trace = h.client.get(f"/v1/traces/{first['trace_id']}", headers=h.a).json()
    assert trace["status"] == "ok" and trace["reply"] == "echo: hello" and trace["session"] == sid
    assert len(h.client.get(f"/v1/sessions/{sid}/traces", headers=h.a).json()) == 2
    ended = h.client.post(f"/v1/sessions/{sid}/end", headers=h.a).json()
    assert ended["active"] is False
    r = h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "more"}, headers=h.a)
    assert r.status_code == 409 and "ended" in r.json()["error"]["message"]


def test_feedback_is_in_the_ledger_and_corrections_reach_the_next_turn_as_quoted_data(h: Harness) -> None:
    sid = h.session()
    turn = h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "when are invoices due?"}, headers=h.a).json()
    rating = h.client.post("/v1/feedback", json={"type": "rating", "session_id": sid, "trace_id": turn["trace_id"],
                                                 "score": -1}, headers=h.a)
    assert rating.status_code == 201 and rating.json()["memory"] is None
    corr = h.client.post("/v1/feedback", json={"type": "correction", "session_id": sid, "trace_id": turn["trace_id"],
                                               "text": "Invoices are due in 30 days"}, headers=h.a).json()
    edit = h.client.post("/v1/feedback", json={"type": "edit", "session_id": sid, "trace_id": turn["trace_id"],
                                               "text": "They are due in 30 days."}, headers=h.a).json()
    # Acknowledged means recorded: every acknowledged event is in the ledger, with its sequence number.
    events = h.client.get("/v1/ledger/log", params={"ref": "feedback"}, headers=h.a).json()
    assert {e["seq"] for e in events} == {rating.json()["seq"], corr["seq"], edit["seq"]}
    listed = h.client.get("/v1/feedback", params={"session_id": sid}, headers=h.a).json()
    assert [f["type"] for f in listed] == ["edit", "correction", "rating"]
    assert listed[0]["original"] == "echo: when are invoices due?"
    item = h.client.get(f"/v1/memory/items/{corr['memory']['item_id']}", headers=h.a).json()
    assert item["content"] == "Invoices are due in 30 days" and item["scope"] == "session"
    assert item["provenance"]["source"] == "feedback:correction"
    # The next turn carries the correction as a quoted system message.
    reply = h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "so when are invoices due?"}, headers=h.a).json()
    assert corr["memory"]["item_id"] in reply["context_ids"]
    system = [m for m in h.last_sent() if m["role"] == "system"]
    assert len(system) == 1 and "<<<DATA" in system[0]["content"] and "due in 30 days" in system[0]["content"]


def test_learned_context_stays_with_its_user_and_session(h: Harness) -> None:
    alice1, alice2, bob = h.session(user="alice"), h.session(user="alice"), h.session(user="bob")
    h.client.post("/v1/feedback", json={"type": "correction", "session_id": alice1,
                                        "text": "My project is called Heron"}, headers=h.a)
    for sid, expect in ((alice1, True), (alice2, False), (bob, False)):
        r = h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "what is my project called?"},
                          headers=h.a).json()
        assert bool(r["context_ids"]) is expect, sid


def test_memory_ops_search_items_history(h: Harness) -> None:
    r = h.client.post("/v1/memory/ops", json={"operations": [
        {"op": "ADD", "id": "retry", "content": "On HTTP 429 wait 2 s", "section": "api"},
        {"op": "ADD", "id": "style", "content": "Answer in one sentence"}]}, headers=h.a)
    assert r.status_code == 201 and sorted(r.json()["items"]) == ["retry", "style"]
    h.client.post("/v1/memory/ops", json={"operations": [{"op": "UPDATE", "id": "retry", "append": " and back off"}]},
                  headers=h.a)
    hits = h.client.get("/v1/memory/search", params={"q": "what to do on 429", "k": 1}, headers=h.a).json()
    assert hits[0]["item"]["id"] == "retry" and hits[0]["score"] > 0
    items = h.client.get("/v1/memory/items", headers=h.a).json()
    assert items["total"] == 2 and [i["id"] for i in items["items"]] == ["retry", "style"]
    history = h.client.get("/v1/memory/items/retry/history", headers=h.a).json()
    assert [v["version"] for v in history] == [1, 2] and history[-1]["content"].endswith("back off")
    # User-scope items (no user in meta) reach every user's completions.
    r = h.client.post("/v1/chat/completions", json={"model": "x", "messages": [
        {"role": "user", "content": "the API answered 429, what now?"}]}, headers=h.a).json()
    assert "retry" in r["lifelong"]["context_ids"]


def test_ledger_log_show_diff_rollback_restore_memory(h: Harness) -> None:
    v1 = h.client.post("/v1/memory/ops", json={"operations": [{"op": "ADD", "id": "due", "content": "due in 30 days"}]},
                       headers=h.a).json()["version"]
    v2 = h.client.post("/v1/memory/ops", json={"operations": [{"op": "UPDATE", "id": "due", "content": "due in 45 days"}]},
                       headers=h.a).json()["version"]
    assert h.client.get("/v1/ledger/refs", headers=h.a).json() == {"memory": v2}
    log = h.client.get("/v1/ledger/log", headers=h.a).json()
    assert [e["type"] for e in log] == ["commit", "commit"] and log[0]["ref"] == "memory"
    shown = h.client.get(f"/v1/ledger/versions/{v2[:10]}", headers=h.a).json()
    assert shown["id"] == v2 and shown["live_as"] == ["memory"] and shown["changes"][0]["verdicts"][0]["accepted"]
    verdict = h.client.get(f"/v1/ledger/verdicts/{log[0]['verdict_id']}", headers=h.a).json()
    assert verdict["accepted"] and verdict["ref"] == "memory" and "no gate" in verdict["evidence"]["reasons"][0]
    diff = h.client.get("/v1/ledger/diff", params={"a": v1, "b": v2}, headers=h.a).json()
    assert diff["memory"]["changed"] == {"due": ["content"]}
    r = h.client.post("/v1/ledger/rollback", json={"ref": "memory", "to": v1[:12], "reason": "contract says 30"},
                      headers=h.a).json()
    assert r == {"ref": "memory", "from_version": v2, "to_version": v1}
    assert h.client.get("/v1/memory/items/due", headers=h.a).json()["content"] == "due in 30 days"
    assert h.client.get("/v1/ledger/log", params={"type": "rollback"}, headers=h.a).json()[0]["message"] == "contract says 30"


def test_chat_completions_plain_and_streaming(h: Harness) -> None:
    body = {"model": "anything", "messages": [{"role": "system", "content": "be brief"},
                                              {"role": "user", "content": "say something long enough to split"}]}
    r = h.client.post("/v1/chat/completions", json=body, headers=h.a)
    assert r.status_code == 200
    out = r.json()
    assert out["object"] == "chat.completion" and out["model"] == "scripted"
    text = out["choices"][0]["message"]["content"]
    assert text == "echo: say something long enough to split"
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
    assert h.client.get(f"/v1/traces/{out['lifelong']['trace_id']}", headers=h.a).json()["kind"] == "completions"
    chunks = []
    with h.client.stream("POST", "/v1/chat/completions", json={**body, "stream": True,
                                                              "stream_options": {"include_usage": True}},
                         headers=h.a) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        for line in s.iter_lines():
            if line.startswith("data: "):
                chunks.append(line[6:])
    assert chunks[-1] == "[DONE]"
    events = [json.loads(c) for c in chunks[:-1]]
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert streamed == text and len(events) > 4
    assert events[-1]["usage"]["completion_tokens"] > 0


def test_completions_with_a_session_header_use_its_memory(h: Harness) -> None:
    sid = h.session(user="carol")
    h.client.post("/v1/feedback", json={"type": "correction", "session_id": sid, "text": "Carol prefers metric units"},
                  headers=h.a)
    body = {"model": "m", "messages": [{"role": "user", "content": "which units does Carol prefer?"}]}
    r = h.client.post("/v1/chat/completions", json=body, headers={**h.a, "X-Session-Id": sid}).json()
    assert r["lifelong"]["session_id"] == sid and r["lifelong"]["context_ids"]
    assert "metric units" in h.last_sent()[0]["content"]
    trace = h.client.get(f"/v1/traces/{r['lifelong']['trace_id']}", headers=h.a).json()
    assert trace["user"] == "carol" and trace["context"]["ids"] == r["lifelong"]["context_ids"]
    assert h.client.get("/v1/models", headers=h.a).json()["data"][0]["id"] == "scripted"


def test_everything_survives_a_restart_on_the_same_folder(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from lifelong.context import HashingEmbedder
    from lifelong.models.chat import ScriptedChat
    from lifelong.service import ServiceConfig, create_app

    def app(keys: dict[str, str]) -> Any:
        return create_app(ServiceConfig(tmp_path, chat=ScriptedChat(["ok"]), keys=keys, embedder=HashingEmbedder(64)))

    with TestClient(app({"ll-configured-key": "acme"})) as c:
        minted = c.app.state.service.create_key("acme")  # type: ignore[attr-defined]
        auth = {"Authorization": f"Bearer {minted}"}
        sid = c.post("/v1/sessions", json={"user": "alice"}, headers=auth).json()["id"]
        tid = c.post(f"/v1/sessions/{sid}/chat", json={"message": "hi"}, headers=auth).json()["trace_id"]
        fb = c.post("/v1/feedback", json={"type": "correction", "session_id": sid, "text": "x is 3"}, headers=auth).json()
    with TestClient(app({})) as c:  # no keys in the configuration: the stored (hashed) ones still work
        for headers in (auth, {"Authorization": "Bearer ll-configured-key"}):
            assert c.get(f"/v1/sessions/{sid}", headers=headers).json()["user"] == "alice"
        assert c.get(f"/v1/traces/{tid}", headers=auth).json()["reply"] == "ok"
        assert c.get(f"/v1/memory/items/{fb['memory']['item_id']}", headers=auth).json()["content"] == "x is 3"
        assert [f["id"] for f in c.get("/v1/feedback", headers=auth).json()] == [fb["id"]]

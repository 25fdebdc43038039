"""Bad input gets a clear JSON error with a message, and nothing stored is lost."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lifelong.models.chat import ChatModelError, ScriptedChat

if TYPE_CHECKING:  # the fixtures come from conftest.py
    from tests.service.conftest import Harness


def _error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == status and err["message"]
    return err


def test_malformed_json_is_400_with_a_message(h: Harness) -> None:
    r = h.client.post("/v1/chat/completions", content=b'{"model": "x", "messages": [', headers={
        **h.a, "Content-Type": "application/json"})
    err = _error(r, 400)
    assert err["type"] == "invalid_json" and "not valid JSON" in err["message"]
    r = h.client.post("/v1/chat/completions", content=b'{"model": "x", "messages": []}', headers={
        **h.a, "Content-Type": "text/plain"})
    assert "Content-Type: application/json" in _error(r, 400)["message"]


def test_schema_violations_are_422_naming_the_field(h: Harness) -> None:
    err = _error(h.client.post("/v1/chat/completions", json={"model": "x"}, headers=h.a), 422)
    assert "body.messages" in err["message"] and "required" in err["message"].lower()
    err = _error(h.client.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "wizard",
                                                                                           "content": "hi"}]},
                               headers=h.a), 422)
    assert "role" in err["message"]
    sid = h.session()
    err = _error(h.client.post("/v1/feedback", json={"type": "rating", "session_id": sid, "score": 7}, headers=h.a), 422)
    assert "score" in err["message"]
    err = _error(h.client.post("/v1/feedback", json={"type": "thumbs", "session_id": sid}, headers=h.a), 422)
    assert "type" in err["message"] or "tag" in err["message"]
    err = _error(h.client.post("/v1/feedback", json={"type": "edit", "session_id": sid, "text": "x"}, headers=h.a), 422)
    assert "trace_id" in err["message"]
    _error(h.client.post("/v1/chat/completions", json={"model": "x", "n": 2, "messages": [{"role": "user", "content": "a"}]},
                         headers=h.a), 400)


def test_invalid_memory_operations_write_nothing(h: Harness) -> None:
    h.client.post("/v1/memory/ops", json={"operations": [{"op": "ADD", "id": "keep", "content": "kept"}]}, headers=h.a)
    before = h.client.get("/v1/ledger/log", headers=h.a).json()
    err = _error(h.client.post("/v1/memory/ops", json={"operations": [
        {"op": "ADD", "id": "new", "content": "fine"}, {"op": "DELETE", "idd": "keep"}]}, headers=h.a), 422)
    assert "operation 1" in err["message"] and "'idd'" in err["message"]
    _error(h.client.post("/v1/memory/ops", json={"operations": [
        {"op": "ADD", "id": "new", "content": "fine"}, {"op": "UPDATE", "id": "ghost", "content": "x"}]}, headers=h.a), 404)
    assert h.client.get("/v1/memory/items", headers=h.a).json()["total"] == 1
    assert h.client.get("/v1/ledger/log", headers=h.a).json() == before
    _error(h.client.get("/v1/memory/items/new", headers=h.a), 404)


def test_oversized_bodies_are_413_declared_or_streamed(make_harness: Any) -> None:
    h = make_harness(max_body_bytes=2000)
    big = {"model": "x", "messages": [{"role": "user", "content": "y" * 5000}]}
    err = _error(h.client.post("/v1/chat/completions", json=big, headers=h.a), 413)
    assert "2000 bytes" in err["message"]

    def chunked():  # no Content-Length: the limit is counted as the body arrives
        for _ in range(10):
            yield b"x" * 500

    _error(h.client.post("/v1/chat/completions", content=chunked(), headers=h.a), 413)
    ok = h.client.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "hi"}]},
                       headers=h.a)
    assert ok.status_code == 200


def test_unknown_sessions_traces_items_and_routes_are_404(h: Harness) -> None:
    for r in (h.client.get("/v1/sessions/s-nope", headers=h.a),
              h.client.post("/v1/sessions/s-nope/chat", json={"message": "hi"}, headers=h.a),
              h.client.post("/v1/sessions/s-nope/end", headers=h.a),
              h.client.post("/v1/feedback", json={"type": "rating", "session_id": "s-nope", "score": 1}, headers=h.a),
              h.client.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "a"}]},
                            headers={**h.a, "X-Session-Id": "s-nope"}),
              h.client.get("/v1/traces/t-nope", headers=h.a),
              h.client.get("/v1/memory/items/nope/history", headers=h.a),
              h.client.get("/v1/ledger/versions/abcdef12", headers=h.a),
              h.client.get("/v1/no/such/route", headers=h.a)):
        _error(r, 404)
    assert "POST /v1/sessions" in h.client.get("/v1/sessions/s-nope", headers=h.a).json()["error"]["message"]


def test_missing_or_wrong_keys_are_401(h: Harness) -> None:
    for headers in ({}, {"Authorization": "Bearer ll-not-a-key"}, {"Authorization": f"Basic {h.key_a}"},
                    {"Authorization": "Bearer"}):
        r = h.client.post("/v1/sessions", json={}, headers=headers)
        err = _error(r, 401)
        assert err["type"] == "authentication_error" and r.headers["www-authenticate"] == "Bearer"
    # keys are stored hashed only
    raw = (h.data / "service.db").read_bytes()
    assert h.key_a.encode() not in raw


def test_rate_limit_is_per_key_with_retry_after(make_harness: Any) -> None:
    h = make_harness(rate_limit=3, rate_window=60.0)
    codes = [h.client.get("/v1/ledger/refs", headers=h.a).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = h.client.get("/v1/ledger/refs", headers=h.a)
    assert _error(r, 429)["type"] == "rate_limit_error" and int(r.headers["retry-after"]) >= 1
    assert h.client.get("/v1/ledger/refs", headers=h.b).status_code == 200


def test_backend_timeout_is_504_and_loses_nothing(make_harness: Any) -> None:
    def slow(messages: Any) -> str:
        if "slow" in messages[-1]["content"]:
            time.sleep(1.0)
        return "fine"

    h = make_harness(chat=ScriptedChat(slow, name="slow"), backend_timeout=0.2)
    sid = h.session()
    first = h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "quick"}, headers=h.a).json()
    fb = h.client.post("/v1/feedback", json={"type": "correction", "session_id": sid, "text": "remember me"},
                       headers=h.a).json()
    r = h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "slow please"}, headers=h.a)
    err = _error(r, 504)
    assert "0.2 s" in err["message"] and err["trace_id"]
    trace = h.client.get(f"/v1/traces/{err['trace_id']}", headers=h.a).json()
    assert trace["status"] == "timeout" and trace["messages"][-1]["content"] == "slow please"
    # everything stored before is still there, and the service still answers
    assert h.client.get(f"/v1/traces/{first['trace_id']}", headers=h.a).json()["status"] == "ok"
    assert h.client.get(f"/v1/memory/items/{fb['memory']['item_id']}", headers=h.a).status_code == 200
    assert [f["id"] for f in h.client.get("/v1/feedback", headers=h.a).json()] == [fb["id"]]
    assert h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "quick"}, headers=h.a).status_code == 200


def test_a_failing_backend_is_502_with_its_trace(make_harness: Any) -> None:
    def broken(messages: Any) -> str:
        raise ChatModelError("connection refused")

    h = make_harness(chat=ScriptedChat(broken, name="broken"))
    r = h.client.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "a"}]},
                      headers=h.a)
    err = _error(r, 502)
    assert "connection refused" in err["message"]
    assert h.client.get(f"/v1/traces/{err['trace_id']}", headers=h.a).json()["status"] == "error"

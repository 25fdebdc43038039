"""Tenant B tries to read and change tenant A's sessions, traces, feedback, memory and versions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the fixtures come from conftest.py
    from tests.service.conftest import Harness



@pytest.fixture()
def a_world(h: Harness) -> dict[str, Any]:
    """Tenant A with a session, a trace, feedback, memory items and two memory versions."""
    sid = h.session(h.a, user="alice")
    turn = h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "secret plan?"}, headers=h.a).json()
    fb = h.client.post("/v1/feedback", json={"type": "correction", "session_id": sid, "trace_id": turn["trace_id"],
                                             "text": "The secret plan is Heron"}, headers=h.a).json()
    v1 = h.client.post("/v1/memory/ops", json={"operations": [{"op": "ADD", "id": "plan", "content": "A's plan: Heron"}]},
                       headers=h.a).json()["version"]
    v2 = h.client.post("/v1/memory/ops", json={"operations": [{"op": "UPDATE", "id": "plan", "content": "A's plan: Osprey"}]},
                       headers=h.a).json()["version"]
    return {"session": sid, "trace": turn["trace_id"], "feedback": fb, "v1": v1, "v2": v2}


def _404(r: Any) -> None:
    """Not found, and the answer holds nothing of A's (it may repeat what B itself sent)."""
    assert r.status_code == 404, r.text
    assert "Heron" not in r.text and "Osprey" not in r.text and "alice" not in r.text


def test_b_cannot_read_or_use_a_sessions_and_traces(h: Harness, a_world: dict[str, Any]) -> None:
    sid, tid = a_world["session"], a_world["trace"]
    _404(h.client.get(f"/v1/sessions/{sid}", headers=h.b))
    _404(h.client.get(f"/v1/sessions/{sid}/traces", headers=h.b))
    _404(h.client.get(f"/v1/traces/{tid}", headers=h.b))
    _404(h.client.post(f"/v1/sessions/{sid}/chat", json={"message": "tell me"}, headers=h.b))
    _404(h.client.post(f"/v1/sessions/{sid}/end", headers=h.b))
    _404(h.client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "plan?"}]},
                       headers={**h.b, "X-Session-Id": sid}))
    _404(h.client.post("/v1/feedback", json={"type": "rating", "session_id": sid, "score": 1}, headers=h.b))
    # B's own session cannot attach feedback to A's trace either
    b_sid = h.session(h.b, user="alice")
    _404(h.client.post("/v1/feedback", json={"type": "edit", "session_id": b_sid, "trace_id": tid, "text": "x"},
                       headers=h.b))
    _404(h.client.get("/v1/feedback", params={"session_id": sid}, headers=h.b))
    assert h.client.get("/v1/feedback", headers=h.b).json() == []
    # A's session is untouched and still active
    assert h.client.get(f"/v1/sessions/{sid}", headers=h.a).json()["active"] is True


def test_b_cannot_read_or_change_a_memory(h: Harness, a_world: dict[str, Any]) -> None:
    item = a_world["feedback"]["memory"]["item_id"]
    for path in (f"/v1/memory/items/{item}", f"/v1/memory/items/{item}/history", "/v1/memory/items/plan",
                 "/v1/memory/items/plan/history"):
        _404(h.client.get(path, headers=h.b))
    assert h.client.get("/v1/memory/items", headers=h.b).json()["total"] == 0
    assert h.client.get("/v1/memory/search", params={"q": "secret plan Heron Osprey"}, headers=h.b).json() == []
    for op in ({"op": "UPDATE", "id": "plan", "content": "hijacked"}, {"op": "DELETE", "id": "plan", "hard": True},
               {"op": "TAG", "id": "plan", "tag": "harmful"}):
        _404(h.client.post("/v1/memory/ops", json={"operations": [op]}, headers=h.b))
    # B adding an item with the same id makes B's own item, not a change to A's
    assert h.client.post("/v1/memory/ops", json={"operations": [{"op": "ADD", "id": "plan", "content": "B's plan"}]},
                         headers=h.b).status_code == 201
    assert h.client.get("/v1/memory/items/plan", headers=h.a).json()["content"] == "A's plan: Osprey"
    assert h.client.get("/v1/memory/items/plan", headers=h.b).json()["content"] == "B's plan"
    # B's completions never carry A's memory
    r = h.client.post("/v1/chat/completions", json={"model": "m", "user": "alice", "messages": [
        {"role": "user", "content": "what is the secret plan Heron?"}]}, headers=h.b).json()
    system = [m["content"] for m in h.last_sent() if m["role"] == "system"]
    assert len(system) == 1 and "B's plan" in system[0] and "Heron" not in system[0] and "Osprey" not in system[0]
    assert r["lifelong"]["context_ids"] == ["plan"]


def test_b_cannot_see_or_roll_back_to_a_versions(h: Harness, a_world: dict[str, Any]) -> None:
    v1, v2 = a_world["v1"], a_world["v2"]
    assert h.client.get("/v1/ledger/refs", headers=h.b).json() == {}
    assert h.client.get("/v1/ledger/log", headers=h.b).json() == []
    assert h.client.get("/v1/ledger/log", params={"ref": "feedback"}, headers=h.b).json() == []
    for v in (v1, v2[:8], "memory"):
        _404(h.client.get(f"/v1/ledger/versions/{v}", headers=h.b))
    _404(h.client.get("/v1/ledger/diff", params={"a": v1, "b": v2}, headers=h.b))
    verdict_id = h.client.get("/v1/ledger/log", headers=h.a).json()[0]["verdict_id"]
    assert h.client.get(f"/v1/ledger/verdicts/{verdict_id}", headers=h.a).status_code == 200
    _404(h.client.get(f"/v1/ledger/verdicts/{verdict_id}", headers=h.b))
    # B has a memory ref of its own; rolling it to A's version is refused as not found
    b_v = h.client.post("/v1/memory/ops", json={"operations": [{"op": "ADD", "id": "x", "content": "B"}]},
                        headers=h.b).json()["version"]
    for body in ({"ref": "memory", "to": v1}, {"ref": "memory", "to": v1[:10]}, {"ref": "tenant/tenant-a/memory", "to": v1},
                 {"ref": "../tenant-a/memory"}):
        _404(h.client.post("/v1/ledger/rollback", json=body, headers=h.b))
    assert h.client.get("/v1/ledger/refs", headers=h.b).json() == {"memory": b_v}
    assert h.client.get("/v1/ledger/refs", headers=h.a).json() == {"memory": v2}
    a_log = h.client.get("/v1/ledger/log", headers=h.a).json()
    assert all(e["actor"] != "api:tenant-b" for e in a_log)
    # A itself can roll back to its own version
    assert h.client.post("/v1/ledger/rollback", json={"ref": "memory", "to": v1}, headers=h.a).json()["to_version"] == v1


def test_verdict_list_is_the_tenant_own_newest_first_and_paged(h: Harness, a_world: dict[str, Any]) -> None:
    verdicts = h.client.get("/v1/ledger/verdicts", headers=h.a).json()
    # the correction's memory item and the two memory operations, each a gated (here: direct) change
    assert len(verdicts) == 3 and all(v["accepted"] and v["ref"] == "memory" for v in verdicts)
    assert [v["candidate_version"] for v in verdicts[:2]] == [a_world["v2"], a_world["v1"]]
    assert [v["created_at"] for v in verdicts] == sorted((v["created_at"] for v in verdicts), reverse=True)
    log_ids = {e["verdict_id"] for e in h.client.get("/v1/ledger/log", headers=h.a).json() if e["verdict_id"]}
    assert {v["id"] for v in verdicts} == log_ids
    for v in verdicts:
        one = h.client.get(f"/v1/ledger/verdicts/{v['id']}", headers=h.a).json()
        assert (one["change_id"], one["summary"], one["accepted"]) == (v["change_id"], v["summary"], v["accepted"])
    page = [h.client.get("/v1/ledger/verdicts", params={"limit": 2, "offset": o}, headers=h.a).json() for o in (0, 2)]
    assert [v["id"] for v in page[0] + page[1]] == [v["id"] for v in verdicts] and len(page[0]) == 2
    assert h.client.get("/v1/ledger/verdicts", params={"ref": "feedback"}, headers=h.a).json() == []
    assert h.client.get("/v1/ledger/verdicts", params={"limit": 0}, headers=h.a).status_code == 422
    # tenant B sees none of them, by listing or by ref, and its own change lists only its own verdict
    assert h.client.get("/v1/ledger/verdicts", headers=h.b).json() == []
    assert h.client.get("/v1/ledger/verdicts", params={"ref": "memory"}, headers=h.b).json() == []
    assert h.client.get("/v1/ledger/verdicts", params={"ref": "../tenant-a/memory"}, headers=h.b).json() == []
    h.client.post("/v1/memory/ops", json={"operations": [{"op": "ADD", "id": "x", "content": "B"}]}, headers=h.b)
    b_verdicts = h.client.get("/v1/ledger/verdicts", headers=h.b).json()
    assert len(b_verdicts) == 1 and b_verdicts[0]["id"] not in log_ids
    assert len(h.client.get("/v1/ledger/verdicts", headers=h.a).json()) == 3

"""The dashboard: its JSON routes through TestClient, and the page end to end in a real headless Chromium
(Playwright against the service on 127.0.0.1) on a history built here, so every number is known."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

from lifelong.control.gate import Gate, Suite
from lifelong.control.governor import Governor
from lifelong.core.change import Change
from lifelong.service.dashboard.browser import why_no_browser

if TYPE_CHECKING:  # the fixtures come from conftest.py
    from tests.service.conftest import Harness

TENANT = "tenant-a"
KEY = "ll-test-key-tenant-a"
OTHER_KEY = "ll-test-key-tenant-b"

# The gate's target suite: 40 items. The good candidate fixes items 20-34; the bad one breaks items 0-9.
TARGET_IDS = tuple(f"t-{i:02d}" for i in range(40))
CANARY_IDS = tuple(f"c-{i:02d}" for i in range(20))
CHAMPION = {"target": [1.0] * 20 + [0.0] * 20, "canary": [1.0] * 20}
GOOD = {"target": [1.0] * 35 + [0.0] * 5, "canary": [1.0] * 20}
BAD = {"target": [0.0] * 10 + [1.0] * 25 + [0.0] * 5, "canary": [0.0] * 5 + [1.0] * 15}


def build_history(service: Any, tenant: str = TENANT) -> dict[str, Any]:
    """A known history: a base adapter, an accepted change, a rejected one, a monitor's alarm and rollback,
    memory writes, a rating and a learning curve."""
    tl = service.tenant_ledger(tenant)
    ref = tl.full_ref("adapter")
    gov = Governor(service.ledger, ref, gate=Gate(n_resamples=200), monitor_window=10, monitor_min_samples=10)
    base = gov.register({"layers.0.w": torch.zeros(3, 3), "layers.1.w": torch.zeros(3, 3)}, message="base adapter")
    target = Suite("target", TARGET_IDS, lambda s: s["target"], content_hash="t1")
    canary = Suite("canary", CANARY_IDS, lambda s: s["canary"], content_hash="c1")
    good_change = Change("weights", "user", "rest-em", tensors={"layers.1.w": torch.full((3, 3), 2.0)})
    good = gov.promote(good_change, champion=CHAMPION, candidate=GOOD, target=target, canaries=[canary])
    bad_change = Change("weights", "user", "evolve", tensors={"layers.0.w": torch.ones(3, 3), "layers.1.w": torch.ones(3, 3)})
    bad = gov.promote(bad_change, champion=GOOD, candidate=BAD, target=target, canaries=[canary])
    rolled = None
    for _ in range(10):
        rolled = gov.watch(0.0) or rolled
    for step, loss in enumerate((2.0, 1.5, 1.2, 1.0), start=1):
        service.ledger.record_event("note", f"tent step {step}", ref=ref, actor="tent",
                                    data={"metrics": {"ttt_loss": loss}, "step": step})
    service.apply_ops(tenant, _ops([("ADD", "due", "Invoices are due in 30 days"),
                                    ("ADD", "retry", "On HTTP 429 wait two seconds")]), message="seed")
    service.apply_ops(tenant, _ops([("UPDATE", "due", "Invoices are due in 45 days")]), message="new contract")
    session = service.create_session(tenant, "alice")
    service.record_feedback(tenant, "rating", session.id, score=0.5)
    # A rating as the runtime records its signals.
    service.ledger.record_event("note", "feedback signal", ref=tl.full_ref("signals"), actor="user:bob",
                                data={"signal": {"kind": "feedback", "type": "rating", "score": -1.0, "user": "bob"}})
    return {"ref": ref, "base": base.id, "good": good, "bad": bad, "rolled": rolled}


def _ops(rows: list[tuple[str, str, str]]) -> list[Any]:
    from lifelong.context import op_from_dict

    return [op_from_dict({"op": op, "id": i, "content": c}, k) for k, (op, i, c) in enumerate(rows)]


def test_the_known_history_is_what_the_test_says() -> None:
    assert sum(GOOD["target"]) - sum(CHAMPION["target"]) == 15
    assert [i for i in range(40) if GOOD["target"][i] > BAD["target"][i]] == list(range(10))


# ---------------------------------------------------------------------------------------------- JSON routes
def test_the_page_and_its_files_load_nothing_from_elsewhere(h: Harness) -> None:
    page = h.client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "dashboard/static/dashboard.js" in page.text and "dashboard/static/dashboard.css" in page.text
    js = h.client.get("/dashboard/static/dashboard.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    static = Path(__file__).resolve().parents[2] / "src/lifelong/service/dashboard/static"
    for f in static.iterdir():
        text = f.read_text().replace("http://www.w3.org/2000/svg", "")  # a namespace name, not a request
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), f.name
    for bad in ("nope.js", "..%2Fapp.py", "dashboard.py", "index"):
        assert h.client.get(f"/dashboard/static/{bad}").status_code == 404
    assert h.client.get("/", follow_redirects=False).headers["location"] == "dashboard"


def test_tensor_diff_gives_norms_per_tensor_and_per_layer(h: Harness) -> None:
    tl = h.service.tenant_ledger(TENANT)
    ledger = h.service.ledger
    a = ledger.commit(tl.full_ref("adapter"), tensors={"model.layers.0.q.weight": torch.ones(2, 2),
                                                       "model.layers.0.k.weight": torch.zeros(3),
                                                       "model.layers.1.q.weight": torch.ones(4)})
    b = ledger.commit(tl.full_ref("adapter"), tensors={"model.layers.0.q.weight": torch.full((2, 2), 3.0),
                                                       "model.layers.0.k.weight": torch.tensor([1.0, 2.0, 2.0]),
                                                       "head.bias": torch.tensor([3.0, 4.0])})
    r = h.client.get("/v1/ledger/tensor-diff", params={"a": a.id[:12], "b": b.id}, headers=h.a)
    assert r.status_code == 200, r.text
    out = r.json()
    rows = {t["name"]: t for t in out["tensors"]}
    assert rows["model.layers.0.q.weight"]["l2"] == pytest.approx(4.0)  # 4 entries changed by 2
    assert rows["model.layers.0.q.weight"]["relative"] == pytest.approx(2.0)
    assert rows["model.layers.0.k.weight"]["l2"] == pytest.approx(3.0) and rows["model.layers.0.k.weight"]["relative"] is None
    assert rows["head.bias"]["status"] == "added" and rows["head.bias"]["l2"] == pytest.approx(5.0)
    assert rows["model.layers.1.q.weight"]["status"] == "same" and rows["model.layers.1.q.weight"]["l2"] == 0.0
    layers = {x["layer"]: x for x in out["layers"]}
    assert [x["layer"] for x in out["layers"]] == ["head", "model.layers.0", "model.layers.1"]
    assert layers["model.layers.0"]["l2"] == pytest.approx(5.0) and layers["model.layers.0"]["changed"] == 2
    assert layers["model.layers.0"]["relative"] == pytest.approx(5.0 / 2.0)
    assert layers["model.layers.1"]["changed"] == 0
    # Another tenant's versions do not exist for this key.
    assert h.client.get("/v1/ledger/tensor-diff", params={"a": a.id, "b": b.id}, headers=h.b).status_code == 404


def test_memory_diff_gives_the_items_with_their_bodies(h: Harness) -> None:
    v1 = h.client.post("/v1/memory/ops", json={"operations": [{"op": "ADD", "id": "due", "content": "due in 30 days"},
                                                              {"op": "ADD", "id": "old", "content": "to be removed"}]},
                       headers=h.a).json()["version"]
    v2 = h.client.post("/v1/memory/ops", json={"operations": [{"op": "UPDATE", "id": "due", "content": "due in 45 days"},
                                                              {"op": "DELETE", "id": "old"},
                                                              {"op": "ADD", "id": "new", "content": "a new fact"}]},
                       headers=h.a).json()["version"]
    d = h.client.get("/v1/ledger/memory-diff", params={"a": v1, "b": v2}, headers=h.a).json()
    assert [i["content"] for i in d["added"]] == ["a new fact"]
    assert [i["id"] for i in d["removed"]] == ["old"] or d["changed"][-1]["id"] == "old"
    due = next(c for c in d["changed"] if c["id"] == "due")
    assert due["before"]["content"] == "due in 30 days" and due["after"]["content"] == "due in 45 days"
    assert "content" in due["fields"]
    assert h.client.get("/v1/ledger/memory-diff", params={"a": v1, "b": v2}, headers=h.b).status_code == 404
    tl = h.service.tenant_ledger(TENANT)
    w = h.service.ledger.commit(tl.full_ref("adapter"), tensors={"w": torch.zeros(2)})
    r = h.client.get("/v1/ledger/memory-diff", params={"a": v1, "b": w.id}, headers=h.a)
    assert r.status_code == 422 and "holds no memory state" in r.json()["error"]["message"]


def test_series_has_gate_scores_feedback_monitors_and_metrics(h: Harness) -> None:
    known = build_history(h.service)
    s = h.client.get("/v1/ledger/series", headers=h.a).json()
    assert [(g["accepted"], g["suite"], g["ref"]) for g in s["gate"]] == [(True, "target", "adapter"),
                                                                           (False, "target", "adapter")]
    assert s["gate"][0]["champion"] == pytest.approx(0.5) and s["gate"][0]["candidate"] == pytest.approx(35 / 40)
    assert s["gate"][1]["negative_flips"] == 10 and s["gate"][1]["canaries"][0]["passed"] is False
    assert s["gate"][1]["verdict_id"] == known["bad"].verdict_id
    assert [(f["score"], f["user"]) for f in s["feedback"]] == [(0.5, "alice"), (-1.0, "bob")]
    kinds = [m["kind"] for m in s["monitors"]]
    assert kinds == ["alarm", "rollback"] and s["monitors"][0]["value"] == pytest.approx(0.0)
    assert [(p["step"], p["value"]) for p in s["metrics"]["ttt_loss"]] == [(1, 2.0), (2, 1.5), (3, 1.2), (4, 1.0)]
    assert all(math.isfinite(g["ci"][0]) for g in s["gate"])
    assert h.client.get("/v1/ledger/series", headers=h.b).json() == {"gate": [], "feedback": [], "monitors": [],
                                                                     "metrics": {}}
    assert h.client.get("/v1/ledger/series").status_code == 401


# ---------------------------------------------------------------------------------------------- the browser
NO_BROWSER = why_no_browser()
browser_test = pytest.mark.skipif(NO_BROWSER is not None, reason=f"no headless browser: {NO_BROWSER}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if NO_BROWSER is not None:
        pytest.skip(f"no headless browser: {NO_BROWSER}")
    from lifelong.service.dashboard.browser import chromium_browser

    with chromium_browser() as b:
        yield b


class Live:
    """The service on 127.0.0.1 with the known history, and a browser page on its dashboard."""

    def __init__(self, service: Any, server: Any, page: Any, known: dict[str, Any]) -> None:
        self.service, self.server, self.page, self.known = service, server, page, known
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, key: str = KEY) -> None:
        from lifelong.service.dashboard.browser import open_dashboard

        open_dashboard(self.page, self.server.url, key)

    def head(self) -> str:
        return self.service.ledger.head(self.known["ref"]).id


@pytest.fixture()
def live(tmp_path: Path, browser: Any) -> Iterator[Live]:
    from lifelong.context import HashingEmbedder
    from lifelong.models.chat import ScriptedChat
    from lifelong.service import BackgroundServer, Service, ServiceConfig, create_app

    service = Service(ServiceConfig(tmp_path / "svc", chat=ScriptedChat(["ok"]), embedder=HashingEmbedder(64),
                                    keys={KEY: TENANT, OTHER_KEY: "tenant-b"}, rate_limit=None))
    known = build_history(service)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        with BackgroundServer(create_app(service)) as server:
            live = Live(service, server, context.new_page(), known)
            yield live
            assert not live.errors, live.errors
    finally:
        context.close()
        service.close()


@browser_test
def test_the_page_loads_and_the_timeline_shows_the_known_history(live: Live) -> None:
    from playwright.sync_api import expect

    page = live.page
    page.goto(live.server.url + "/dashboard")
    expect(page.locator("#status")).to_contain_text("Enter an API key")
    page.fill("#api-key", "ll-not-a-key-of-anyone")
    page.click("#connect")
    expect(page.locator("#status")).to_contain_text("unknown API key")
    live.open()
    timeline = page.locator("#timeline")
    expect(timeline.locator(".event.reject")).to_have_count(1)
    expect(timeline.locator(".event.rollback")).to_have_count(1)
    expect(timeline.locator(".event.alarm")).to_have_count(1)
    # adapter: base, accepted change; memory: two operator commits (notes are hidden by default).
    expect(timeline.locator(".event.commit")).to_have_count(4)
    first = timeline.locator(".event[data-ref=adapter]").first
    expect(first).to_have_attribute("data-type", "rollback")
    expect(first.locator(".badge.live")).to_have_count(1)
    expect(first).to_contain_text("regression monitor")
    expect(timeline.locator(".badge.live")).to_have_count(2)  # one per ref
    expect(timeline.locator(".event.reject")).to_contain_text("REJECT target")
    refs = page.locator("#refs-bar")
    expect(refs).to_contain_text("adapter " + live.known["base"][:10])
    # Notes (the learning curve, the feedback) appear when asked for.
    page.check("input[data-type=note]")
    expect(timeline.locator(".event.note")).to_have_count(6)
    # The key stays in this tab's sessionStorage: a reload is still connected.
    page.reload()
    expect(timeline.locator(".event.reject")).to_have_count(1)
    assert all(u.startswith(live.server.url + "/") for u in live.requests), [u for u in live.requests
                                                                            if not u.startswith(live.server.url)]


@browser_test
def test_a_verdict_shows_its_evidence(live: Live) -> None:
    from playwright.sync_api import expect

    live.open()
    page = live.page
    page.locator("#timeline .event.reject").click()
    evidence = page.locator("#evidence")
    expect(evidence.locator("h3")).to_contain_text("rejected")
    target = evidence.locator(".suite[data-role=target]")
    expect(target).to_contain_text("0.875 \u2192 0.625")
    verdict = live.service.ledger.verdict(live.known["bad"].verdict_id)
    lo, hi = verdict.target.ci
    expect(target.locator(".interval")).to_have_text(f"[{lo:+.3f}, {hi:+.3f}]")
    expect(target.locator(".flips .flip")).to_have_count(40)
    expect(target.locator(".flips .flip.down")).to_have_count(10)
    expect(target.locator(".negative-flips")).to_contain_text(", ".join(f"t-{i:02d}" for i in range(10)))
    canary = evidence.locator(".suite[data-role=canary]")
    expect(canary).to_contain_text("failed")
    expect(canary.locator(".flips .flip.down")).to_have_count(5)
    expect(evidence.locator(".reasons").first).to_contain_text("canary 'canary' regressed")
    expect(page.locator("#change")).to_contain_text("evolve")  # the learner that proposed it
    # What the rejected candidate would have changed: both layers' tensors.
    expect(page.locator("#changes .tensor-diff rect")).to_have_count(2)


@browser_test
def test_diffs_show_layer_norms_and_memory_items(live: Live) -> None:
    from playwright.sync_api import expect

    live.open()
    page = live.page
    accepted = page.locator("#timeline .event.commit[data-ref=adapter]").first
    accepted.locator("button.changes").click()
    tensors = page.locator("#changes .tensor-diff")
    expect(tensors).to_contain_text("1 of 2 layers changed")
    expect(tensors.locator("table")).to_contain_text("layers.1.w")
    expect(tensors.locator("table")).to_contain_text("6.0000")  # 9 entries changed by 2: norm 6
    expect(page.locator("#evidence .suite[data-role=target]")).to_contain_text("passed")
    page.select_option("#ref-filter", "memory")
    page.locator("#timeline .event.commit[data-ref=memory]").first.click()
    diff = page.locator("#changes .memory-diff")
    expect(diff.locator(".before")).to_have_text("Invoices are due in 30 days")
    expect(diff.locator(".after")).to_have_text("Invoices are due in 45 days")


@browser_test
def test_memory_search_and_item_history(live: Live) -> None:
    from playwright.sync_api import expect

    live.open()
    page = live.page
    page.click("[data-tab=memory]")
    expect(page.locator("#memory-items .mem-item")).to_have_count(2)
    expect(page.locator("#memory-total")).to_contain_text("of 2")
    page.fill("#memory-q", "when are invoices due")
    page.click("#memory-search button")
    hits = page.locator("#memory-results .mem-item")
    expect(hits.first).to_have_attribute("data-id", "due")
    expect(hits.first).to_contain_text("Invoices are due in 45 days")
    hits.first.click()
    history = page.locator("#memory-detail .mem-item")
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text("30 days")


@browser_test
def test_curves_and_monitors_are_plotted(live: Live) -> None:
    from playwright.sync_api import expect

    live.open()
    page = live.page
    page.click("[data-tab=plots]")
    gate = page.locator(".plot[data-plot=gate]")
    expect(gate.locator("circle.point")).to_have_count(4)  # champion and candidate for two verdicts
    expect(page.locator(".plot[data-plot=effect] svg.chart line")).not_to_have_count(0)
    expect(page.locator(".plot[data-plot=canaries] circle.point")).to_have_count(2)
    expect(page.locator(".plot[data-plot=feedback] circle.point")).to_have_count(2)
    expect(page.locator(".plot[data-plot=monitors] line.vline")).to_have_count(1)
    curve = page.locator(".plot[data-plot=metric]")
    expect(curve).to_contain_text("ttt_loss")
    expect(curve.locator("circle.point")).to_have_count(4)


@browser_test
def test_a_rollback_through_the_page_asks_first_and_moves_the_live_version(live: Live) -> None:
    from playwright.sync_api import expect

    live.open()
    page = live.page
    good = live.known["good"].version.id
    assert live.head() == live.known["base"]  # the monitor rolled the accepted change back
    card = page.locator("#timeline .event.commit[data-ref=adapter]").filter(has_text=good[:10])
    card.locator("button.rollback-to").click()
    dialog = page.locator("#rollback-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"back to {good[:10]}")
    page.click("#rollback-cancel")
    expect(dialog).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("cancelled")
    assert live.head() == live.known["base"]
    card.locator("button.rollback-to").click()
    page.fill("#rollback-reason", "the regression was a logging bug")
    page.click("#rollback-confirm")
    expect(page.locator("#status")).to_contain_text("Rolled adapter back")
    assert live.head() == good
    last = live.service.ledger.log(live.known["ref"], limit=1)[0]
    assert (last.type, last.to_version, last.message, last.actor) == ("rollback", good, "the regression was a logging bug",
                                                                       f"api:{TENANT}")
    first = page.locator("#timeline .event").first
    expect(first).to_have_attribute("data-type", "rollback")
    expect(first.locator(".badge.live")).to_have_count(1)
    expect(page.locator("#refs-bar")).to_contain_text("adapter " + good[:10])


@browser_test
def test_another_tenant_sees_none_of_it(live: Live) -> None:
    from playwright.sync_api import expect

    live.page.goto(live.server.url + "/dashboard")
    live.page.fill("#api-key", OTHER_KEY)
    live.page.click("#connect")
    expect(live.page.locator("#status")).to_contain_text("0 recent events")
    expect(live.page.locator("#timeline .event")).to_have_count(0)


@browser_test
def test_the_screenshot_of_the_example_history(tmp_path: Path, browser: Any) -> None:
    from lifelong.service.dashboard.browser import render_screenshot

    out = render_screenshot(tmp_path / "dashboard.png", width=1000, height=700, browser=browser)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@browser_test
def test_the_screenshot_of_a_recorded_run_leaves_the_run_untouched(tmp_path: Path, browser: Any) -> None:
    from lifelong.context import HashingEmbedder
    from lifelong.models.chat import ScriptedChat
    from lifelong.service import Service, ServiceConfig
    from lifelong.service.dashboard.browser import render_screenshot

    run = tmp_path / "run"
    service = Service(ServiceConfig(run, chat=ScriptedChat(["ok"]), embedder=HashingEmbedder(64)))
    build_history(service)
    service.close()
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    out = render_screenshot(tmp_path / "run.png", data=run, width=900, height=600, browser=browser)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before

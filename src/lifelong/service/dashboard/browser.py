"""A headless Chromium for the dashboard: finding one, and taking the screenshot in ``docs/dashboard.png``.

Playwright (``pip install lifelong[dashboard]``) drives the browser. Its own browser download needs a
host that may not be reachable, so a system Chromium (Debian's ``chromium`` package) is used when
Playwright has no browser of its own.

>>> find_chromium() is None or find_chromium().endswith(("chrome", "chromium", "chromium-browser", "headless_shell"))
True
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lifelong.core.errors import LifelongError

SYSTEM_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@functools.lru_cache(maxsize=1)
def find_chromium() -> str | None:
    """The executable to launch: Playwright's own Chromium when it is installed, else a system one on
    ``PATH`` (``chromium``, ``chromium-browser``, ``google-chrome``); None when there is neither (or
    Playwright itself is missing). Looked up once per process."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as p:
            own = p.chromium.executable_path
        if own and os.path.exists(own):
            return own
    except Exception:  # no driver, or no browser of its own
        pass
    for name in SYSTEM_BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def why_no_browser() -> str | None:
    """Why the dashboard cannot be driven in a browser here, or None when it can."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install 'lifelong[dashboard]' (make setup does it)"
    if find_chromium() is None:
        return "no Chromium: apt-get install chromium (make setup does it), or playwright install chromium"
    return None


@contextmanager
def chromium_browser(headless: bool = True) -> Iterator[Any]:
    """A launched Playwright ``Browser`` (closed on exit)."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise LifelongError(why_no_browser() or "no Chromium found")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=headless,
                                    args=["--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        try:
            yield browser
        finally:
            browser.close()


def open_dashboard(page: Any, base_url: str, key: str, timeout_ms: float = 15_000) -> None:
    """Go to the dashboard, enter the API key, and wait until the timeline has loaded."""
    page.goto(base_url.rstrip("/") + "/dashboard")
    page.fill("#api-key", key)
    page.click("#connect")
    page.wait_for_selector("#timeline .event", timeout=timeout_ms)


def capture(base_url: str, key: str, out: str | os.PathLike[str], *, width: int = 1440, height: int = 960,
            focus: str = "reject", browser: Any = None) -> Path:
    """Screenshot the dashboard at ``base_url`` for the tenant of ``key``: the timeline, with the newest
    event of type ``focus`` opened (its verdict's evidence and what changed) when there is one. Uses
    ``browser`` (a Playwright ``Browser``) when given, else launches one."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if browser is None:
        with chromium_browser() as launched:
            return capture(base_url, key, out, width=width, height=height, focus=focus, browser=launched)
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    try:
        page = context.new_page()
        open_dashboard(page, base_url, key)
        card = page.locator(f"#timeline .event.{focus}").first
        if card.count():
            card.click()
            page.wait_for_selector("#evidence .suite, #evidence h3, #changes h3", timeout=15_000)
            page.wait_for_timeout(300)
        page.screenshot(path=str(out))
    finally:
        context.close()
    return out


def _copy_run(data: Path, into: Path) -> None:
    """Copy a service folder's databases with their write-ahead logs (SQLite folds a log in when the copy
    is opened). The originals are only read, so no ``-shm`` file appears beside them either."""
    for name in ("ledger.db", "memory.db", "service.db"):
        for suffix in ("", "-wal"):
            src = data / (name + suffix)
            if src.exists():
                shutil.copyfile(src, into / src.name)


def _busiest_tenant(ledger_path: Path) -> str | None:
    db = sqlite3.connect(ledger_path)  # the copy
    try:
        rows = db.execute("SELECT ref FROM events WHERE ref LIKE 'tenant/%'").fetchall()
    finally:
        db.close()
    counts: dict[str, int] = {}
    for (ref,) in rows:
        parts = ref.split("/")
        if len(parts) >= 3:
            counts[parts[1]] = counts.get(parts[1], 0) + 1
    return max(counts, key=lambda t: counts[t]) if counts else None


def render_screenshot(out: str | os.PathLike[str] = "docs/dashboard.png", data: str | os.PathLike[str] | None = None,
                      tenant: str | None = None, *, width: int = 1440, height: int = 960, browser: Any = None) -> Path:
    """Write a screenshot of the dashboard to ``out``.

    With ``data`` (a service folder, e.g. a demo's recorded run), a copy of it is served, so the run
    itself is never written to, showing ``tenant`` (default: the tenant with the most ledger events;
    a run's refs belong to tenant T when they are named ``tenant/T/...``). Without ``data``, the
    example history of :func:`~lifelong.service.dashboard.example.build_example_history` is built first.
    ``browser``: a Playwright ``Browser`` to use (else one is launched).
    """
    from lifelong.service.app import create_app
    from lifelong.service.config import ServiceConfig
    from lifelong.service.core import Service
    from lifelong.service.runner import BackgroundServer, echo_backend
    from lifelong.service.state import new_key

    with tempfile.TemporaryDirectory(prefix="lifelong-dashboard-") as tmp:
        folder = Path(tmp)
        if data is not None:
            data = Path(data)
            if not (data / "ledger.db").exists():
                raise LifelongError(f"{data} holds no ledger.db; give the folder of a service or of a recorded run")
            _copy_run(data, folder)
            tenant = tenant or _busiest_tenant(folder / "ledger.db")
            if tenant is None:
                raise LifelongError(f"the ledger in {data} has no tenant refs (named tenant/NAME/...); "
                                    "record the run under a tenant, or serve it and look at it by hand")
        tenant = tenant or "acme"
        key = new_key()
        service = Service(ServiceConfig(folder, chat=echo_backend(), keys={key: tenant}, rate_limit=None))
        try:
            if data is None:
                from lifelong.service.dashboard.example import build_example_history

                build_example_history(service, tenant)
            with BackgroundServer(create_app(service)) as server:
                return capture(server.url, key, out, width=width, height=height, browser=browser)
        finally:
            service.close()

"""Browser-test fixtures: the real app on a live local server, and Debian's headless Chromium.

The server is the app of ``web.create_app`` (CSRF on, scheduler off, the test's fixed clock)
served by Werkzeug on 127.0.0.1 in a background thread, on the per-test ``db`` database.
Playwright drives /usr/bin/chromium; it never downloads a browser of its own.
There is no timer worker in the server: ``run_out_notice`` moves the shared clock and fires due
timers in-process, as the worker would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from engine import demo_data as D
from engine.timers import TimerWorker
from web import create_app

CHROMIUM = Path("/usr/bin/chromium")
VIEWER_BUNDLE = Path(__file__).resolve().parents[2] / "web" / "static" / "dist" / "viewer.js"
CHROMIUM_ARGS = [
    "--no-sandbox",  # we may run as root in a container
    "--disable-gpu",
    "--disable-background-networking",  # the closed network refuses Chromium's background calls
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def live_server(db) -> Iterator[str]:
    """Base URL of the app serving the test's database; stopped (and its pool closed) afterwards."""
    if not VIEWER_BUNDLE.is_file():
        pytest.fail(f"{VIEWER_BUNDLE} is missing: run `make setup` (or `make assets`) to build the front-end bundle")
    app = create_app({
        "XIANGFLOW_DATABASE_URL": db.url,
        "XIANGFLOW_SCHEDULER": False,
        "XIANGFLOW_CLOCK": db.clock,
    })
    server = make_server("127.0.0.1", 0, app, threaded=True)  # port 0: the OS picks a free port
    thread = threading.Thread(target=server.serve_forever, name="xiangflow-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        app.extensions["xiangflow"].engine.dispose()


@pytest.fixture
def run_out_notice(db) -> Callable[[], int]:
    """Let a public-notice period (村级公示, 县级公告期) run out while the live server runs: move the
    clock the server shares with the test past settings.notice_days and fire the due timers with
    engine.timers.TimerWorker, as the worker process would. Returns how many timers fired."""

    def run_out() -> int:
        db.clock.advance(timedelta(days=D.NOTICE_DAYS, hours=1))
        return TimerWorker(db.factory, db.clock, name="e2e").run_once()

    return run_out


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (Debian's, never a Playwright download)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `make setup` to install Debian's chromium (browser tests need it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) and page pointed at the live server."""
    context = browser.new_context(base_url=live_server, locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()

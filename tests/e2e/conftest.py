"""Browser-test fixtures: the real app on a live local server, and Debian's headless Chromium.

The server is one Werkzeug server per process (127.0.0.1, a background thread) serving the process's shared app
(tests/app_support.py: ``web.create_app``'s app, CSRF on, scheduler off), pointed at each test's ``db`` database
and fixed clock in turn.
Playwright drives /usr/bin/chromium; it never downloads a browser of its own.
There is no timer worker in the server: ``run_out_notice`` moves the shared clock and fires due
timers in-process, as the worker would.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from engine import demo_data as D
from engine.bootstrap import DEMO_PASSWORD
from engine.models import User
from engine.runtime.timers import TimerWorker

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


@pytest.fixture(scope="session")
def _live_server(shared_app) -> Iterator[tuple[object, str]]:
    """One Werkzeug server per process on 127.0.0.1 (port 0: the OS picks a free port), in a background
    thread, serving whatever the process's shared app is pointed at."""
    if not VIEWER_BUNDLE.is_file():
        pytest.fail(f"{VIEWER_BUNDLE} is missing: run `make setup` (or `make assets`) to build the front-end bundle")
    server = make_server("127.0.0.1", 0, _Dispatch(shared_app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="xiangflow-live-server", daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


class _Dispatch:
    """The WSGI app of the live server: the shared app as the current test configured it."""

    def __init__(self, shared_app) -> None:
        self.shared_app = shared_app
        self.app = None

    def __call__(self, environ, start_response):
        if self.app is None:
            raise RuntimeError("the live server got a request outside a browser test")
        return self.app(environ, start_response)


@pytest.fixture
def live_server(db, _live_server) -> Iterator[str]:
    """Base URL of the app serving the test's database (CSRF on, scheduler off, the test's fixed clock, the
    test's attachments folder); after the test the server answers no more requests for it and its pool is closed."""
    server, url = _live_server
    dispatch = server.app
    dispatch.app = dispatch.shared_app.serve({
        "XIANGFLOW_DATABASE_URL": db.url,
        "XIANGFLOW_SCHEDULER": False,
        "XIANGFLOW_CLOCK": db.clock,
        "XIANGFLOW_STORAGE_DIR": str(db.storage_dir),  # per test: a refused upload must leave it empty
    })
    try:
        yield url
    finally:
        dispatch.app.extensions["xiangflow"].engine.dispose()
        dispatch.app = None


@pytest.fixture
def run_out_notice(db) -> Callable[[], int]:
    """Let a public-notice period (村级公示, 县级公告期) run out while the live server runs: move the
    clock the server shares with the test past settings.notice_days and fire the due timers with
    engine.runtime.timers.TimerWorker, as the worker process would. Returns how many timers fired."""

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


@pytest.fixture
def new_page(browser, live_server) -> Iterator[Callable[[], object]]:
    """``new_page()``: another fresh browser context and page, for a second user working at the same time."""
    contexts = []

    def make():
        context = browser.new_context(base_url=live_server, locale="zh-CN", viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def login(db) -> Callable[[object, str], None]:
    """``login(page, username, password=DEMO_PASSWORD)``: log in through the login form and land on 待办."""
    from playwright.sync_api import expect

    def log_in(page, username: str, password: str = DEMO_PASSWORD) -> None:
        with db.uow() as work:
            display_name = work.session.scalar(select(User.display_name).where(User.username == username))
        page.goto("/login")
        page.get_by_label("用户名").fill(username)
        page.get_by_label("密码").fill(password)
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_test_id("current-user")).to_have_text(display_name)
        expect(page.get_by_test_id("tab-todo")).to_have_class(re.compile(r"\bactive\b"))

    return log_in


@pytest.fixture
def user_page(new_page, login) -> Callable[[str], object]:
    """``user_page(username)``: a page of its own browser context, logged in as username."""

    def make(username: str):
        page = new_page()
        login(page, username)
        return page

    return make


# 农村危房改造 (housing_renovation, P1), whose path no one is changing: a case driven through the
# engine to the step a browser test starts from. (bpmn id, user, data) in path order; 村级公示 follows 村级评议.
HOUSING_STEPS = (
    ("application", "demo_village", {
        "head_name": "张德明", "head_id_number": "510921196503120011", "phone": "13800001111",
        "household_size": 4, "members": "张德明(户主)、李兰(配偶)、张伟(子)、张丽(女)",
        "household_category": "低保", "house_condition": "D", "only_house": True, "voluntary": True,
        "application_date": "2026-09-01", "photos": "PX-WG-2026-001"}),
    ("village_review", "demo_village", {
        "review_date": "2026-09-01", "attendees": 21, "votes_for": 20,
        "review_opinion": "唯一住房墙体开裂严重,同意纳入危房改造", "notice_start": "2026-09-04",
        "notice_place": "村委会公示栏", "complaint_phone": "0825-5411234"}),
    ("township_audit", "demo_township", {
        "materials_complete": True, "appraisal_date": "2026-09-07", "appraisal_agency": "蓬溪县住房安全鉴定技术服务组",
        "appraisal_grade": "D", "appraisal_report_no": "JD-2026-0315", "audit_date": "2026-09-15"}),
    ("county_approval", "demo_dept", {
        "plan_year": 2026, "approval_number": "蓬住建〔2026〕41号", "approval_date": "2026-09-18"}),
)


def _approve_housing_step(db, case_id: int, step: str) -> None:
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == step, (row.spec_name, step)
    username, data = next((user, data) for bpmn_id, user, data in HOUSING_STEPS if bpmn_id == step)
    db.complete(case_id, username, data=data)
    if step == "village_review":
        assert db.pass_notice() == 1


def housing_case_at(db, stop: str) -> int:
    """A 危房改造 case of 张德明 started by demo_village, every step before stop approved through the engine
    (the 村级公示 period run out), so it waits at stop; its id."""
    case_id = db.start_case("demo_village", procedure="housing_renovation", subject_id=db.household("张德明"))
    for step, _username, _data in HOUSING_STEPS:
        if step == stop:
            return case_id
        _approve_housing_step(db, case_id, step)
    raise AssertionError(f"{stop!r} is not a step of HOUSING_STEPS")


@pytest.fixture
def housing_case(db) -> Callable[[str], int]:
    """``housing_case(stop)``: ``housing_case_at(db, stop)`` in the test's database; returns the case id."""
    return lambda stop: housing_case_at(db, stop)


@pytest.fixture
def housing_at_township_audit(snapshot_db):
    """The Snapshot of ``housing_case_at(db, "township_audit")`` (past the signed 村级公示: seconds), built once
    per session: with ``@pytest.mark.db_snapshot("housing_at_township_audit")`` the test's db starts as it, the
    case id is ``housing_at_township_audit.value``."""
    return snapshot_db(housing_case_at, "township_audit")


@pytest.fixture
def approve_housing_step(db) -> Callable[[int, str], None]:
    """``approve_housing_step(case_id, step)``: its holder approves the open step through the engine."""
    return lambda case_id, step: _approve_housing_step(db, case_id, step)

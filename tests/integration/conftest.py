"""Web fixtures: the Flask app on the test's migrated database, test clients, logging in.

The app runs with the database's FixedClock and no scheduler. CSRF stays enabled: HTML
form tests read the token from the page's hidden input like a browser would.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from engine.bootstrap import DEMO_PASSWORD
from engine.models import AuditEvent, Case, TaskRow, TimerRow
from tests.integration.cases_support import EXIT_STEPS, exit_case_at
from web import create_app

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def _login(client: FlaskClient, username: str, password: str = DEMO_PASSWORD):
    """Log in through the JSON API (POST /api/v1/session); assert it worked, return the response."""
    response = client.post("/api/v1/session", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["username"] == username
    return response


def _csrf_token(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form on the HTML page at path (as a browser would read it)."""
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    match = CSRF_INPUT.search(response.get_data(as_text=True))
    assert match, f"no csrf_token input on {path}"
    return match.group(1)


def app_config(db, **overrides) -> dict:
    return {
        "XIANGFLOW_DATABASE_URL": db.url,
        "XIANGFLOW_SCHEDULER": False,
        "XIANGFLOW_CLOCK": db.clock,
        "TESTING": True,
        **overrides,
    }


def make_app(db, **overrides) -> Flask:
    return create_app(app_config(db, **overrides))


@pytest.fixture
def app(db, shared_app) -> Flask:
    """The app on the test's database: the process's shared app (tests/app_support.py), configured afresh."""
    application = shared_app.serve(app_config(db))
    yield application
    application.extensions["xiangflow"].engine.dispose()


@pytest.fixture
def app_factory(db) -> Callable[..., Flask]:
    """``app_factory(**config)``: another app on the same database with config overrides."""
    made: list[Flask] = []

    def make(**overrides) -> Flask:
        made.append(make_app(db, **overrides))
        return made[-1]

    yield make
    for application in made:
        application.extensions["xiangflow"].engine.dispose()


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def client_for(app) -> Callable[[str], FlaskClient]:
    """A new test client logged in as username (one per call, so several users can interleave)."""
    clients: dict[str, FlaskClient] = {}

    def make(username: str) -> FlaskClient:
        if username not in clients:
            c = app.test_client()
            _login(c, username)
            clients[username] = c
        return clients[username]

    return make


@pytest.fixture
def login() -> Callable[..., object]:
    """``login(client, username)``: log client in through POST /api/v1/session (asserts 200)."""
    return _login


@pytest.fixture
def csrf_token() -> Callable[[FlaskClient, str], str]:
    """``csrf_token(client, path)``: the token from the hidden input of the form at path."""
    return _csrf_token


@pytest.fixture
def exit_steps():
    return EXIT_STEPS


@pytest.fixture
def exit_case(db) -> Callable[..., int]:
    """``exit_case(depth, household=None)``: a 宝梵镇 exit case waiting at step depth of EXIT_STEPS
    (``cases_support.exit_case_at``); returns the case id."""

    def make(depth: int = 0, household: str | None = None) -> int:
        return exit_case_at(db, depth, household)

    return make


@pytest.fixture
def case_at_depth(snapshot_db, depth):
    """The Snapshot of one exit case waiting at step ``depth`` (the test's parameter) of EXIT_STEPS
    (``exit_case_at``), built once per depth and session: with ``@pytest.mark.db_snapshot("case_at_depth")``
    the test's db starts as it, the case id is ``case_at_depth.value``. Cases past 民主评议 take seconds
    (the signed 村级公示 is rendered)."""
    return snapshot_db(exit_case_at, depth)


@pytest.fixture
def at_township_recheck(snapshot_db):
    """As case_at_depth, at 镇复核 (depth 2; the same snapshot)."""
    return snapshot_db(exit_case_at, 2)


@pytest.fixture
def at_dept_decision(snapshot_db):
    """As case_at_depth, at 部门审定 (depth 3)."""
    return snapshot_db(exit_case_at, 3)


@pytest.fixture
def at_county_announcement(snapshot_db):
    """As case_at_depth, at 县级公告 (depth 4)."""
    return snapshot_db(exit_case_at, 4)


@pytest.fixture
def snapshot(db) -> Callable[[], tuple]:
    """``snapshot()``: everything a refused request must leave alone (audit events, cases, task and
    timer rows), as a comparable value."""

    def take() -> tuple:
        with db.uow() as work:
            s = work.session
            return (
                s.scalar(select(func.count(AuditEvent.id))),
                tuple(s.execute(select(Case.id, Case.status, Case.lock_version, Case.return_count, Case.state)
                                .order_by(Case.id)).all()),
                tuple(s.execute(select(TaskRow.id, TaskRow.status, TaskRow.completed_by_id, TaskRow.action,
                                       TaskRow.opinion, TaskRow.data).order_by(TaskRow.id)).all()),
                tuple(s.execute(select(TimerRow.id, TimerRow.status, TimerRow.due_at).order_by(TimerRow.id)).all()),
            )

    return take


@pytest.fixture
def audit_count(db) -> Callable[[], int]:
    def count() -> int:
        with db.uow() as work:
            return work.session.scalar(select(func.count(AuditEvent.id)))

    return count

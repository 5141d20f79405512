"""P2 → P3: a follow-up visit that finds a new risk starts 防返贫监测 identification for the same
household, linked to the exit case; the household's file (一户一档) lists both."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import demo_data as D
from engine.models import Case, CaseStatus
from engine.runtime.guard import DuplicateCaseError
from tests.integration.notices_support import complete_exit_notice
from web import create_app


def exited_case(db) -> int:
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    for number, (username, data) in enumerate(D.REVIEW_STEPS):
        db.complete(case_id, username, data=data)
        if number in (0, 3):
            db.pass_notice()
    complete_exit_notice(db, case_id)  # the 退出告知书 issued first
    assert db.case(case_id).status == CaseStatus.exited
    db.clock.advance(timedelta(days=200))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    return case_id


@pytest.fixture
def exited(snapshot_db):
    """The database with one exit case exited and its follow-up visit due (three notices rendered and signed on
    the way), built once per session; every test here starts from a copy of it."""
    return snapshot_db(exited_case)


pytestmark = pytest.mark.db_snapshot("exited")


def test_a_new_risk_at_the_follow_up_visit_starts_a_linked_identification_case(db, exited):
    exit_id = exited.value
    db.complete(exit_id, "demo_village", data={**D.FOLLOW_UP_VISIT, "new_risk_found": "是", "visit_notes": "突发重病"})
    with db.uow() as work:
        exit_case = work.session.get(Case, exit_id)
        (child,) = work.session.scalars(select(Case).where(Case.parent_case_id == exit_id)).all()
        assert child.version.procedure.code == "monitoring_identification"
        assert child.subject_id == exit_case.subject_id and child.region_code == exit_case.region_code
        assert exit_case.finished_at is not None and exit_case.status == CaseStatus.exited
        history = [e.action for e in work.inbox.case_history(exit_id)]
        assert "linked_case_started" in history
        assert [e.action for e in work.inbox.case_history(child.id)][:1] == ["linked_from"]
    (first,) = db.open_tasks(child.id)
    assert first.role_code == "village_cadre"


def test_no_new_risk_ends_the_exit_case_without_a_linked_case(db, exited):
    exit_id = exited.value
    db.complete(exit_id, "demo_village", data=D.FOLLOW_UP_VISIT)
    with db.uow() as work:
        assert work.session.scalars(select(Case).where(Case.parent_case_id == exit_id)).all() == []
        assert work.session.get(Case, exit_id).finished_at is not None


@pytest.fixture
def web_app(db):
    app = create_app({"XIANGFLOW_DATABASE_URL": db.url, "XIANGFLOW_SCHEDULER": False, "XIANGFLOW_CLOCK": db.clock,
                      "TESTING": True})
    yield app
    app.extensions["xiangflow"].engine.dispose()


def test_the_household_file_lists_every_case_of_the_household_across_procedures(db, exited, web_app):
    exit_id = exited.value
    db.complete(exit_id, "demo_village", data={**D.FOLLOW_UP_VISIT, "new_risk_found": "是"})
    subject_id = db.case(exit_id).subject_id
    app = web_app
    client = app.test_client()
    client.post("/api/v1/session", json={"username": "demo_township", "password": "demo12345"})
    page = client.get(f"/subjects/{subject_id}").get_data(as_text=True)
    assert page.count('data-testid="subject-case"') == 2
    assert "监测户风险消除退出(四步法)" in page and "已退出" in page and "防返贫监测" in page
    assert "510921196503120011" not in page  # masked for the township
    other = app.test_client()
    other.post("/api/v1/session", json={"username": "demo_other_township", "password": "demo12345"})
    assert other.get(f"/subjects/{subject_id}").status_code == 404


def test_a_linked_start_for_a_household_with_a_running_identification_is_skipped_and_recorded(db, exited):
    """The duplicate guard holds in start_case and for linked starts: the follow-up's new risk does not open
    a second identification case for a household that already has one running; the exit case says so."""
    exit_id = exited.value
    subject_id = db.case(exit_id).subject_id
    running = db.start_case(procedure="monitoring_identification", subject_id=subject_id)
    with db.uow() as work:  # the engine's own start refuses a second one, naming it
        with pytest.raises(DuplicateCaseError, match=f"编号 {running}"):
            work.cases.start_case("monitoring_identification", subject_id, db.actor("demo_village"))
    db.complete(exit_id, "demo_village", data={**D.FOLLOW_UP_VISIT, "new_risk_found": "是", "visit_notes": "突发重病"})
    with db.uow() as work:
        assert work.session.scalars(select(Case).where(Case.parent_case_id == exit_id)).all() == []
        assert work.session.get(Case, exit_id).finished_at is not None
        (skipped,) = [e for e in work.inbox.case_history(exit_id) if e.action == "linked_case_skipped"]
        assert skipped.data_diff == {"procedure": "monitoring_identification", "running_case_id": running}

"""Issuing a notice is a step of the 四步法 BPMN: 出具村级公示 / 出具县级公告 are completed by issuing the
signed notice (never by a plain approve), the 公示 period starts at the issue and the notice prints it
as the timer holds it; a reissue does not advance the case; a failed issue leaves nothing half-done."""

from __future__ import annotations

from datetime import timedelta

import pytest
from notices_support import PHONES, case_at, ensure_office_keys, issue, stored
from sqlalchemy import func, select

from engine import demo_data as D
from engine.core.errors import ValidationError
from engine.models import AuditEvent, Case, IssuedNotice, TaskRow, TaskStatus, TimerRow, TimerStatus
from engine.notices import sign as notices_sign
from engine.notices.formatting import cn_date
from engine.procedures.expressions import CHINA_TZ

NOTICE = timedelta(days=D.NOTICE_DAYS)


def _rows(db, case_id: int, spec_name: str) -> list[TaskRow]:
    with db.uow() as work:
        return list(work.session.scalars(select(TaskRow).where(TaskRow.case_id == case_id,
                                                               TaskRow.spec_name == spec_name)))


def _timers(db, case_id: int) -> list[TimerRow]:
    with db.uow() as work:
        return work.inbox.case_timers(case_id)


def _state(db, case_ids: list[int]) -> tuple:
    """Everything a failed issue must leave untouched."""
    with db.uow() as work:
        s = work.session
        return (
            s.scalar(select(func.count(IssuedNotice.id))),
            s.scalar(select(func.count(AuditEvent.id))),
            tuple(s.execute(select(TaskRow.id, TaskRow.status, TaskRow.action).where(TaskRow.case_id.in_(case_ids))
                            .order_by(TaskRow.id)).all()),
            tuple(s.execute(select(TimerRow.id, TimerRow.status).where(TimerRow.case_id.in_(case_ids))).all()),
            tuple(s.execute(select(Case.id, Case.lock_version, Case.state).where(Case.id.in_(case_ids))
                            .order_by(Case.id)).all()),
        )


def test_one_village_notice_for_two_cases_completes_both_issuance_steps_and_starts_both_periods_at_the_issue(db):
    ensure_office_keys(db)
    cases = [case_at(db, db.household(name), "village_notice") for name in ("张德明", "李秀英")]
    for case_id in cases:
        (row,) = db.open_tasks(case_id)
        assert (row.spec_name, row.title, row.role_code, row.actions) == (
            "issue_village_notice", "出具村级公示", "village_cadre", "issue")
        assert _timers(db, case_id) == []  # no period before the notice is issued
    db.clock.advance(timedelta(days=2, hours=3))  # the village posts the notice two days after 民主评议
    issued_at = db.clock.now()
    serial, pdf = issue(db, "demo_village", "village_public_notice", cases, PHONES)

    for case_id in cases:
        (step,) = _rows(db, case_id, "issue_village_notice")
        assert (step.status, step.action, step.completed_at, step.data) == (
            TaskStatus.completed, "issue", issued_at, {"notice_serial": serial})
        assert step.completed_by_id == db.actor("demo_village").user_id
        (timer,) = _timers(db, case_id)
        assert (timer.spec_name, timer.status, timer.due_at) == ("village_notice_timer", TimerStatus.waiting,
                                                                 issued_at + NOTICE)
        assert db.open_tasks(case_id) == []
        with db.uow() as work:
            (event,) = work.session.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id,
                                                                      AuditEvent.action == "notice_issued"))
            assert (event.task_id, event.step, event.user_id, event.created_at, event.data_diff["serial"]) == (
                step.id, "出具村级公示", step.completed_by_id, issued_at, serial)
    # the printed period is the timer's: from the issue date, the last day before the timer is due
    start = issued_at.astimezone(CHINA_TZ).date()
    end = (issued_at + NOTICE).astimezone(CHINA_TZ).date() - timedelta(days=1)
    assert stored(db, serial).params["period_start"] == start.isoformat()
    assert stored(db, serial).params["period_until"] == (issued_at + NOTICE).isoformat()
    from test_notices_render import _text

    assert f"公示时间：{cn_date(start)}至{cn_date(end)}（共7天）" in _text(pdf)

    # the period ends 7 days after the issue, not 7 days after 民主评议
    db.clock.set(issued_at + NOTICE - timedelta(minutes=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
    db.clock.set(issued_at + NOTICE + timedelta(minutes=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 2
    assert [[r.spec_name for r in db.open_tasks(c)] for c in cases] == [["township_recheck"]] * 2


def test_a_plain_approve_of_an_issuance_step_is_refused_and_the_task_page_links_to_the_issue_page(
        db, client_for, csrf_token):
    ensure_office_keys(db)
    case_id = case_at(db, db.household("张德明"), "village_notice")
    (row,) = db.open_tasks(case_id)
    before = _state(db, [case_id])
    with pytest.raises(ValidationError, match="请在“公示公告”页面出具公示,出具后本步骤自动完成"), db.uow() as work:
        work.cases.complete_task(row.id, db.actor("demo_village"), "approve", "同意", {})
    village = client_for("demo_village")
    refused = village.post(f"/api/v1/tasks/{row.id}/complete", json={"action": "approve", "opinion": "同意", "data": {}})
    assert refused.status_code == 422 and "请在“公示公告”页面出具公示" in refused.get_data(as_text=True)
    assert _state(db, [case_id]) == before

    page = village.get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'data-testid="issue-notice-link"' in page
    link = f"/notices/monitoring_exit/village_public_notice?case={case_id}"
    assert link in page
    issue_page = village.get(link).get_data(as_text=True)
    assert f'value="{case_id}" id="c{case_id}" checked' in issue_page


def test_a_reissue_does_not_advance_the_case_and_keeps_the_period(db):
    ensure_office_keys(db)
    case_id = case_at(db, db.household("张德明"), "village_notice")
    serial, _pdf = issue(db, "demo_village", "village_public_notice", [case_id], PHONES)
    (timer,) = _timers(db, case_id)
    db.clock.advance(timedelta(days=2))
    with db.uow() as work:
        new = work.notices.reissue(
            db.actor("demo_village"), serial, "户主姓名录入有误")
        new_serial = new.serial
    assert stored(db, new_serial).params["period_start"] == stored(db, serial).params["period_start"]
    assert [(t.id, t.status, t.due_at) for t in _timers(db, case_id)] == [(timer.id, TimerStatus.waiting, timer.due_at)]
    assert db.open_tasks(case_id) == []
    assert [r.action for r in _rows(db, case_id, "issue_village_notice")] == ["issue"]
    db.clock.set(timer.due_at + timedelta(minutes=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["township_recheck"]


def test_an_issue_that_fails_while_signing_completes_no_step_and_stores_nothing(db, monkeypatch):
    ensure_office_keys(db)
    cases = [case_at(db, db.household(name), "village_notice") for name in ("张德明", "李秀英")]
    before = _state(db, cases)

    def broken(*_args, **_kwargs):
        raise RuntimeError("签章设备故障")

    monkeypatch.setattr(notices_sign, "sign_pdf", broken)
    # the caller swallows the error and commits: the savepoint alone must undo the completed steps
    with db.uow() as work:
        service = work.notices
        with pytest.raises(RuntimeError, match="签章设备故障"):
            service.issue(db.actor("demo_village"), "monitoring_exit", "village_public_notice", cases, PHONES)
    assert _state(db, cases) == before
    assert all([r.spec_name for r in db.open_tasks(c)] == ["issue_village_notice"] for c in cases)

    monkeypatch.undo()
    serial, _pdf = issue(db, "demo_village", "village_public_notice", cases, PHONES)
    assert all(db.open_tasks(c) == [] for c in cases) and stored(db, serial) is not None


def test_the_county_announcement_is_issued_at_its_step_and_an_objection_during_its_period_still_works(db):
    ensure_office_keys(db)
    case_id = case_at(db, db.household("王建国"), "county_notice")
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.role_code) == ("issue_county_notice", "county_leader")
    issue(db, "demo_county", "county_announcement", [case_id], D.COUNTY_NOTICE_FIELDS)
    (timer,) = [t for t in _timers(db, case_id) if t.status == TimerStatus.waiting]
    assert (timer.spec_name, timer.due_at) == ("county_notice_timer", db.clock.now() + NOTICE)
    db.clock.advance(timedelta(days=3))
    with db.uow() as work:
        work.cases.raise_event(case_id, "county_objection", db.actor("demo_county"), "公告期内收到实名举报")
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["county_announcement"]
    db.complete(case_id, "demo_county", data=D.COUNTY_ANNOUNCEMENT)
    # the step is open again: a new announcement is due although the first one still covers the case
    (again,) = db.open_tasks(case_id)
    assert again.spec_name == "issue_county_notice"
    issue(db, "demo_county", "county_announcement", [case_id], D.COUNTY_NOTICE_FIELDS)
    assert db.pass_notice() == 1
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["exit_notice"]

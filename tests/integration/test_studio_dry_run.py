"""Dry run: a draft runs in memory with sample data under its own FixedClock — the path taken comes
back, no case, task, timer or notification row is written, the real clock does not move."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine.core.errors import ValidationError
from engine.models import AuditEvent, Case, Notification, TaskRow, TimerRow
from engine.studio.service import DraftProblems
from tests.integration.studio_support import (
    EDU_SAMPLE,
    EDU_STEPS,
    admin,
    draft_with,
    edu_files,
    new_code,
    studio,
)

FIVE = [s.id for s in EDU_STEPS]
BRANCHING = (
    '<bpmn:exclusiveGateway id="gw_review" name="评议通过?" default="Flow_gw_yes" />'
    '<bpmn:endEvent id="end_refused" name="不予资助"><bpmn:extensionElements><spiffworkflow:properties>'
    '<spiffworkflow:property name="caseStatus" value="rejected" /></spiffworkflow:properties>'
    '</bpmn:extensionElements></bpmn:endEvent>'
    '<bpmn:intermediateCatchEvent id="timer_notice" name="公示期满"><bpmn:timerEventDefinition>'
    '<bpmn:timeDuration>"P" + str(settings["notice_days"]) + "D"</bpmn:timeDuration>'
    '</bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>'
)
BRANCH_FLOWS = [
    ("Flow_1", "start", "school_survey"), ("Flow_2", "school_survey", "student_application"),
    ("Flow_3", "student_application", "school_review"), ("Flow_4", "school_review", "gw_review"),
    ("Flow_gw_yes", "gw_review", "school_notice"), ("Flow_6", "school_notice", "timer_notice"),
    ("Flow_7", "timer_notice", "county_review"), ("Flow_8", "county_review", "end"),
]
NO_FLOW = ('<bpmn:sequenceFlow id="Flow_gw_no" sourceRef="gw_review" targetRef="end_refused">'
           '<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">review_result == "不同意"</bpmn:conditionExpression>'
           '</bpmn:sequenceFlow>')


def _counts(db):
    with db.uow() as work:
        return tuple(work.session.scalar(select(func.count(m.id))) for m in (Case, TaskRow, TimerRow, Notification))


def _branching(code):
    return edu_files(code, settings={"notice_days": 5}, extra_nodes=BRANCHING, flows=BRANCH_FLOWS,
                     extra_flows=NO_FLOW, lane_extra={"Lane_school": ["gw_review", "end_refused", "timer_notice"]})


def test_dry_run_returns_the_path_and_writes_no_case_rows(db):
    draft_id = draft_with(db, edu_files(new_code()))
    before, now = _counts(db), db.clock.now()
    with db.uow() as work:
        result = studio(work).dry_run(admin(db), draft_id, {"data": EDU_SAMPLE})
    assert result.completed and result.error is None
    assert result.path == ["start", *FIVE, "end"]
    assert [s.element_id for s in result.steps] == FIVE
    assert result.status == "approved"  # caseStatus of 县教育部门审核
    assert "township_officer 通过" in result.steps[0].detail and "student_name=张小明" in result.steps[0].detail
    assert _counts(db) == before and db.clock.now() == now
    with db.uow() as work:
        (audit,) = work.session.scalars(select(AuditEvent).where(AuditEvent.action == "studio_dry_run"))
    assert audit.case_id is None and audit.data_diff["path"] == result.path


def test_dry_run_follows_gateways_and_fires_timers_on_its_own_clock(db):
    draft_id = draft_with(db, _branching(new_code()))
    before, now = _counts(db), db.clock.now()
    with db.uow() as work:
        passed = studio(work).dry_run(admin(db), draft_id, {"data": EDU_SAMPLE})
        refused = studio(work).dry_run(admin(db), draft_id, {"data": EDU_SAMPLE,
                                                             "steps": {"school_review": {"review_result": "不同意"}}})
    assert passed.path == ["start", "school_survey", "student_application", "school_review", "gw_review",
                           "school_notice", "timer_notice", "county_review", "end"]
    timer_step = next(s for s in passed.steps if s.kind == "timer")
    assert timer_step.element_id == "timer_notice"
    assert passed.ended_at - passed.started_at >= timedelta(days=5)
    assert refused.path == ["start", "school_survey", "student_application", "school_review", "gw_review",
                            "end_refused"]
    assert refused.completed and refused.status == "rejected"
    assert _counts(db) == before and db.clock.now() == now


def test_dry_run_reports_sample_data_the_form_refuses_on_its_step(db):
    draft_id = draft_with(db, edu_files(new_code()))
    sample = {k: v for k, v in EDU_SAMPLE.items() if k != "review_members"}
    with db.uow() as work:
        result = studio(work).dry_run(admin(db), draft_id, {"data": sample})
    assert not result.completed
    assert result.error_element == "school_review"
    assert "评议小组人数" in result.error
    assert result.path == ["start", "school_survey", "student_application"]


def test_dry_run_of_an_invalid_draft_or_bad_sample_is_refused(db):
    code = new_code()
    draft_id = draft_with(db, edu_files(code, lane_names={"Lane_county": "县 (nobody)"}))
    with db.uow() as work, pytest.raises(DraftProblems) as refused:
        studio(work).dry_run(admin(db), draft_id, {})
    assert refused.value.details[0].element_id == "Lane_county"
    good = draft_with(db, edu_files(new_code()))
    for sample in ([1, 2], {"data": {"case_id": 5}}, {"data": {"x": 1}, "steps": {"a": 3}}):
        with db.uow() as work, pytest.raises(ValidationError):
            studio(work).dry_run(admin(db), good, sample)


def test_dry_run_through_the_editor_api(db, client_for):
    draft_id = draft_with(db, edu_files(new_code()))
    admin_client = client_for("demo_admin")
    page = admin_client.get(f"/studio/drafts/{draft_id}")
    token = page.get_data(as_text=True).split('name="csrf-token" content="')[1].split('"')[0]
    import json

    response = admin_client.post(f"/studio/api/drafts/{draft_id}/dry-run", headers={"X-CSRFToken": token},
                                 json={"sample": json.dumps({"data": EDU_SAMPLE})})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["path"] == ["start", *FIVE, "end"]
    bad = admin_client.post(f"/studio/api/drafts/{draft_id}/dry-run", headers={"X-CSRFToken": token},
                            json={"sample": "{not json"})
    assert bad.status_code == 422 and "JSON" in bad.get_json()["message"]

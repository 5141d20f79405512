"""Deploying a studio draft makes a new version; running cases stay on theirs; an admin moves the
movable ones (SpiffWorkflow diff/migration), each move recorded in the case's history.

Every step goes through the service's database round trip (state saved and restored per action).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.core.errors import ValidationError
from engine.models import AuditEvent, CaseStatus, ProcedureVersion, TaskRow, TimerRow, TimerStatus
from tests.integration.studio_support import (
    EDU_SAMPLE,
    EDU_STEPS,
    admin,
    deploy,
    draft_with,
    edu_bpmn,
    edu_files,
    new_code,
    studio,
)

WHO = {"school_survey": "demo_township", "student_application": "demo_village", "school_review": "demo_township",
       "school_notice": "demo_township", "county_review": "demo_dept"}


def start(db, code: str) -> int:
    return db.start_case("demo_township", procedure=code, subject_id=db.household(username="demo_village"))


def advance(db, case_id: int, steps: int) -> None:
    for _ in range(steps):
        (row,) = db.open_tasks(case_id)
        db.complete(case_id, WHO[row.spec_name], data=EDU_SAMPLE)


def open_step(db, case_id: int) -> TaskRow:
    (row,) = db.open_tasks(case_id)
    return row


def history(db, case_id: int) -> list[AuditEvent]:
    with db.uow() as work:
        return list(work.session.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id)
                                         .order_by(AuditEvent.id)))


def state_of(db, case_id: int):
    case = db.case(case_id)
    return case.procedure_version_id, case.lock_version, case.state, case.status


def v2_without_notice(code: str, files_v1: dict[str, str]) -> dict[str, str]:
    """v2: 学校公示 removed (学校评议 goes straight to the county), the county step renamed, survey limit shorter."""
    steps = [replace(s, name="县教育局审核") if s.id == "county_review" else
             replace(s, due_in="P7D") if s.id == "school_survey" else s
             for s in EDU_STEPS if s.id != "school_notice"]
    return {**files_v1, f"bpmn/{code}.bpmn": edu_bpmn(code, steps)}


def test_deploy_makes_a_new_version_and_running_cases_stay_on_theirs(db):
    code = new_code()
    draft_id = draft_with(db, edu_files(code))
    v1_id, number, created = deploy(db, draft_id)
    assert (number, created) == (1, True)
    assert deploy(db, draft_id) == (v1_id, 1, False)  # unchanged content: the same version

    running = start(db, code)
    advance(db, running, 2)
    assert open_step(db, running).title == "学校评议"

    with db.uow() as work:
        service = studio(work)
        draft = service.open_version(admin(db), v1_id)
        files = dict(draft.files)
        service.save_draft(admin(db), draft.id, v2_without_notice(code, files), draft.lock_version)
        v2_draft = draft.id
    v2_id, number, created = deploy(db, v2_draft)
    assert (number, created) == (2, True) and v2_id != v1_id

    newer = start(db, code)
    assert db.case(newer).procedure_version_id == v2_id
    assert open_step(db, newer).due_at - open_step(db, newer).created_at == timedelta(days=7)
    assert db.case(running).procedure_version_id == v1_id

    # the old case keeps its own diagram: 学校公示 still comes, and the county step keeps its old name
    advance(db, running, 1)
    assert open_step(db, running).title == "学校公示"
    advance(db, running, 1)
    assert open_step(db, running).title == "县教育部门审核"
    advance(db, running, 1)
    assert db.case(running).status == CaseStatus.approved

    with db.uow() as work:
        summary = next(s for s in studio(work).overview(admin(db)) if s.procedure.code == code)
        assert [(v.version.version, v.status, v.running, v.total) for v in summary.versions] == [
            (2, "deployed", 1, 1), (1, "retired", 0, 1)]
        actions = [e.action for e in work.session.scalars(
            select(AuditEvent).where(AuditEvent.case_id.is_(None), AuditEvent.action.like("studio_%")))]
    assert actions.count("studio_deployed") == 3 and "studio_draft_opened" in actions


def test_migration_moves_only_the_movable_cases_and_records_each_move(db):
    code = new_code()
    v1_id, _n, _c = deploy(db, draft_with(db, edu_files(code)))
    at_survey, at_application, at_notice, at_county = (start(db, code) for _ in range(4))
    advance(db, at_application, 1)
    advance(db, at_notice, 3)
    advance(db, at_county, 4)
    survey_row = open_step(db, at_survey)

    with db.uow() as work:
        v1 = work.session.get(ProcedureVersion, v1_id)
        files = v2_without_notice(code, dict(v1.files))
    v2_id, number, _c = deploy(db, draft_with_existing(db, code, files))
    assert number == 2

    with db.uow() as work:
        preview = {c.case_id: c for c in studio(work).migration_preview(admin(db), v1_id, v2_id)}
    assert {k: c.movable for k, c in preview.items()} == {
        at_survey: True, at_application: True, at_notice: False, at_county: False}
    assert "学校公示[school_notice]" in preview[at_notice].reasons[0] and "正在办理" in preview[at_notice].reasons[0]
    assert "学校公示[school_notice]" in preview[at_county].reasons[0] and "已完成" in preview[at_county].reasons[0]
    assert preview[at_application].current_steps == ["学生申请"]

    stuck_before = {c: state_of(db, c) for c in (at_notice, at_county)}
    with db.uow() as work:
        results = studio(work).migrate_cases(admin(db), v1_id, v2_id,
                                             [at_survey, at_application, at_notice, at_county], "政策调整:取消学校公示环节")
    assert {r.case_id: r.moved for r in results} == {at_survey: True, at_application: True, at_notice: False,
                                                     at_county: False}
    for case_id in (at_notice, at_county):
        assert state_of(db, case_id) == stuck_before[case_id]
        assert not [e for e in history(db, case_id) if e.action == "version_migrated"]
    for case_id in (at_survey, at_application):
        assert db.case(case_id).procedure_version_id == v2_id
        (moved,) = [e for e in history(db, case_id) if e.action == "version_migrated"]
        assert moved.opinion == "政策调整:取消学校公示环节" and moved.step == "版本迁移 v1 → v2"
        assert moved.user_id is not None and moved.data_diff["to_version"] == 2
    with db.uow() as work:
        (summary,) = work.session.scalars(select(AuditEvent).where(AuditEvent.action == "studio_migrated"))
        assert summary.case_id is None
        assert sorted(summary.data_diff["moved"]) == sorted([at_survey, at_application])
        assert set(summary.data_diff["refused"]) == {str(at_notice), str(at_county)}

    # the open task row survived the move (links keep working) and the moved cases run on v2
    assert open_step(db, at_survey).id == survey_row.id
    advance(db, at_application, 2)
    assert open_step(db, at_application).title == "县教育局审核"
    advance(db, at_application, 1)
    assert db.case(at_application).status == CaseStatus.approved
    advance(db, at_survey, 4)  # v2 has four steps
    assert db.case(at_survey).status == CaseStatus.approved
    # and the ones that stayed finish on v1
    advance(db, at_notice, 2)
    advance(db, at_county, 1)
    assert db.case(at_notice).status == db.case(at_county).status == CaseStatus.approved
    with db.uow() as work:
        titles = set(work.session.scalars(select(TaskRow.title).where(TaskRow.case_id == at_notice)))
    assert {"学校公示", "县教育部门审核"} <= titles


def draft_with_existing(db, code: str, files: dict[str, str]) -> int:
    """A draft for an already deployed procedure (opened from its newest version, then saved)."""
    with db.uow() as work:
        service = studio(work)
        draft = service.open_version(admin(db), work.definitions.latest(code).id)
        service.save_draft(admin(db), draft.id, files, draft.lock_version)
        return draft.id


TIMER = ('<bpmn:intermediateCatchEvent id="timer_notice" name="公示期满"><bpmn:timerEventDefinition>'
         '<bpmn:timeDuration>"P" + str(settings["notice_days"]) + "D"</bpmn:timeDuration>'
         '</bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>')


def _timer_files(code: str, county_name: str) -> dict[str, str]:
    order = ["start", *[s.id for s in EDU_STEPS[:4]], "timer_notice", "county_review", "end"]
    steps = [replace(s, name=county_name) if s.id == "county_review" else s for s in EDU_STEPS]
    return edu_files(code, steps=steps, settings={"notice_days": 5}, extra_nodes=TIMER,
                     flows=[(f"Flow_{a}_{b}", a, b) for a, b in zip(order, order[1:], strict=False)],
                     lane_extra={"Lane_school": ["timer_notice"]})


def test_a_waiting_timer_keeps_its_due_time_when_the_case_moves(db):
    code = new_code()
    v1_id, _n, _c = deploy(db, draft_with(db, _timer_files(code, "县教育部门审核")))
    case_id = start(db, code)
    advance(db, case_id, 4)
    with db.uow() as work:
        (timer,) = work.inbox.case_timers(case_id)
        due = timer.due_at
    assert due == db.clock.now() + timedelta(days=5)
    db.clock.advance(timedelta(days=3))  # three of five days have run
    v2_id, _n, _c = deploy(db, draft_with_existing(db, code, _timer_files(code, "县教育局审核")))
    with db.uow() as work:
        assert [c.movable for c in studio(work).migration_preview(admin(db), v1_id, v2_id)] == [True]
        studio(work).migrate_cases(admin(db), v1_id, v2_id, [case_id], "更名")
    with db.uow() as work:
        waiting = list(work.session.scalars(select(TimerRow).where(TimerRow.case_id == case_id,
                                                                   TimerRow.status == TimerStatus.waiting)))
    assert [t.due_at for t in waiting] == [due]
    db.clock.advance(timedelta(days=2, minutes=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    assert open_step(db, case_id).title == "县教育局审核"


def test_migration_needs_a_reason_same_procedure_and_an_admin(db):
    code = new_code()
    v1_id, _n, _c = deploy(db, draft_with(db, edu_files(code)))
    case_id = start(db, code)
    v2_id, _n, _c = deploy(db, draft_with_existing(db, code, edu_files(code, name="教育资助(修订)")))
    with db.uow() as work, pytest.raises(ValidationError):
        studio(work).migrate_cases(admin(db), v1_id, v2_id, [case_id], "  ")
    other = next(v.id for v in db_versions(db) if v.id not in (v1_id, v2_id))
    with db.uow() as work, pytest.raises(ValidationError):
        studio(work).migration_preview(admin(db), v1_id, other)
    from engine.core.errors import ForbiddenError

    with db.uow() as work, pytest.raises(ForbiddenError):
        studio(work).migration_preview(db.actor("demo_county"), v1_id, v2_id)
    assert db.case(case_id).procedure_version_id == v1_id


def db_versions(db) -> list[ProcedureVersion]:
    with db.uow() as work:
        return list(work.session.scalars(select(ProcedureVersion)))


def test_a_renamed_procedure_json_keeps_its_code(db):
    code = new_code()
    draft_id = draft_with(db, edu_files(code))
    files = edu_files(code)
    manifest = json.loads(files["procedure.json"])
    manifest["code"] = "someone_else"
    files["procedure.json"] = json.dumps(manifest)
    from engine.core.errors import DefinitionError

    with db.uow() as work, pytest.raises(DefinitionError):
        studio(work).save_draft(admin(db), draft_id, files, None)

"""A procedure built in the simple designer runs on the engine: the 3-step 低保 procedure from the 三级审批
template with 家庭人口 and 申请理由 added, a 5 工作日 limit on the township step and a condition (家庭人口 ≥ 5 →
an extra county department step), deployed and run through both branches with the fixed clock, with an
explicit save/restore between every step; a 抄送 block copies the case to the role's holders and a 定时 block
waits for its timer; a 公示 block issues its notice and an objection returns the case."""

from __future__ import annotations

import copy
from datetime import timedelta

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine.core import workcalendar
from engine.models import AuditEvent, Case, CaseCc, CaseStatus, TaskRow, User
from engine.procedures.expressions import CHINA_TZ
from tests.integration.roundtrip_support import open_task_names, round_trip_case
from tests.integration.studio_support import admin, deploy, new_code

WHO = {"b_apply": "demo_village", "b_village": "demo_village", "b_township": "demo_township",
       "county_extra": "demo_dept", "b_county": "demo_dept", "b_leader": "demo_county"}
DATA = {"applicant_name": "王大山", "apply_reason": "因病致贫,申请低保", "village_opinion": "同意上报",
        "township_verified": True, "county_opinion": "同意", "family_size": 3}


def dibao_model(db, code: str, template: str = "three_level") -> tuple[int, dict]:
    """The 低保 draft as the county admin builds it in the simple designer; (draft id, model)."""
    with db.uow() as work:
        draft = work.studio.create_from_template(admin(db), template, code, "低保申请审批")
        draft_id = draft.id
        _draft, model, reason = work.studio.simple_model(admin(db), draft_id)
        assert reason is None and model is not None
        data = model.to_json()
    start = data["blocks"][0]
    start["form"]["components"] += [
        {"type": "number", "key": "family_size", "label": "家庭人口", "validate": {"required": True, "min": 1}},
        {"type": "textarea", "key": "apply_reason", "label": "申请理由", "validate": {"required": True}}]
    township = next(b for b in data["blocks"] if b["name"] == "乡镇审核")
    township["time_limit"] = {"amount": 5, "unit": "working"}
    at = data["blocks"].index(township) + 1
    data["blocks"].insert(at, {"kind": "condition", "name": "家庭人口是否较多", "branches": [
        {"name": "家庭人口≥5", "join": "and", "conditions": [{"field": "family_size", "op": ">=", "value": 5}],
         "blocks": [{"id": "county_extra", "kind": "approval", "name": "县民政局复核", "role": "county_department",
                     "actions": ["approve", "reject", "return"]}]}],
        "otherwise": {"name": "其他情况", "blocks": []}})
    return draft_id, data


def save(db, draft_id: int, data: dict) -> dict:
    with db.uow() as work:
        _draft, model, problems = work.studio.save_simple(admin(db), draft_id, data, None)
        assert problems == [], problems
        return model.to_json()


def start(db, code: str) -> int:
    return db.start_case("demo_village", procedure=code)


def run(db, case_id: int, data: dict) -> list[str]:
    """Approve every open step with the form data, save/restore between steps; the steps' names in order."""
    names = []

    def consistent(session, restored, snap):
        ready = sorted(t.task_spec.name for t in restored.get_tasks(state=TaskState.READY) if t.task_spec.manual)
        assert ready == open_task_names(session, case_id)

    while True:
        round_trip_case(db, case_id, consistent)
        rows = db.open_tasks(case_id)
        if not rows:
            return names
        (row,) = rows
        names.append(row.title)
        db.complete(case_id, WHO[row.spec_name], data=data)


def test_the_dibao_procedure_built_in_simple_mode_runs_both_branches(db):
    code = new_code("dibao")
    draft_id, data = dibao_model(db, code)
    saved = save(db, draft_id, data)
    assert saved["blocks"][3]["kind"] == "condition"
    _version, number, created = deploy(db, draft_id)
    assert (number, created) == (1, True)

    big = start(db, code)
    assert run(db, big, {**DATA, "family_size": 6}) == ["村级申请", "村级评议", "乡镇审核", "县民政局复核", "县级审批"]
    assert db.case(big).status == CaseStatus.approved

    small = start(db, code)
    assert run(db, small, DATA) == ["村级申请", "村级评议", "乡镇审核", "县级审批"]
    assert db.case(small).status == CaseStatus.approved


def test_the_township_step_is_due_in_five_working_days(db):
    code = new_code("dibao")
    draft_id, data = dibao_model(db, code)
    save(db, draft_id, data)
    deploy(db, draft_id)
    case_id = start(db, code)
    db.complete(case_id, "demo_village", data=DATA)
    db.complete(case_id, "demo_village", data=DATA)
    (row,) = db.open_tasks(case_id)
    assert row.title == "乡镇审核" and row.day_kind == "working"
    today = db.clock.now().astimezone(CHINA_TZ).date()
    due = row.due_at.astimezone(CHINA_TZ).date()
    assert due == workcalendar.current().add_workdays(today, 5)
    assert due > today + timedelta(days=5)  # a weekend lies inside: working days, not natural ones


def test_a_rejection_at_the_extra_step_ends_the_case_as_not_approved(db):
    code = new_code("dibao")
    draft_id, data = dibao_model(db, code)
    save(db, draft_id, data)
    deploy(db, draft_id)
    case_id = start(db, code)
    for _ in range(3):
        db.complete(case_id, WHO[db.open_tasks(case_id)[0].spec_name], data={**DATA, "family_size": 5})
    (row,) = db.open_tasks(case_id)
    assert row.title == "县民政局复核"
    db.complete(case_id, "demo_dept", action="reject", opinion="收入超标")
    assert db.case(case_id).status == CaseStatus.rejected


def test_cc_and_wait_blocks_copy_the_case_and_hold_it_until_the_timer(db):
    code = new_code("dibao")
    draft_id, data = dibao_model(db, code)
    county = next(i for i, b in enumerate(data["blocks"]) if b["name"] == "县级审批")
    data["blocks"][county:county] = [
        {"kind": "cc", "name": "抄送县领导小组", "role": "county_leader"},
        {"kind": "wait", "name": "等待复核材料", "duration": {"amount": 2, "unit": "natural"}}]
    save(db, draft_id, data)
    deploy(db, draft_id)
    case_id = start(db, code)
    for _ in range(3):
        db.complete(case_id, WHO[db.open_tasks(case_id)[0].spec_name], data=DATA)
    assert db.open_tasks(case_id) == []  # waiting for the timer
    with db.uow() as work:
        copied = set(work.session.scalars(select(User.username).join(CaseCc, CaseCc.user_id == User.id)
                                          .where(CaseCc.case_id == case_id)))
        assert {"demo_county", "demo_leader1", "demo_leader2", "demo_leader3"} <= copied
        assert "cc_delivered" in set(work.session.scalars(select(AuditEvent.action)
                                                          .where(AuditEvent.case_id == case_id)))
    db.clock.advance(timedelta(days=2, hours=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    (row,) = db.open_tasks(case_id)
    assert row.title == "县级审批"


def test_a_notice_block_issues_its_notice_and_an_objection_returns_the_case(db):
    code = new_code("dibao")
    with db.uow() as work:
        draft_id = work.studio.create_from_template(admin(db), "four_level_notice", code, "低保申请(含公示)").id
    deploy(db, draft_id)
    case_id = start(db, code)
    data = {**DATA, "dept_opinion": "同意"}
    db.complete(case_id, "demo_village", data=data)
    db.complete(case_id, "demo_village", data=data)
    (row,) = db.open_tasks(case_id)
    assert row.title == "村级公示" and row.actions == "issue"
    db.issue_notices(case_id)
    assert db.open_tasks(case_id) == []  # the period runs
    with db.uow() as work:
        (event,) = work.cases.waiting_events(db.case(case_id), db.actor("demo_village"))
        assert event["name"] == "公示异议" and event["can_raise"]
        work.cases.raise_event(case_id, event["event_id"], db.actor("demo_village"), "群众反映收入不实")
    (row,) = db.open_tasks(case_id)
    assert row.title == "村级评议"  # the objection returned the case to the step the block names
    db.complete(case_id, "demo_village", data=data)
    assert db.pass_notice(7, case_id) == 1
    (row,) = db.open_tasks(case_id)
    assert row.title == "乡镇审核"


def test_a_countersign_block_needs_half_of_the_leading_group(db):
    code = new_code("dibao")
    with db.uow() as work:
        draft_id = work.studio.create_from_template(admin(db), "four_level_notice", code, "低保申请(含公示)").id
        _d, model, _r = work.studio.simple_model(admin(db), draft_id)
        data = copy.deepcopy(model.to_json())
    data["blocks"] = [b for b in data["blocks"] if b["kind"] != "notice"]
    save(db, draft_id, data)
    deploy(db, draft_id)
    case_id = start(db, code)
    for _ in range(4):
        db.complete(case_id, WHO.get(db.open_tasks(case_id)[0].spec_name, "demo_dept"),
                    data={**DATA, "dept_opinion": "同意"})
    rows = db.open_tasks(case_id)
    assert {r.title for r in rows} == {"县领导小组审定"} and len(rows) >= 3
    with db.uow() as work:
        holders = {r.id: work.session.get(User, r.assignee_id).username for r in rows}
    for row_id, username in list(holders.items())[: (len(rows) + 1) // 2]:
        with db.uow() as work:
            work.cases.complete_task(row_id, db.actor(username), "approve", "同意", {})
    assert db.case(case_id).status == CaseStatus.approved
    with db.uow() as work:
        assert work.session.scalar(select(TaskRow.id).where(TaskRow.case_id == case_id,
                                                            TaskRow.status == "open")) is None


def test_a_subprocess_block_starts_a_linked_case_of_another_procedure(db):
    code = new_code("dibao")
    draft_id, data = dibao_model(db, code)
    county = next(i for i, b in enumerate(data["blocks"]) if b["name"] == "县级审批")
    data["blocks"].insert(county, {"kind": "subprocess", "name": "发起危房改造", "procedure": "housing_renovation",
                                   "pass_data": ["family_size"]})
    save(db, draft_id, data)
    deploy(db, draft_id)
    case_id = start(db, code)
    for _ in range(3):
        db.complete(case_id, WHO[db.open_tasks(case_id)[0].spec_name], data=DATA)
    with db.uow() as work:
        (child,) = work.session.scalars(select(Case).where(Case.parent_case_id == case_id)).all()
        assert child.version.procedure.code == "housing_renovation"
        assert "linked_case_started" in [e.action for e in work.inbox.case_history(case_id)]
    (row,) = db.open_tasks(case_id)
    assert row.title == "县级审批"  # the parent goes on

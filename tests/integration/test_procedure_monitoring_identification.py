"""P3 防返贫监测 identification (monitoring_identification) end to end at engine level.

风险发现登记 → 入户核查 → 村级评议及公示 → 乡镇审核 → 县级认定 within 15 days of the risk being
found (seed 002 二(一)2), then within 10 days 系统录入 + 帮扶责任人 + 帮扶计划, measures by cause
(seed 003 三(一)2, a DMN table), monthly monitoring visits until the household is proposed for
exit, which starts a linked 四步法 exit case. Disaster green channel: 先行救助 runs in parallel
with the identification (seed 002 二(一)5). No Flask: UnitOfWork services and a moved clock.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine.core.errors import NotFoundError, ValidationError
from engine.models import Case, CaseStatus, TaskRow, TaskStatus, TimerRow, TimerStatus
from engine.procedures.serialization import load_state
from tests.integration.roundtrip_support import open_task_names, round_trip_case

PROCEDURE = "monitoring_identification"
VILLAGE = "510921107001"  # a village of 宝梵镇, where demo_village holds village_cadre
TOWNSHIP = "510921107000"  # 宝梵镇
COUNTY = "510921000000"  # 蓬溪县
ASSISTANT = "p3_assistance_cadre"  # created per test: 帮扶责任人 of the demo village

# 2026-09-01 + 15 days, end of day China time (date_add), in UTC
DEADLINE_15 = datetime(2026, 9, 16, 15, 59, tzinfo=timezone.utc)

RISK_REPORT = {
    "discovery_channel": "干部排查",
    "risk_found_date": "2026-09-01",
    "monitoring_kind": "边缘易致贫户",
    "risk_cause": "因病",
    "other_causes": ["支出骤增"],
    "risk_description": "户主突发脑梗住院,医疗支出大幅增加",
    "household_size": 4,
    "income_per_capita": 5200,
    "rigid_expenses": 38000,
    "disaster": "否",
    "contact_phone": "13800001234",
}
HOUSEHOLD_CHECK = {
    "check_date": "2026-09-01",
    "township_cadre_name": "王志强",
    "task_force_members": "李书记、驻村第一书记张明",
    "household_size": 4,
    "income_per_capita": 5100,
    "labour_capacity": "有劳动力",
    "basic_needs_problems": ["基本医疗"],
    "check_findings": "住院自付费用约3.8万元,收入下降,情况属实",
    "risk_confirmed": True,
    "household_signed": True,
}
VILLAGE_REVIEW = {
    "review_date": "2026-09-01",
    "attendees": 21,
    "review_agreed": True,
    "notice_start": "2026-09-03",
    "notice_place": "村委会公示栏",
    "complaint_phone": "0825-5412345",
}
TOWNSHIP_AUDIT = {"audit_date": "2026-09-11", "materials_complete": True, "notice_without_objection": True}
COUNTY_IDENTIFICATION = {"identification_document": "蓬乡振监〔2026〕9号", "department_name": "蓬溪县乡村振兴局",
                         "sector_data_compared": True}
AID_FIRST = {"aid_date": "2026-09-01", "aid_types": ["临时救助", "救灾救助"], "aid_amount": 3000,
             "aid_notes": "房屋受损,先行发放临时救助金"}
SYSTEM_ENTRY = {"system_entry_date": "2026-09-13", "system_entered": True,
                "measures_agreed": "落实医疗救助和大病保险,户主妻子安排村保洁公益岗位",
                "assistance_cadre_name": "赵丽", "assistance_cadre_post": "宝梵镇农业服务中心干部",
                "assistance_cadre_phone": "13900002345"}
ASSISTANCE_PLAN = {"plan_date": "2026-09-14", "plan_items": "9月办理医疗救助;10月落实公益岗位;每月入户监测",
                   "income_target": 7000, "plan_coordinated": True}
IMPLEMENT_MEASURES = {"implemented_date": "2026-09-15", "implemented_measures": ["健康帮扶", "公益岗位"],
                      "assistance_funds": 12000, "implementation_notes": "医疗救助1.2万元已到账,公益岗位已上岗",
                      "handbook_updated": True}
MONTHLY_VISIT = {"visit_date": "2026-10-15", "visit_measures_status": "已落实到位", "visit_policies_enjoyed": True,
                 "visit_basic_needs_ok": True, "visit_household_satisfied": "认可", "visit_monthly_income": 2600,
                 "visit_notes": "户主康复出院,公益岗位收入稳定", "visit_handbook_updated": True}
RISK_ASSESSMENT = {"proposal_date": "2026-11-20", "proposal_source": "帮扶责任人研判", "current_income_per_capita": 9800,
                   "basic_needs_secured": True, "proposal_reason": "收入稳定超过监测线,医疗保障到位"}
OVERDUE = {"overdue_acknowledged": True, "supervision_note": "已电话督促,要求两日内办结"}

# The main path: bpmn id → (title, user, role, scope, data)
MAIN = {
    "risk_report": ("风险发现登记", "demo_village", "village_cadre", VILLAGE, RISK_REPORT),
    "household_check": ("入户核查", "demo_village", "village_cadre", VILLAGE, HOUSEHOLD_CHECK),
    "village_review": ("村级评议及公示", "demo_village", "village_cadre", VILLAGE, VILLAGE_REVIEW),
    "township_audit": ("乡镇审核", "demo_township", "township_officer", TOWNSHIP, TOWNSHIP_AUDIT),
    "county_identification": ("县级认定", "demo_dept", "county_department", COUNTY, COUNTY_IDENTIFICATION),
    "system_entry": ("系统录入及明确帮扶责任人", "demo_village", "village_cadre", VILLAGE, SYSTEM_ENTRY),
    "assistance_plan": ("制定帮扶计划", ASSISTANT, "assistance_cadre", VILLAGE, ASSISTANCE_PLAN),
    "implement_measures": ("落实帮扶措施", ASSISTANT, "assistance_cadre", VILLAGE, IMPLEMENT_MEASURES),
    "risk_assessment": ("跟踪监测及风险消除研判", ASSISTANT, "assistance_cadre", VILLAGE, RISK_ASSESSMENT),
}
IDENTIFICATION = ["household_check", "village_review", "township_audit", "county_identification"]


@pytest.fixture(autouse=True)
def assistance_cadre(db):
    """A 帮扶责任人 (assistance_cadre) of the demo village: no demo user holds that role."""
    with db.uow() as work:
        work.directory.create_user(ASSISTANT, "帮扶责任人(测试)", "p3-test-password",
                                   [("assistance_cadre", VILLAGE)])


# ----------------------------------------------------------------------------- helpers
def _open(db, case_id: int) -> list[str]:
    return [r.spec_name for r in db.open_tasks(case_id)]


def _row(db, case_id: int, spec: str) -> TaskRow:
    (row,) = [r for r in db.open_tasks(case_id) if r.spec_name == spec]
    return row


def _act(db, case_id: int, spec: str, username: str | None = None, data: dict | None = None,
         action: str = "approve", opinion: str = "情况属实,同意。", **kwargs) -> None:
    """Complete the open task spec of the case (the case may have several open tasks)."""
    row = _row(db, case_id, spec)
    username = username or MAIN[spec][1]
    data = MAIN[spec][4] if data is None and spec in MAIN else (data or {})
    with db.uow() as work:
        work.cases.complete_task(row.id, db.actor(username), action, opinion, data, **kwargs)


def _fire(db) -> int:
    with db.uow() as work:
        return work.cases.fire_due_timers()


def _timers(db, case_id: int) -> list[TimerRow]:
    with db.uow() as work:
        return work.inbox.case_timers(case_id)


def _waiting_timer(db, case_id: int, spec: str) -> TimerRow:
    (timer,) = [t for t in _timers(db, case_id) if t.spec_name == spec and t.status == TimerStatus.waiting]
    return timer


def _end_notice(db, case_id: int) -> None:
    """Let the village public notice (公示期满) run out and fire it."""
    due = _waiting_timer(db, case_id, "notice_expired").due_at
    db.clock.set(due + timedelta(minutes=1))
    assert _fire(db) >= 1


def _start(db, household: str | None = None, **report) -> int:
    case_id = db.start_case("demo_village", procedure=PROCEDURE,
                            subject_id=db.household(household) if household else None)
    assert _open(db, case_id) == ["risk_report"]
    _act(db, case_id, "risk_report", data={**RISK_REPORT, **report})
    return case_id


def _drive(db, case_id: int, until: str, data: dict | None = None) -> None:
    """Approve main-path steps (an hour apart, letting the notice run out) until `until` is open."""
    data = data or {}
    for _ in range(20):
        open_specs = _open(db, case_id)
        if until in open_specs:
            return
        step = next((s for s in MAIN if s in open_specs), None)
        if step is None:
            _end_notice(db, case_id)
            continue
        db.clock.advance(timedelta(hours=1))
        _act(db, case_id, step, data=data.get(step))
    raise AssertionError(f"{until} never opened; open: {_open(db, case_id)}")


def _workflow(db, case_id: int):
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        return load_state(case.state, case.serializer_version, work.definitions.specs(case.version),
                          case.version.spec_json)


def _ready_data(db, case_id: int, spec: str) -> dict:
    (task,) = [t for t in _workflow(db, case_id).get_tasks(state=TaskState.READY) if t.task_spec.name == spec]
    return task.data


def _children(db, case_id: int) -> list[Case]:
    with db.uow() as work:
        return list(work.session.scalars(select(Case).where(Case.parent_case_id == case_id)))


# ----------------------------------------------------------------------------- 1. straight through
def test_household_is_identified_within_the_limits_and_the_exit_proposal_starts_a_linked_exit_case(db):
    case_id = _start(db, household="王建国")
    assert _open(db, case_id) == ["household_check"]  # no disaster: no 先行救助
    (deadline,) = [t for t in _timers(db, case_id) if t.status == TimerStatus.waiting]
    assert (deadline.spec_name, deadline.title, deadline.due_at) == (
        "deadline_identification", "识别时限届满(15日)", DEADLINE_15)

    for spec in IDENTIFICATION:
        title, user, role, scope, data = MAIN[spec]
        row = _row(db, case_id, spec)
        assert (row.title, row.role_code, row.scope_code, row.region_code) == (title, role, scope, VILLAGE)
        assert row.form_key == f"{PROCEDURE}/{spec}"
        assert row.actions == ("approve,reject" if spec == "household_check" else "approve,reject,return")
        assert db.case(case_id).status == CaseStatus.running
        db.clock.advance(timedelta(days=1))
        _act(db, case_id, spec)
        if spec == "village_review":  # 公示: no task while the notice runs
            assert _open(db, case_id) == []
            notice = _waiting_timer(db, case_id, "notice_expired")
            assert notice.due_at == db.clock.now() + timedelta(days=7)  # settings.notice_days
            _end_notice(db, case_id)

    case = db.case(case_id)
    assert case.status == CaseStatus.identified
    assert db.clock.now() < DEADLINE_15
    identified_on = db.clock.now().astimezone(timezone(timedelta(hours=8))).date().isoformat()
    data = _ready_data(db, case_id, "system_entry")
    assert data["identified_date"] == identified_on
    assert (data["measure_type"], data["below_income_line"]) == ("health_combined", True)
    assert [t.status for t in _timers(db, case_id) if t.spec_name == "deadline_identification"] == [
        TimerStatus.cancelled]  # identified in time: no escalation
    (limit10,) = [t for t in _timers(db, case_id) if t.status == TimerStatus.waiting]
    assert (limit10.spec_name, limit10.title) == ("deadline_assistance_setup", "建档帮扶时限届满(10日)")
    assert limit10.due_at == datetime.fromisoformat(f"{identified_on}T23:59+08:00") + timedelta(days=10)

    identified_at = db.clock.now()
    for spec in ("system_entry", "assistance_plan", "implement_measures"):
        title, user, role, scope, _data = MAIN[spec]
        row = _row(db, case_id, spec)
        assert (row.title, row.role_code, row.scope_code) == (title, role, scope)
        if spec == "system_entry":  # opens at identification: the 10-day limit is its due time
            assert row.due_at == row.created_at + timedelta(days=10)
        if role == "assistance_cadre":  # the village cadre does not hold the 帮扶责任人 role
            with db.uow() as work, pytest.raises(NotFoundError):
                work.cases.complete_task(row.id, db.actor("demo_village"), "approve", "", _data)
        db.clock.advance(timedelta(days=1))
        _act(db, case_id, spec)
    assert db.clock.now() - identified_at < timedelta(days=10)

    # 跟踪监测: the 帮扶责任人 visits every month until the exit is proposed
    assert _open(db, case_id) == ["risk_assessment"]
    monthly = _waiting_timer(db, case_id, "monthly_monitoring")
    assert monthly.due_at == db.clock.now() + timedelta(days=30)  # R/P1M from 15 September
    for month in range(2):
        due = _waiting_timer(db, case_id, "monthly_monitoring").due_at
        db.clock.set(due - timedelta(seconds=1))
        assert _fire(db) == 0
        db.clock.set(due + timedelta(minutes=1))
        assert _fire(db) == 1
        assert _open(db, case_id) == ["risk_assessment", "monthly_visit"]
        visit = _row(db, case_id, "monthly_visit")
        assert (visit.title, visit.role_code, visit.scope_code) == ("每月入户监测", "assistance_cadre", VILLAGE)
        assert visit.due_at == visit.created_at + timedelta(days=15)
        db.clock.advance(timedelta(days=2))
        _act(db, case_id, "monthly_visit", ASSISTANT, {**MONTHLY_VISIT, "visit_notes": f"第{month + 1}次月度监测"})
        assert _open(db, case_id) == ["risk_assessment"]
        assert _waiting_timer(db, case_id, "monthly_monitoring").due_at == due + timedelta(days=30)
    assert db.case(case_id).status == CaseStatus.identified

    db.clock.advance(timedelta(days=3))
    _act(db, case_id, "risk_assessment")
    case = db.case(case_id)
    assert case.status == CaseStatus.completed
    assert case.finished_at == db.clock.now()
    assert db.open_tasks(case_id) == []
    assert all(t.status != TimerStatus.waiting for t in _timers(db, case_id))

    (child,) = _children(db, case_id)
    assert child.parent_case_id == case_id
    assert child.subject_id == case.subject_id
    assert child.version.procedure.code == "monitoring_exit"
    assert child.status == CaseStatus.running
    (first,) = db.open_tasks(child.id)
    assert (first.spec_name, first.title, first.role_code, first.scope_code) == (
        "household_check", "入户核查", "village_cadre", VILLAGE)
    passed = _ready_data(db, child.id, "household_check")
    assert passed["risk_cause"] == "因病"
    assert passed["monitoring_kind"] == "边缘易致贫户"
    assert passed["identified_date"] == identified_on
    assert passed["measure_type"] == "health_combined"
    assert passed["assistance_cadre_name"] == "赵丽"
    assert passed["linked_from_case"] == case_id
    assert "household_size" not in passed  # only the passData keys travel

    with db.uow() as work:
        history = work.inbox.case_history(case_id)
        rows = work.inbox.case_tasks(case_id)
    assert [e.action for e in history].count("timer_fired") == 3  # notice + two monthly visits
    assert "linked_case_started" in [e.action for e in history]
    done = sorted((r for r in rows if r.status == TaskStatus.completed), key=lambda r: r.completed_at)
    assert [r.spec_name for r in done] == [
        "risk_report", *IDENTIFICATION, "system_entry", "assistance_plan", "implement_measures",
        "monthly_visit", "monthly_visit", "risk_assessment"]


# ----------------------------------------------------------------------------- 2. save/restore
def _round_trip(db, case_id: int) -> dict[str, object]:
    """Explicit save/restore between steps (roundtrip_support); the restored manual READY tasks are the
    open task rows, and every waiting timer row is a WAITING event in the restored workflow."""
    def check(session, restored, after):
        user_ready = sorted(t.task_spec.name for t in restored.get_tasks(state=TaskState.READY, manual=True))
        assert user_ready == open_task_names(session, case_id)
        waiting_rows = sorted(t.spec_name for t in session.scalars(
            select(TimerRow).where(TimerRow.case_id == case_id, TimerRow.status == TimerStatus.waiting)))
        assert set(waiting_rows) <= {n for n, _v in after["waiting"]}

    after = round_trip_case(db, case_id, check)
    return {**after, "names": [n for n, _d in after["ready"]], "data": {n: json.loads(d) for n, d in after["ready"]}}


def test_straight_through_survives_an_explicit_spiff_save_and_restore_between_every_step(db):
    case_id = db.start_case("demo_village", procedure=PROCEDURE)
    snap = _round_trip(db, case_id)
    assert snap["names"] == ["risk_report"]
    assert snap["data"]["risk_report"]["settings"]["monitoring_income_line"] == 6500

    expected = {
        "risk_report": ["household_check"],
        "household_check": ["village_review"],
        "village_review": [],
        "township_audit": ["county_identification"],
        "county_identification": ["system_entry"],
        "system_entry": ["assistance_plan"],
        "assistance_plan": ["implement_measures"],
        "implement_measures": ["risk_assessment"],
    }
    for spec, nxt in expected.items():
        db.clock.advance(timedelta(hours=20))
        _act(db, case_id, spec)
        snap = _round_trip(db, case_id)
        assert snap["names"] == nxt
        if nxt:
            carried = snap["data"][nxt[0]]
            assert carried["risk_found_date"] == "2026-09-01"
            assert carried["opinions"]["risk_report"] == "情况属实,同意。"
        if spec == "village_review":
            assert [n for n, _v in snap["waiting"]] == ["deadline_identification", "notice_expired", "notice_objection"]
            _end_notice(db, case_id)
            snap = _round_trip(db, case_id)
            assert snap["names"] == ["township_audit"]
        if spec == "county_identification":
            assert db.case(case_id).status == CaseStatus.identified
            assert snap["data"]["system_entry"]["measures"].startswith("落实健康帮扶政策")
    assert "monthly_monitoring" in [n for n, _v in snap["waiting"]]

    due = _waiting_timer(db, case_id, "monthly_monitoring").due_at
    db.clock.set(due + timedelta(minutes=1))
    assert _fire(db) == 1
    snap = _round_trip(db, case_id)
    assert snap["names"] == ["monthly_visit", "risk_assessment"]
    _act(db, case_id, "monthly_visit", ASSISTANT, MONTHLY_VISIT)
    snap = _round_trip(db, case_id)
    assert snap["names"] == ["risk_assessment"]
    _act(db, case_id, "risk_assessment")
    snap = _round_trip(db, case_id)
    assert snap == {"ready": [], "waiting": [], "names": [], "data": {}}
    assert db.case(case_id).status == CaseStatus.completed
    (child,) = _children(db, case_id)
    assert [r.spec_name for r in db.open_tasks(child.id)] == ["household_check"]
    assert _round_trip(db, child.id)["names"] == ["household_check"]


# ----------------------------------------------------------------------------- 3. reject at each level
@pytest.mark.parametrize("spec", IDENTIFICATION)
def test_each_review_level_can_reject_and_the_case_ends_as_not_passed(db, spec):
    case_id = _start(db)
    _drive(db, case_id, spec)
    db.clock.advance(timedelta(hours=2))
    with db.uow() as work, pytest.raises(ValidationError):  # a rejection needs a reason
        work.cases.complete_task(_row(db, case_id, spec).id, db.actor(MAIN[spec][1]), "reject", "  ", {})
    _act(db, case_id, spec, action="reject", opinion="经核实收入稳定,不存在返贫致贫风险")

    case = db.case(case_id)
    assert case.status == CaseStatus.rejected
    assert case.outcome_reason == "经核实收入稳定,不存在返贫致贫风险"
    assert case.finished_at == db.clock.now()
    assert db.open_tasks(case_id) == []
    assert all(t.status != TimerStatus.waiting for t in _timers(db, case_id))
    assert _children(db, case_id) == []
    with db.uow() as work:
        last = work.inbox.case_history(case_id)[-1]
    assert (last.action, last.step) == ("reject", MAIN[spec][0])


# ----------------------------------------------------------------------------- 4. return and resubmit
@pytest.mark.parametrize(("spec", "back_to"), [
    ("village_review", "household_check"),
    ("township_audit", "village_review"),
    ("county_identification", "township_audit"),
])
def test_a_review_step_returns_one_step_and_the_resubmission_reaches_identification(db, spec, back_to):
    case_id = _start(db)
    _drive(db, case_id, spec)
    db.clock.advance(timedelta(hours=2))
    _act(db, case_id, spec, action="return", opinion="材料不全,请补充后重新提交")
    assert _open(db, case_id) == [back_to]
    assert db.case(case_id).return_count == 1
    assert db.case(case_id).status == CaseStatus.running
    assert _ready_data(db, case_id, back_to)["return_reason"] == "材料不全,请补充后重新提交"
    # the 15-day limit still counts from the risk being found
    assert _waiting_timer(db, case_id, "deadline_identification").due_at == DEADLINE_15

    _drive(db, case_id, spec)  # resubmit (through the notice again when it lies on the way)
    _drive(db, case_id, "system_entry")
    assert db.case(case_id).status == CaseStatus.identified
    with db.uow() as work:
        rows = work.inbox.case_tasks(case_id)
    assert [(r.spec_name, r.action) for r in rows if r.action == "return"] == [(spec, "return")]
    assert [r.spec_name for r in rows if r.action == "approve"].count(back_to) == 2


def test_the_household_check_cannot_be_returned_and_no_step_returns_past_the_identification(db):
    case_id = _start(db)
    with db.uow() as work, pytest.raises(ValidationError) as err:
        work.cases.complete_task(_row(db, case_id, "household_check").id, db.actor("demo_village"), "return",
                                 "退回", {})
    assert "action" in err.value.errors
    _drive(db, case_id, "county_identification")
    with db.uow() as work, pytest.raises(ValidationError) as err:
        work.cases.complete_task(_row(db, case_id, "county_identification").id, db.actor("demo_dept"), "return",
                                 "重新登记", {}, return_to="risk_report")
    assert "return_to" in err.value.errors
    assert _open(db, case_id) == ["county_identification"]


# ----------------------------------------------------------------------------- 5. the 15-day limit
def _overdue_form_is_required(db, row: TaskRow, username: str) -> None:
    with db.uow() as work, pytest.raises(ValidationError) as err:
        work.cases.complete_task(row.id, db.actor(username), "approve", "", {"supervision_note": "督促"})
    assert "overdue_acknowledged" in err.value.errors


@pytest.mark.parametrize("late_step", [*IDENTIFICATION, "notice"])
def test_the_fifteen_day_identification_limit_escalates_to_the_county_leading_group(db, late_step):
    case_id = _start(db)
    if late_step == "notice":  # the limit passes while the village notice runs
        _drive(db, case_id, "village_review")
        db.clock.set(datetime(2026, 9, 12, 1, 0, tzinfo=timezone.utc))
        _act(db, case_id, "village_review")
        open_steps = []
    else:
        _drive(db, case_id, late_step)
        open_steps = [late_step]
    assert _waiting_timer(db, case_id, "deadline_identification").due_at == DEADLINE_15

    db.clock.set(DEADLINE_15 - timedelta(seconds=1))
    assert _fire(db) == 0
    assert _open(db, case_id) == open_steps
    db.clock.set(DEADLINE_15 + timedelta(minutes=5))
    assert _fire(db) == 1
    assert _open(db, case_id) == [*open_steps, "escalate_identification"]
    row = _row(db, case_id, "escalate_identification")
    assert (row.title, row.role_code, row.scope_code, row.form_key) == (
        "超期督办(识别认定超15日)", "county_leader", COUNTY, f"{PROCEDURE}/overdue_supervision")
    assert row.due_at == row.created_at + timedelta(days=3)
    assert _fire(db) == 0  # fires once
    with db.uow() as work:
        fired = [e for e in work.inbox.case_history(case_id) if e.action == "timer_fired"]
    assert fired[-1].data_diff["timer"] == "识别时限届满(15日)"

    _overdue_form_is_required(db, row, "demo_county")
    _act(db, case_id, "escalate_identification", "demo_county", OVERDUE)
    assert _open(db, case_id) == open_steps  # the late step stays with its level
    _drive(db, case_id, "system_entry")
    assert db.case(case_id).status == CaseStatus.identified
    assert _open(db, case_id) == ["system_entry"]


def test_a_return_after_the_limit_passed_keeps_one_open_supervision_task(db):
    case_id = _start(db)
    _drive(db, case_id, "county_identification")
    db.clock.set(DEADLINE_15 + timedelta(hours=1))
    assert _fire(db) == 1
    _act(db, case_id, "county_identification", action="return", opinion="补充行业部门比对材料")
    assert _open(db, case_id) == ["township_audit", "escalate_identification"]
    assert _fire(db) == 0
    _drive(db, case_id, "system_entry")
    assert _open(db, case_id) == ["escalate_identification", "system_entry"]
    _act(db, case_id, "escalate_identification", "demo_county", OVERDUE)
    assert _open(db, case_id) == ["system_entry"]


# ----------------------------------------------------------------------------- 6. the 10-day limit
@pytest.mark.parametrize("late_step", ["system_entry", "assistance_plan"])
def test_the_ten_day_limit_after_identification_escalates_to_the_township(db, late_step):
    case_id = _start(db)
    _drive(db, case_id, late_step)
    identified = _ready_data(db, case_id, late_step)["identified_date"]
    deadline = datetime.fromisoformat(f"{identified}T23:59+08:00") + timedelta(days=10)
    assert _waiting_timer(db, case_id, "deadline_assistance_setup").due_at == deadline

    db.clock.set(deadline - timedelta(seconds=1))
    assert _fire(db) == 0
    db.clock.set(deadline + timedelta(hours=1))
    assert _fire(db) == 1
    assert _open(db, case_id) == [late_step, "escalate_assistance_setup"]
    row = _row(db, case_id, "escalate_assistance_setup")
    assert (row.title, row.role_code, row.scope_code) == ("超期督办(识别后超10日未建档帮扶)", "township_officer", TOWNSHIP)
    _overdue_form_is_required(db, row, "demo_township")
    _act(db, case_id, "escalate_assistance_setup", "demo_township", OVERDUE)
    assert _open(db, case_id) == [late_step]
    _drive(db, case_id, "risk_assessment")
    assert db.case(case_id).status == CaseStatus.identified


def test_the_assistance_plan_returns_to_the_system_entry_and_is_resubmitted(db):
    case_id = _start(db)
    _drive(db, case_id, "assistance_plan")
    _act(db, case_id, "assistance_plan", ASSISTANT, action="return", opinion="帮扶责任人联系电话有误")
    assert _open(db, case_id) == ["system_entry"]
    _act(db, case_id, "system_entry", data={**SYSTEM_ENTRY, "assistance_cadre_phone": "13900009999"})
    _drive(db, case_id, "risk_assessment")
    assert _ready_data(db, case_id, "risk_assessment")["assistance_cadre_phone"] == "13900009999"


# ----------------------------------------------------------------------------- 7. green channel
@pytest.mark.parametrize("aid_first", [True, False], ids=["aid_done_first", "identification_done_first"])
def test_disaster_green_channel_opens_aid_at_once_in_parallel_with_the_household_check(db, aid_first):
    case_id = _start(db, disaster="是", risk_cause="因灾", monitoring_kind="突发严重困难户")
    assert _open(db, case_id) == ["household_check", "aid_first"]
    aid, check = _row(db, case_id, "aid_first"), _row(db, case_id, "household_check")
    assert aid.created_at == check.created_at == db.clock.now()
    assert (aid.title, aid.role_code, aid.scope_code) == ("先行救助", "township_officer", TOWNSHIP)
    assert aid.due_at == aid.created_at + timedelta(days=3)

    if aid_first:
        _act(db, case_id, "aid_first", "demo_township", AID_FIRST)
        assert _open(db, case_id) == ["household_check"]
        _drive(db, case_id, "system_entry")
    else:
        _drive(db, case_id, "system_entry")
        assert "aid_first" in _open(db, case_id)  # identification did not wait for the aid
        assert db.case(case_id).status == CaseStatus.identified
        _act(db, case_id, "aid_first", "demo_township", AID_FIRST)
    assert _open(db, case_id) == ["system_entry"]
    assert db.case(case_id).status == CaseStatus.identified
    assert _ready_data(db, case_id, "system_entry")["measure_type"] == "insurance_relief"
    _drive(db, case_id, "risk_assessment")
    _act(db, case_id, "risk_assessment")
    assert db.case(case_id).status == CaseStatus.completed
    assert db.case(case_id).finished_at is not None


# ----------------------------------------------------------------------------- 8. DMN tables
@pytest.mark.parametrize(("cause", "labour", "measure_type", "measures"), [
    ("因病", "有劳动力", "health_combined", "落实健康帮扶政策,同时通过产业联农带农机制、公益岗位就业、社会保障兜底等综合施策"),
    ("因学", "无劳动力", "education", "重点落实教育帮扶措施"),
    ("因住房安全", "有劳动力", "housing", "重点落实住房安全保障措施"),
    ("因饮水安全", "有劳动力", "water", "重点落实饮水安全保障措施"),
    ("内生动力不足", "有劳动力", "motivation", "加大教育引导力度,扶志扶智双发力,帮助发展生产"),
    ("因灾", "有劳动力", "insurance_relief", "重点落实保险、救灾、救助等帮扶措施"),
    ("因意外事故", "无劳动力", "insurance_relief", "重点落实保险、救灾、救助等帮扶措施"),
    ("收入骤减", "有劳动力", "industry_employment", "重点落实产业、就业帮扶措施"),
    ("支出骤增", "弱劳动力或半劳动力", "public_welfare_post", "重点落实能胜任的公益岗位就业帮扶措施"),
    ("因残", "无劳动力", "social_security", "重点落实社会保障兜底帮扶措施"),
])
def test_measures_follow_the_risk_cause_and_labour_capacity(db, cause, labour, measure_type, measures):
    case_id = _start(db, risk_cause=cause)
    _drive(db, case_id, "system_entry", data={"household_check": {**HOUSEHOLD_CHECK, "labour_capacity": labour}})
    data = _ready_data(db, case_id, "system_entry")
    assert (data["risk_cause"], data["labour_capacity"]) == (cause, labour)
    assert (data["measure_type"], data["measures"]) == (measure_type, measures)


@pytest.mark.parametrize(("income", "below"), [(0, True), (6499.5, True), (6500, False), (12800, False)])
def test_verified_income_is_flagged_against_the_monitoring_income_line_setting(db, income, below):
    case_id = _start(db)
    _act(db, case_id, "household_check", data={**HOUSEHOLD_CHECK, "income_per_capita": income})
    data = _ready_data(db, case_id, "village_review")
    assert data["settings"]["monitoring_income_line"] == 6500
    assert data["below_income_line"] is below
    assert data["income_line_note"] == ("低于防止返贫监测线" if below else "不低于防止返贫监测线,因支出或保障风险纳入监测")


# ----------------------------------------------------------------------------- 9. public notice objection
def test_an_objection_during_the_notice_sends_the_case_back_to_the_village_review(db):
    case_id = _start(db)
    _drive(db, case_id, "village_review")
    _act(db, case_id, "village_review")
    with db.uow() as work:
        events = work.cases.waiting_events(db.case(case_id), db.actor("demo_village"))
    assert [e["event_id"] for e in events] == ["notice_objection"]
    db.clock.advance(timedelta(days=2))
    with db.uow() as work:
        work.cases.raise_event(case_id, "notice_objection", db.actor("demo_village"), "村民反映该户有商铺出租收入")
    assert _open(db, case_id) == ["village_review"]
    assert [t.spec_name for t in _timers(db, case_id) if t.status == TimerStatus.waiting] == ["deadline_identification"]
    _act(db, case_id, "village_review")  # re-reviewed: the rent is small, the risk stands
    _drive(db, case_id, "county_identification")
    assert db.case(case_id).status == CaseStatus.running


# ----------------------------------------------------------------------------- 10. form validation
def test_the_risk_report_form_refuses_bad_dates_negative_amounts_and_bad_phone_numbers(db):
    case_id = db.start_case("demo_village", procedure=PROCEDURE)
    bad = {**RISK_REPORT, "risk_found_date": "2026-02-30", "income_per_capita": -1, "rigid_expenses": -5,
           "household_size": 0, "contact_phone": "12345", "disaster": "也许", "risk_cause": "其他原因"}
    with db.uow() as work, pytest.raises(ValidationError) as err:
        work.cases.complete_task(_row(db, case_id, "risk_report").id, db.actor("demo_village"), "approve", "", bad)
    assert set(err.value.errors) == {"risk_found_date", "income_per_capita", "rigid_expenses", "household_size",
                                     "contact_phone", "disaster", "risk_cause"}
    assert _open(db, case_id) == ["risk_report"]
    assert _timers(db, case_id) == []

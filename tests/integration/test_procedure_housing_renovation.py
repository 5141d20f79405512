"""P1 农村危房改造 (housing_renovation): the procedure as data, run through the engine.

农户申请(村代办) → 对象资格判定 (DMN) → 村级评议 + 村级公示 → 镇(街道)审核 (住房安全鉴定) →
县级审批 (年度计划) → 改造方式及补助标准 (DMN) → 开工 → 竣工 (10月31日) → 验收 (四清一责任,
11月30日) → 补助兑付 (11月30日) → 销号. Seeds: 002 二(二)4, 000 二(三)10, 003 三(四)2.

The test clock starts 2026-09-01T01:00Z (09:00 China time); plan year 2026.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree
from sqlalchemy import select

from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import AuditEvent, Case, CaseStatus, TaskRow, TimerStatus
from engine.procedures.definitions import NS
from engine.procedures.serialization import load_state
from tests.integration.roundtrip_support import open_task_names, round_trip_case

CODE = "housing_renovation"
CHINA = timezone(timedelta(hours=8))
VILLAGE = "510921107001"
TOWNSHIP = "510921107000"
COUNTY = "510921000000"

APPLICATION = {
    "head_name": "张德明",
    "head_id_number": "510921196503120011",
    "phone": "13800001111",
    "household_size": 4,
    "members": "张德明(户主)、李兰(配偶)、张伟(子)、张丽(女)",
    "household_category": "低保",
    "house_condition": "D",
    "only_house": True,
    "voluntary": True,
    "application_date": "2026-09-01",
    "photos": "PX-WG-2026-001",
}
# the day the straight path reaches 乡镇审核 (the case starts on the clock's 2026-09-01, the 公示 runs 7 days): the
# dates after it are not before the case started (notBefore caseStart) and 竣工/验收/兑付 not after today
AFTER_NOTICE = "2026-09-08"
VILLAGE_REVIEW = {
    "review_date": "2026-09-01",
    "attendees": 21,
    "votes_for": 20,
    "review_opinion": "唯一住房墙体开裂严重,同意纳入危房改造",
    "notice_start": "2026-09-04",
    "notice_place": "村委会公示栏",
    "complaint_phone": "0825-5411234",
}
TOWNSHIP_AUDIT = {
    "materials_complete": True,
    "appraisal_date": "2026-09-07",
    "appraisal_agency": "蓬溪县住房安全鉴定技术服务组",
    "appraisal_grade": "D",
    "appraisal_report_no": "JD-2026-0315",
    "audit_date": AFTER_NOTICE,
}
COUNTY_APPROVAL = {"plan_year": 2026, "approval_number": "蓬住建〔2026〕41号", "approval_date": AFTER_NOTICE}
CONSTRUCTION_START = {"start_date": AFTER_NOTICE, "build_method": "农户自建", "builder": "本村建筑工匠王师傅",
                      "archive_entered": True}
COMPLETION = {"completion_date": AFTER_NOTICE, "floor_area": 96, "total_cost": 52000, "self_funded": 17000,
              "archive_completed": True}
ACCEPTANCE = {"problem_clear": True, "appraisal_clear": True, "renovation_clear": True, "acceptance_clear": True,
              "acceptance_date": AFTER_NOTICE, "township_endorsed": True, "endorser": "刘镇长",
              "household_moved_in": True}
SUBSIDY_PAYMENT = {"payment_date": AFTER_NOTICE, "amount_paid": 35000, "payment_channel": "一卡通",
                   "voucher_no": "YKT-2026-11-0088"}
SUPERVISION = {"acknowledged": True, "supervision_note": "已电话督促,限期一周内完成"}

# (bpmn id, title, user, role, scope, form data) in order along the straight path
STEPS = [
    ("application", "农户申请", "demo_village", "village_cadre", VILLAGE, APPLICATION),
    ("village_review", "村级评议", "demo_village", "village_cadre", VILLAGE, VILLAGE_REVIEW),
    ("township_audit", "镇(街道)审核", "demo_township", "township_officer", TOWNSHIP, TOWNSHIP_AUDIT),
    ("county_approval", "县级审批", "demo_dept", "county_department", COUNTY, COUNTY_APPROVAL),
    ("construction_start", "开工", "demo_village", "village_cadre", VILLAGE, CONSTRUCTION_START),
    ("completion", "竣工", "demo_village", "village_cadre", VILLAGE, COMPLETION),
    ("acceptance", "验收(四清一责任)", "demo_township", "township_officer", TOWNSHIP, ACCEPTANCE),
    ("subsidy_payment", "补助兑付", "demo_dept", "county_department", COUNTY, SUBSIDY_PAYMENT),
]
STEP = {s[0]: s for s in STEPS}
REVIEW_STEPS = ("village_review", "township_audit", "county_approval", "acceptance")
USER_TASKS = {s[0] for s in STEPS} | {"completion_overdue", "acceptance_overdue", "payment_overdue"}

COMPLETION_DEADLINE = datetime(2026, 10, 31, 23, 59, tzinfo=CHINA)
ACCEPTANCE_DEADLINE = datetime(2026, 11, 30, 23, 59, tzinfo=CHINA)


# ----------------------------------------------------------------------------- helpers
def _start(db) -> int:
    return db.start_case("demo_village", procedure=CODE)


def _identity(db, case_id: int) -> dict[str, str]:
    """The application's name and ID fields as the case's household is registered (the form must agree)."""
    with db.uow() as work:
        subject = work.session.get_one(Case, case_id).subject
        return {"head_name": subject.name, "head_id_number": subject.id_number}


def _open(db, case_id: int) -> list[str]:
    return sorted(r.spec_name for r in db.open_tasks(case_id))


def _row(db, case_id: int, spec_name: str) -> TaskRow:
    (row,) = [r for r in db.open_tasks(case_id) if r.spec_name == spec_name]
    return row


def _do(db, case_id: int, spec_name: str, action: str = "approve", opinion: str = "同意", data: dict | None = None,
        user: str | None = None, return_to: str | None = None) -> None:
    row = _row(db, case_id, spec_name)
    username = user or STEP[spec_name][2]
    with db.uow() as work:
        work.cases.complete_task(row.id, db.actor(username), action, opinion,
                                 STEP[spec_name][5] if data is None and action == "approve" else (data or {}),
                                 return_to=return_to)


def _fire(db) -> int:
    with db.uow() as work:
        return work.cases.fire_due_timers()


def _pass_notice(db, case_id: int) -> None:
    """Let the village public notice run its full period without objection."""
    db.clock.advance(timedelta(days=7, minutes=1))
    assert _fire(db) == 1


def _run_to(db, case_id: int, stop: str, **data) -> None:
    """Approve every step before stop (data overrides by step id), passing the notice period."""
    for bpmn_id, *_rest, default in STEPS:
        if bpmn_id == stop:
            return
        _do(db, case_id, bpmn_id, data=data.get(bpmn_id, default))
        if bpmn_id == "village_review":
            _pass_notice(db, case_id)
    assert stop == "end"


def _workflow(db, case_id: int):
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        version = case.version
        return load_state(case.state, case.serializer_version, work.definitions.specs(version), version.spec_json)


def _data(db, case_id: int, bpmn_id: str) -> dict:
    """The workflow data of the newest task of an element (DMN outputs live here, not in task rows)."""
    tasks = [t for t in _workflow(db, case_id).get_tasks() if t.task_spec.bpmn_id == bpmn_id]
    return max(tasks, key=lambda t: t.last_state_change).data


def _timers(db, case_id: int) -> dict[str, tuple[TimerStatus, datetime]]:
    with db.uow() as work:
        return {t.spec_name: (t.status, t.due_at) for t in work.inbox.case_timers(case_id)}


def _china(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A 2026 China-time moment as UTC (the clock and the database keep UTC)."""
    return datetime(2026, month, day, hour, minute, tzinfo=CHINA).astimezone(timezone.utc)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# ----------------------------------------------------------------------------- straight through
def test_dilapidated_house_case_runs_straight_through_to_closed_with_each_level_in_its_lane(db):
    case_id = _start(db)
    assert db.case(case_id).status == CaseStatus.running
    for bpmn_id, title, user, role, scope, data in STEPS:
        (row,) = db.open_tasks(case_id)
        assert (row.spec_name, row.title, row.role_code, row.scope_code) == (bpmn_id, title, role, scope)
        assert row.form_key == f"{CODE}/{bpmn_id}"
        expected_actions = "approve,reject,return" if bpmn_id in REVIEW_STEPS else "approve"
        assert row.actions == expected_actions
        _do(db, case_id, bpmn_id, opinion=f"{title}同意", data=data, user=user)
        if bpmn_id == "village_review":
            assert db.open_tasks(case_id) == []
            status, due = _timers(db, case_id)["notice_expired"]
            assert status == TimerStatus.waiting
            assert _utc(due) == db.clock.now() + timedelta(days=7)
            _pass_notice(db, case_id)
    case = db.case(case_id)
    assert case.status == CaseStatus.completed
    assert case.finished_at == db.clock.now()
    assert case.outcome_reason is None
    assert db.open_tasks(case_id) == []
    timers = _timers(db, case_id)
    assert timers["notice_expired"][0] == TimerStatus.fired
    for deadline in ("completion_deadline", "acceptance_deadline", "payment_deadline"):
        assert timers[deadline][0] == TimerStatus.cancelled  # each step was done in time
    data = _data(db, case_id, "end_closed")
    assert data["qualified"] is True and data["qualification_reason"] == "唯一住房为C、D级危房"
    assert (data["renovation_mode"], data["renovation_mode_name"], data["subsidy_amount"]) == ("rebuild", "拆除重建", 35000)


def test_each_step_has_its_due_time_and_the_inbox_of_its_level(db):
    case_id = _start(db)
    (row,) = db.open_tasks(case_id)
    assert row.due_at == db.clock.now() + timedelta(days=5)
    _do(db, case_id, "application")
    assert _row(db, case_id, "village_review").due_at == db.clock.now() + timedelta(days=10)
    _do(db, case_id, "village_review")
    _pass_notice(db, case_id)
    assert _row(db, case_id, "township_audit").due_at == db.clock.now() + timedelta(days=15)
    with db.uow() as work:
        assert [r.spec_name for r in work.inbox.todo(db.actor("demo_township"))] == ["township_audit"]
        assert work.inbox.todo(db.actor("demo_other_township")) == []
        assert work.inbox.todo(db.actor("demo_village")) == []


# ----------------------------------------------------------------------------- save / restore
def _round_trip(db, case_id: int) -> dict[str, object]:
    """Explicit save/restore between steps (roundtrip_support); the restored READY user tasks are the
    open task rows."""
    def check(session, _restored, after):
        assert sorted(name for name, _d in after["ready"] if name in USER_TASKS) == open_task_names(session, case_id)

    after = round_trip_case(db, case_id, check)
    return {**after, "data": {name: json.loads(data) for name, data in after["ready"]}}


def test_straight_through_survives_an_explicit_save_and_restore_between_every_step(db):
    case_id = _start(db)
    snap = _round_trip(db, case_id)
    assert [n for n, _d in snap["ready"]] == ["application"]
    assert snap["data"]["application"]["subject_name"] == "张德明"
    assert snap["data"]["application"]["settings"]["notice_days"] == 7

    following = [s[0] for s in STEPS[1:]] + [None]
    for (bpmn_id, title, user, *_rest, data), nxt in zip(STEPS, following, strict=True):
        _do(db, case_id, bpmn_id, opinion=f"{title}同意", data=data, user=user)
        snap = _round_trip(db, case_id)
        if bpmn_id == "village_review":  # waiting in the public notice: its timer survives the round trip
            assert snap["ready"] == []
            assert [n for n, _v in snap["waiting"]] == ["notice_expired", "notice_objection"]
            _pass_notice(db, case_id)
            snap = _round_trip(db, case_id)
        if nxt is None:
            assert snap == {"ready": [], "waiting": [], "data": {}}
            break
        assert [n for n, _d in snap["ready"]] == [nxt]
        carried = snap["data"][nxt]
        assert carried["head_id_number"] == APPLICATION["head_id_number"]
        assert carried["opinions"][bpmn_id] == f"{title}同意"
        if nxt == "completion":
            assert [n for n, _v in snap["waiting"]] == ["completion_deadline"]
            assert snap["waiting"][0][1] == COMPLETION_DEADLINE.isoformat()
        if nxt in ("construction_start", "completion", "acceptance", "subsidy_payment"):
            assert (carried["plan_year"], carried["renovation_mode"], carried["subsidy_amount"]) == (2026, "rebuild", 35000)
    case = db.case(case_id)
    assert case.status == CaseStatus.completed
    assert case.finished_at == db.clock.now()


# ----------------------------------------------------------------------------- DMN: who qualifies
QUALIFICATION_ROWS = [
    # (rule, application overrides, qualified, reason)
    ("not_voluntary", {"voluntary": False}, False, "农户未自愿申请改造"),
    ("not_key_group", {"household_category": "一般农户"}, False, "不属于农村低收入群体等重点对象"),
    ("no_house", {"house_condition": "无房", "only_house": False}, True, "无房户"),
    ("only_house_cd", {"house_condition": "C", "only_house": True}, True, "唯一住房为C、D级危房"),
    ("not_only_house", {"house_condition": "D", "only_house": False}, False, "危房不是家庭唯一住房"),
    ("safe_house", {"house_condition": "安全", "only_house": True}, False, "住房安全(A、B级),无需改造"),
]


@pytest.mark.parametrize(("rule", "overrides", "qualified", "reason"), QUALIFICATION_ROWS,
                         ids=[r[0] for r in QUALIFICATION_ROWS])
def test_qualification_decision_row(db, rule, overrides, qualified, reason):
    case_id = _start(db)
    _do(db, case_id, "application", data={**APPLICATION, **overrides})
    case = db.case(case_id)
    if qualified:
        assert case.status == CaseStatus.running
        assert _open(db, case_id) == ["village_review"]
        data = _data(db, case_id, "village_review")
    else:  # a diagram path, not the reject operation: the 不符合条件 end event sets the status
        assert case.status == CaseStatus.rejected
        assert case.finished_at == db.clock.now()
        assert db.open_tasks(case_id) == []
        data = _data(db, case_id, "end_not_qualified")
    assert (data["qualified"], data["qualification_reason"]) == (qualified, reason)


@pytest.mark.parametrize("category", ["低保", "特困", "低保边缘", "防返贫监测对象", "脱贫不稳定户"])
def test_every_key_group_with_an_only_house_of_grade_c_or_d_qualifies(db, category):
    for grade in ("C", "D"):
        case_id = _start(db)  # the second on another household (one running case per household)
        _do(db, case_id, "application", data={**APPLICATION, **_identity(db, case_id), "household_category": category,
                                              "house_condition": grade})
        assert _open(db, case_id) == ["village_review"]
        assert _data(db, case_id, "village_review")["qualified"] is True


def test_an_unwilling_household_is_refused_even_when_everything_else_qualifies(db):
    case_id = _start(db)
    _do(db, case_id, "application", data={**APPLICATION, "voluntary": False, "house_condition": "无房"})
    assert db.case(case_id).status == CaseStatus.rejected
    assert _data(db, case_id, "end_not_qualified")["qualification_reason"] == "农户未自愿申请改造"


# ----------------------------------------------------------------------------- DMN: repair or rebuild
SUBSIDY_ROWS = [
    ("grade_c", "C", "repair", "维修加固", 15000),
    ("grade_d", "D", "rebuild", "拆除重建", 35000),
    ("no_house", "无房", "rebuild", "新建住房", 35000),
]


@pytest.mark.parametrize(("rule", "grade", "mode", "mode_name", "amount"), SUBSIDY_ROWS, ids=[r[0] for r in SUBSIDY_ROWS])
def test_renovation_decision_row_fixes_mode_and_subsidy_standard(db, rule, grade, mode, mode_name, amount):
    case_id = _start(db)
    _run_to(db, case_id, "construction_start", township_audit={**TOWNSHIP_AUDIT, "appraisal_grade": grade})
    assert _open(db, case_id) == ["construction_start"]
    data = _data(db, case_id, "construction_start")
    assert (data["renovation_mode"], data["renovation_mode_name"], data["subsidy_amount"]) == (mode, mode_name, amount)
    assert data["plan_year"] == 2026


# ----------------------------------------------------------------------------- reject at each level
@pytest.mark.parametrize("step", REVIEW_STEPS)
def test_reviewer_rejects_with_a_reason_and_the_case_ends_as_rejected(db, step):
    case_id = _start(db)
    _run_to(db, case_id, step)
    with pytest.raises(ValidationError):
        _do(db, case_id, step, action="reject", opinion="  ")
    assert _open(db, case_id) == [step]
    reason = f"{STEP[step][1]}不通过:经核实不符合危房改造条件"
    _do(db, case_id, step, action="reject", opinion=reason)
    case = db.case(case_id)
    assert case.status == CaseStatus.rejected
    assert case.outcome_reason == reason
    assert case.finished_at == db.clock.now()
    assert db.open_tasks(case_id) == []
    assert all(status != TimerStatus.waiting for status, _due in _timers(db, case_id).values())
    with db.uow() as work:
        last = work.session.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id)
                                    .order_by(AuditEvent.id.desc())).first()
        assert (last.action, last.opinion, last.step) == ("reject", reason, STEP[step][1])


@pytest.mark.parametrize("step", ["application", "construction_start", "completion", "subsidy_payment"])
def test_recording_steps_offer_approve_only(db, step):
    case_id = _start(db)
    _run_to(db, case_id, step)
    assert _row(db, case_id, step).actions == "approve"
    with pytest.raises(ValidationError):
        _do(db, case_id, step, action="reject", opinion="不通过")


# ----------------------------------------------------------------------------- return one step
# 验收 → 竣工 goes back past the waiting 验收期限 boundary timer: the engine must forget it
RETURNS = [("village_review", "application"), ("township_audit", "village_review"),
           ("county_approval", "township_audit"), ("acceptance", "completion")]


@pytest.mark.parametrize(("step", "previous"), RETURNS, ids=["village_review", "township_audit", "county_approval",
                                                             "acceptance"])
def test_reviewer_returns_one_step_and_the_resubmitted_case_runs_to_the_end(db, step, previous):
    case_id = _start(db)
    _run_to(db, case_id, step)
    _do(db, case_id, step, action="return", opinion="材料不全,请补充后重新提交")
    assert _open(db, case_id) == [previous]
    assert db.case(case_id).return_count == 1
    assert db.case(case_id).status == CaseStatus.running
    returned = _data(db, case_id, previous)
    assert returned["return_reason"] == "材料不全,请补充后重新提交"
    if previous == "completion":  # the deadline watches the reopened step again
        assert _timers(db, case_id)["completion_deadline"][0] == TimerStatus.waiting

    _do(db, case_id, previous)
    if previous == "village_review":  # a new review is posted again for the full period
        assert db.open_tasks(case_id) == []
        _pass_notice(db, case_id)
    assert _open(db, case_id) == [step]
    remaining = [s[0] for s in STEPS][[s[0] for s in STEPS].index(step):]
    for bpmn_id in remaining:
        _do(db, case_id, bpmn_id)
        if bpmn_id == "village_review":
            _pass_notice(db, case_id)
    assert db.case(case_id).status == CaseStatus.completed


# ----------------------------------------------------------------------------- 公示异议
def test_objection_during_the_public_notice_sends_the_case_back_to_village_review(db):
    case_id = _start(db)
    _run_to(db, case_id, "village_review")
    _do(db, case_id, "village_review")
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        events = work.cases.waiting_events(case, db.actor("demo_village"))
        assert [(e["event_id"], e["name"], e["role"], e["can_raise"]) for e in events] == [
            ("notice_objection", "公示异议", "village_cadre", True)]
        assert [e["can_raise"] for e in work.cases.waiting_events(case, db.actor("demo_township"))] == [False]
    db.clock.advance(timedelta(days=3))
    with db.uow() as work:
        work.cases.raise_event(case_id, "notice_objection", db.actor("demo_village"), "村民反映该户另有住房")
    assert _open(db, case_id) == ["village_review"]
    assert _timers(db, case_id)["notice_expired"][0] == TimerStatus.cancelled
    assert _data(db, case_id, "village_review")["last_event_reason"] == "村民反映该户另有住房"

    db.clock.advance(timedelta(days=10))  # the old notice period would have ended: nothing fires
    assert _fire(db) == 0
    _do(db, case_id, "village_review", data={**VILLAGE_REVIEW, "review_opinion": "经核实无其他住房,重新评议同意"})
    with db.uow() as work:
        waiting = [t for t in work.inbox.case_timers(case_id) if t.status == TimerStatus.waiting]
        assert [(t.spec_name, _utc(t.due_at)) for t in waiting] == [("notice_expired", db.clock.now() + timedelta(days=7))]
    _pass_notice(db, case_id)
    assert _open(db, case_id) == ["township_audit"]
    with pytest.raises(ConflictError):
        with db.uow() as work:
            work.cases.raise_event(case_id, "notice_objection", db.actor("demo_village"), "公示期已过")


# ----------------------------------------------------------------------------- deadlines
def test_missed_completion_deadline_opens_township_supervision_while_completion_stays_open(db):
    case_id = _start(db)
    _run_to(db, case_id, "completion")
    status, due = _timers(db, case_id)["completion_deadline"]
    assert status == TimerStatus.waiting and _utc(due) == COMPLETION_DEADLINE.astimezone(timezone.utc)
    db.clock.set(_china(10, 31, 23, 58))
    assert _fire(db) == 0
    db.clock.set(_china(11, 1, 0, 0))
    assert _fire(db) == 1
    assert _open(db, case_id) == ["completion", "completion_overdue"]
    overdue = _row(db, case_id, "completion_overdue")
    assert (overdue.title, overdue.role_code, overdue.scope_code) == ("竣工超期督办", "township_officer", TOWNSHIP)
    assert overdue.form_key == f"{CODE}/overdue_supervision"
    assert _row(db, case_id, "completion").role_code == "village_cadre"
    db.clock.advance(timedelta(days=3))
    assert _fire(db) == 0  # the deadline fires once
    with pytest.raises(ValidationError):
        _do(db, case_id, "completion_overdue", data={"acknowledged": True, "supervision_note": ""}, user="demo_township")
    _do(db, case_id, "completion_overdue", data=SUPERVISION, user="demo_township")
    assert _open(db, case_id) == ["completion"]
    _do(db, case_id, "completion", data={**COMPLETION, "completion_date": "2026-11-04"})
    assert _open(db, case_id) == ["acceptance"]
    # accepted and paid the same day (not before the completion, not after today)
    _do(db, case_id, "acceptance", data={**ACCEPTANCE, "acceptance_date": "2026-11-04"})
    _do(db, case_id, "subsidy_payment", data={**SUBSIDY_PAYMENT, "payment_date": "2026-11-04"})
    assert db.case(case_id).status == CaseStatus.completed


def test_missed_acceptance_deadline_escalates_to_the_county_and_payment_still_waits_for_acceptance(db):
    case_id = _start(db)
    _run_to(db, case_id, "acceptance")
    status, due = _timers(db, case_id)["acceptance_deadline"]
    assert status == TimerStatus.waiting and _utc(due) == ACCEPTANCE_DEADLINE.astimezone(timezone.utc)
    db.clock.set(_china(12, 1, 0, 0))
    assert _fire(db) == 1
    assert _open(db, case_id) == ["acceptance", "acceptance_overdue"]
    overdue = _row(db, case_id, "acceptance_overdue")
    assert (overdue.title, overdue.role_code, overdue.scope_code) == ("验收超期督办", "county_department", COUNTY)
    _do(db, case_id, "acceptance_overdue", data=SUPERVISION, user="demo_dept")
    assert _open(db, case_id) == ["acceptance"]
    _do(db, case_id, "acceptance", data={**ACCEPTANCE, "acceptance_date": "2026-12-01"})
    # payment opens only now, already past its own 30 November limit: the county leaders are told
    _fire(db)
    assert _open(db, case_id) == ["payment_overdue", "subsidy_payment"]
    _do(db, case_id, "payment_overdue", data=SUPERVISION, user="demo_county")
    _do(db, case_id, "subsidy_payment", data={**SUBSIDY_PAYMENT, "payment_date": "2026-12-01"})
    assert db.case(case_id).status == CaseStatus.completed


def test_missed_payment_deadline_opens_county_leader_supervision_while_payment_stays_open(db):
    case_id = _start(db)
    _run_to(db, case_id, "subsidy_payment")
    status, due = _timers(db, case_id)["payment_deadline"]
    assert status == TimerStatus.waiting and _utc(due) == ACCEPTANCE_DEADLINE.astimezone(timezone.utc)
    db.clock.set(_china(12, 1, 0, 0))
    assert _fire(db) == 1
    assert _open(db, case_id) == ["payment_overdue", "subsidy_payment"]
    overdue = _row(db, case_id, "payment_overdue")
    assert (overdue.title, overdue.role_code, overdue.scope_code) == ("兑付超期督办", "county_leader", COUNTY)
    _do(db, case_id, "payment_overdue", data=SUPERVISION, user="demo_county")
    _do(db, case_id, "subsidy_payment")
    case = db.case(case_id)
    assert case.status == CaseStatus.completed and case.finished_at == db.clock.now()


# ----------------------------------------------------------------------------- 补助兑付 only after 验收
def test_subsidy_payment_never_opens_before_acceptance_is_approved(db):
    case_id = _start(db)
    seen: set[str] = set()
    for bpmn_id, *_rest, data in STEPS:
        if bpmn_id == "subsidy_payment":
            break
        seen.update(_open(db, case_id))
        if bpmn_id == "acceptance":  # a missed acceptance deadline does not reach the payment either
            db.clock.set(_china(12, 1, 0, 0))
            assert _fire(db) == 1
            seen.update(_open(db, case_id))
        _do(db, case_id, bpmn_id, data=data)
        if bpmn_id == "village_review":
            _pass_notice(db, case_id)
    assert "subsidy_payment" not in seen
    with db.uow() as work:
        rows = [r for r in work.inbox.case_tasks(case_id) if r.spec_name == "subsidy_payment"]
        accepted = [r for r in work.inbox.case_tasks(case_id) if r.spec_name == "acceptance" and r.action == "approve"]
    assert len(rows) == 1 and len(accepted) == 1
    assert rows[0].created_at >= accepted[0].completed_at


def test_the_diagram_reaches_subsidy_payment_only_through_acceptance(db):
    with db.uow() as work:
        xml = work.definitions.bpmn_xml(work.definitions.latest(CODE))
    root = etree.fromstring(xml.encode("utf-8"))
    edges: dict[str, set[str]] = {}
    for flow in root.iterfind(".//bpmn:sequenceFlow", NS):
        edges.setdefault(flow.get("sourceRef"), set()).add(flow.get("targetRef"))
    for boundary in root.iterfind(".//bpmn:boundaryEvent", NS):
        edges.setdefault(boundary.get("attachedToRef"), set()).add(boundary.get("id"))
    incoming = [f.get("sourceRef") for f in root.iterfind(".//bpmn:sequenceFlow", NS) if f.get("targetRef") == "subsidy_payment"]
    assert incoming == ["acceptance"]

    def reachable(without: str | None) -> set[str]:
        seen, todo = set(), ["start"]
        while todo:
            node = todo.pop()
            if node in seen or node == without:
                continue
            seen.add(node)
            todo.extend(edges.get(node, ()))
        return seen

    assert "subsidy_payment" in reachable(None)
    assert "subsidy_payment" not in reachable("acceptance")
    assert "end_closed" not in reachable("acceptance")


# ----------------------------------------------------------------------------- forms
def test_forms_refuse_a_bad_id_number_a_negative_amount_and_a_bad_date(db):
    case_id = _start(db)
    with pytest.raises(ValidationError) as bad_id:
        _do(db, case_id, "application", data={**APPLICATION, "head_id_number": "510921196503120012"})
    assert "head_id_number" in bad_id.value.errors
    with pytest.raises(ValidationError) as bad_date:
        _do(db, case_id, "application", data={**APPLICATION, "application_date": "2026-13-01"})
    assert "application_date" in bad_date.value.errors
    _run_to(db, case_id, "subsidy_payment")
    with pytest.raises(ValidationError) as negative:
        _do(db, case_id, "subsidy_payment", data={**SUBSIDY_PAYMENT, "amount_paid": -1})
    assert "amount_paid" in negative.value.errors
    with pytest.raises(ValidationError) as missing:
        _do(db, case_id, "subsidy_payment", data={k: v for k, v in SUBSIDY_PAYMENT.items() if k != "voucher_no"})
    assert "voucher_no" in missing.value.errors
    _do(db, case_id, "subsidy_payment")
    assert db.case(case_id).status == CaseStatus.completed


def test_only_a_village_cadre_of_the_households_village_files_the_application(db):
    household = db.household()
    with pytest.raises(ForbiddenError):
        db.start_case("demo_township", procedure=CODE, subject_id=household)
    with pytest.raises(NotFoundError):
        db.start_case("demo_other_village", procedure=CODE, subject_id=household)
    case_id = db.start_case("demo_village", procedure=CODE, subject_id=household)
    assert _open(db, case_id) == ["application"]

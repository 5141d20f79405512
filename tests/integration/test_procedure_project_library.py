"""P4 项目库 (project_library): application, screening, three reviews, 公示, spending checkpoints, completion.

Engine level (no Flask): cases of the demo projects (subjects of kind "project") run through
UnitOfWork services while the FixedClock (2026-09-01T01:00Z) is moved by hand through the
2027 plan year. Seeds: 002 二(七)1/2, 二(三)3; 000 items 15, 16, 18, 20, 21, 22.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import AuditEvent, Case, CaseStatus, Subject, TaskRow, TaskStatus, TimerRow, TimerStatus
from engine.procedures.serialization import load_state
from tests.integration.roundtrip_support import open_task_names, round_trip_case

PROCEDURE = "project_library"
VILLAGE = "510921107001"  # the demo village of 宝梵镇
TOWNSHIP = "510921107000"  # 宝梵镇
COUNTY = "510921000000"  # 蓬溪县
CHINA = timezone(timedelta(hours=8))
PLAN_YEAR = 2027

APPLICATION = {
    "project_type": "产业发展",
    "construction_content": "新建柑橘分拣冷藏库 1 座 600 平方米,配套分拣线 1 条",
    "budget_yuan": 800000,
    "poor_households": 36,
    "beneficiary_people": 420,
    "link_mode": "入股分红",
    "link_description": "衔接资金形成的资产量化入股村集体,合作社按年保底分红,优先吸纳脱贫户务工",
    "plan_year": PLAN_YEAR,
}
TOWNSHIP_REVIEW = {"site_surveyed": True, "link_mechanism_verified": True, "township_review_date": "2026-09-08"}
DEPT_REVIEW = {"department_name": "蓬溪县农业农村局", "policy_compliant": True, "verified_budget_yuan": 780000,
               "dept_review_date": "2026-09-15"}
LEADER_VOTE = {"leader_materials_reviewed": True}
LEADER_RECORD = {"enter_reserve_library": True, "approved_funds_yuan": 780000,
                   "decision_number": "蓬巩衔组〔2026〕8号", "decision_date": "2026-09-25"}
PUBLIC_NOTICE = {"arrangement_posted": True, "funds_posted": True, "notice_place": "村务公开栏"}
COMPLETION = {"completion_date": "2027-10-20", "works_summary": "冷藏库及分拣线全部建成", "actual_investment_yuan": 776000}
ACCEPTANCE = {"acceptance_date": "2027-10-28", "acceptance_passed": True, "final_cost_yuan": 775500,
              "acceptance_unit": "蓬溪县农业农村局、宝梵镇人民政府"}
ASSET = {"asset_category": "经营性资产", "asset_value_yuan": 775500, "asset_owner": "村股份经济合作联合社",
         "custodian": "村股份经济合作联合社理事长", "custody_agreement_signed": True, "ledger_registered": True,
         "handover_date": "2027-11-10"}
SUPERVISION = {"supervision_acknowledged": True, "supervision_measures": "约谈实施单位,按周调度报账进度",
               "rectify_by": "2027-05-31"}
OVERDUE = {"overdue_acknowledged": True, "overdue_note": "限期完成"}

# the county's leading group (county_leader holders of 蓬溪县, by username): 领导小组审定 is their 会签,
# passed once more than half agree (3 of 4), failed once half disagree (2 of 4)
MEMBERS = ("demo_county", "demo_leader1", "demo_leader2", "demo_leader3")
LEADERS = MEMBERS[1:]
# (bpmn id, title, user, role, scope, data) of the application and the reviews; a tuple of users is a 会签
REVIEWS = [
    ("apply", "村申请", "demo_village", "village_cadre", VILLAGE, APPLICATION),
    ("township_review", "镇初审", "demo_township", "township_officer", TOWNSHIP, TOWNSHIP_REVIEW),
    ("dept_review", "部门审核", "demo_dept", "county_department", COUNTY, DEPT_REVIEW),
    ("leader_decision", "领导小组审定", LEADERS, "county_leader", COUNTY, LEADER_VOTE),
    ("leader_record", "审定结果登记", "demo_county", "county_leader", COUNTY, LEADER_RECORD),
]
ACTIONS = {"apply": "approve", "leader_record": "approve,return"}
# (suffix, label, month, day, target %) of the four spending checkpoints (seed 002 二(七)1)
CHECKPOINTS = [("q1", "4月底", 4, 30, 30), ("q2", "6月底", 6, 30, 50), ("q3", "9月底", 9, 30, 75),
               ("q4", "12月底", 12, 31, 100)]


def _due(month: int, day: int, year: int = PLAN_YEAR) -> datetime:
    """calendar_date(month, day, year): 23:59 China time that day, as UTC (the clock's zone)."""
    return datetime(year, month, day, 23, 59, tzinfo=CHINA).astimezone(timezone.utc)


def _report(pct: float, report_date: str = "2027-01-01") -> dict:
    """A 资金支出进度报告: cumulative share of the 780,000 yuan arranged by the leading group."""
    return {"spent_amount_yuan": round(780000 * pct / 100), "spent_pct": pct, "report_date": report_date}


# ----------------------------------------------------------------------------- helpers
def _projects(db) -> list[int]:
    with db.uow() as work:
        actor = db.actor("demo_village")
        subjects = work.session.scalars(select(Subject).where(Subject.kind == "project").order_by(Subject.id))
        return [s.id for s in subjects if actor.covers(s.region_code)]


def _start(db, project: int = 0) -> int:
    return db.start_case("demo_village", procedure=PROCEDURE, subject_id=_projects(db)[project])


def _open(db, case_id: int) -> dict[str, TaskRow]:
    """Open rows by step; only the signers' rows of a 会签 step share one."""
    rows = db.open_tasks(case_id)
    names = [r.spec_name for r in rows if r.instance_group is None]
    assert len(names) == len(set(names)), names
    return {r.spec_name: r for r in rows}


def _do(db, case_id: int, step: str, username: str | tuple, action: str = "approve", opinion: str = "同意",
        data: dict | None = None, **kwargs) -> None:
    """Act on the step's open row; a tuple of usernames signs a 会签 step one signer after the other."""
    if isinstance(username, tuple):
        for user in username:
            _do(db, case_id, step, user, action, opinion, data, **kwargs)
        return
    (row,) = [r for r in db.open_tasks(case_id)
              if r.spec_name == step and (r.instance_group is None or r.assignee.username == username)]
    with db.uow() as work:
        work.cases.complete_task(row.id, db.actor(username), action, opinion, data or {}, **kwargs)


def _fire(db) -> int:
    with db.uow() as work:
        return work.cases.fire_due_timers()


def _timers(db, case_id: int, status: TimerStatus | None = TimerStatus.waiting) -> dict[str, TimerRow]:
    with db.uow() as work:
        rows = work.inbox.case_timers(case_id)
    return {t.spec_name: t for t in rows if status is None or t.status == status}


def _raise(db, case_id: int, event_id: str, username: str, reason: str) -> None:
    with db.uow() as work:
        work.cases.raise_event(case_id, event_id, db.actor(username), reason)


def _rows(db, case_id: int) -> tuple:
    """What a refused submission must leave alone: the case row, its task and timer rows, its audit events."""
    with db.uow() as work:
        s = work.session
        return (
            tuple(s.execute(select(Case.status, Case.lock_version, Case.state).where(Case.id == case_id)).all()),
            tuple(s.execute(select(TaskRow.id, TaskRow.status, TaskRow.data).where(TaskRow.case_id == case_id)).all()),
            tuple(s.execute(select(TimerRow.id, TimerRow.status).where(TimerRow.case_id == case_id)).all()),
            tuple(s.scalars(select(AuditEvent.id).where(AuditEvent.case_id == case_id))),
        )


def _history(db, case_id: int) -> list[TaskRow]:
    with db.uow() as work:
        return work.inbox.case_tasks(case_id)


def _to_notice(db, case_id: int) -> None:
    """Approve 村申请 and the three reviews: the case waits at 项目公示准备."""
    for step, _title, user, _role, _scope, data in REVIEWS:
        _do(db, case_id, step, user, data=data)


def _post(db, case_id: int, data: dict = PUBLIC_NOTICE) -> str:
    """项目公示准备, then 出具项目公示: the village issues the signed notice, which starts the period; its serial."""
    _do(db, case_id, "public_notice", "demo_village", data=data)
    assert set(_open(db, case_id)) == {"issue_project_notice"}
    (serial,) = db.issue_notices(case_id)
    return serial


def _to_implementation(db, case_id: int) -> None:
    """Through the reviews and an uncontested 公示: implementation has started."""
    _to_notice(db, case_id)
    _post(db, case_id)
    db.clock.advance(timedelta(days=7, minutes=1))
    assert _fire(db) == 1


def _pass_checkpoint(db, case_id: int, suffix: str, month: int, day: int, pct: float) -> None:
    db.clock.set(_due(month, day) + timedelta(minutes=1))
    assert _fire(db) == 1
    _do(db, case_id, f"spending_report_{suffix}", "demo_village",
        data=_report(pct, f"{PLAN_YEAR + (month == 12)}-{1 if month == 12 else month + 1:02d}-01"))


# ----------------------------------------------------------------------------- 1. straight through
def test_project_runs_straight_through_reviews_notice_checkpoints_and_handover_to_completed(db):
    assert len(_projects(db)) == 2
    case_id = _start(db)
    started = db.clock.now()
    case = db.case(case_id)
    assert case.status == CaseStatus.running

    for step, title, user, role, scope, data in REVIEWS:
        rows = db.open_tasks(case_id)
        for row in rows:
            assert (row.spec_name, row.title, row.role_code, row.scope_code) == (step, title, role, scope)
            assert row.form_key == f"{PROCEDURE}/{'application' if step == 'apply' else step}"
            assert row.actions == ACTIONS.get(step, "approve,reject,return")
        if step == "leader_decision":  # one row per member of the county's leading group, for that member only
            assert sorted(r.assignee.username for r in rows) == list(MEMBERS)
            assert {r.multi_sign for r in rows} == {"ratio"} and len({r.instance_group for r in rows}) == 1
        else:
            assert len(rows) == 1 and rows[0].instance_group is None
        _do(db, case_id, step, user, data=data)
        db.clock.advance(timedelta(days=1))

    assert db.case(case_id).status == CaseStatus.running  # 审定, but not in the library before 公示 ends
    assert "library_deadline" not in _timers(db, case_id)  # decided before November
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.title, row.role_code, row.scope_code) == (
        "public_notice", "项目公示准备", "village_cadre", VILLAGE)
    _do(db, case_id, "public_notice", "demo_village", data=PUBLIC_NOTICE)
    (row,) = db.open_tasks(case_id)  # the notice is issued, signed, by the village: the period starts then
    assert (row.spec_name, row.title, row.role_code, row.scope_code, row.actions) == (
        "issue_project_notice", "出具项目公示", "village_cadre", VILLAGE, "issue")
    assert _timers(db, case_id) == {}
    db.clock.advance(timedelta(hours=5))
    (serial,) = db.issue_notices(case_id)
    posted = db.clock.now()
    assert serial.startswith("XF2026-")
    timers = _timers(db, case_id)
    assert set(timers) == {"notice_expired"}
    assert timers["notice_expired"].due_at == posted + timedelta(days=7)
    with db.uow() as work:
        events = work.cases.waiting_events(db.case(case_id), db.actor("demo_village"))
    assert [(e["event_id"], e["name"], e["can_raise"]) for e in events] == [("notice_objection", "公示异议", True)]

    db.clock.set(posted + timedelta(days=7, seconds=1))
    assert _fire(db) == 1
    assert db.case(case_id).status == CaseStatus.approved  # 纳入储备项目库
    assert set(_open(db, case_id)) == {"completion_report"}
    timers = _timers(db, case_id)
    assert {k: v.due_at for k, v in timers.items()} == {
        "spending_timer_q1": _due(4, 30), "works_deadline": _due(11, 30)}

    for suffix, _label, month, day, target in CHECKPOINTS[:3]:
        _pass_checkpoint(db, case_id, suffix, month, day, target + 5)
        assert set(_open(db, case_id)) == {"completion_report"}

    assert _open(db, case_id)["completion_report"].due_at == _due(11, 30)  # 11 月底前全面竣工
    db.clock.set(datetime(2027, 10, 21, 2, 0, tzinfo=timezone.utc))
    _do(db, case_id, "completion_report", "demo_village", data=COMPLETION)
    assert "works_deadline" not in _timers(db, case_id)
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.role_code, row.scope_code, row.actions) == (
        "acceptance", "county_department", COUNTY, "approve,return")
    _do(db, case_id, "acceptance", "demo_dept", data=ACCEPTANCE)
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.role_code, row.scope_code) == ("asset_handover", "township_officer", TOWNSHIP)
    _do(db, case_id, "asset_handover", "demo_township", data=ASSET)
    assert db.open_tasks(case_id) == []
    assert db.case(case_id).status == CaseStatus.approved  # the last checkpoint is still to come

    _pass_checkpoint(db, case_id, "q4", 12, 31, 100)
    case = db.case(case_id)
    assert case.status == CaseStatus.completed
    assert case.finished_at == db.clock.now()
    assert db.open_tasks(case_id) == [] and _timers(db, case_id) == {}
    done = [r.spec_name for r in _history(db, case_id)]
    signed = [(r.assignee.username, r.status, r.action) for r in _history(db, case_id) if r.spec_name == "leader_decision"]
    assert signed == [("demo_county", TaskStatus.cancelled, None)] + [
        (u, TaskStatus.completed, "approve") for u in LEADERS]  # 3 of 4 agreed: the fourth need not act
    assert done == ["apply", "township_review", "dept_review", *["leader_decision"] * 4, "leader_record",
                    "public_notice", "issue_project_notice",
                    "completion_report", "spending_report_q1", "spending_report_q2", "spending_report_q3",
                    "acceptance", "asset_handover", "spending_report_q4"]
    assert started < case.finished_at


# ----------------------------------------------------------------------------- 2. the diagram deploys, with DI
def test_procedure_is_deployed_for_projects_with_a_shape_or_edge_for_every_element(db):
    from lxml import etree

    with db.uow() as work:
        version = work.definitions.latest(PROCEDURE)
        manifest = work.definitions.manifest(version)
        xml = work.definitions.bpmn_xml(version)
        files = set(work.definitions.files(version))
    assert manifest["subject_kind"] == "project"
    assert manifest["settings"]["notice_days"] == 7
    assert {"dmn/project_screening.dmn", "dmn/spending_checkpoint.dmn"} <= files
    root = etree.fromstring(xml.encode("utf-8"))
    ns = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL", "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI"}
    drawn = {e.get("bpmnElement") for e in root.iterfind(".//bpmndi:BPMNShape", ns)}
    drawn |= {e.get("bpmnElement") for e in root.iterfind(".//bpmndi:BPMNEdge", ns)}
    process = root.find("bpmn:process", ns)
    elements = {e.get("id") for e in process.iter() if e.get("id") and e is not process and etree.QName(e).localname not in (
        "laneSet", "timerEventDefinition", "signalEventDefinition", "conditionExpression", "timeDate",
        "timeDuration", "inputDataItem", "outputDataItem", "property")}  # a 会签's data items and collections are not drawn
    assert elements - drawn == set()
    for edge in root.iterfind(".//bpmndi:BPMNEdge", ns):
        assert len(edge.findall("{http://www.omg.org/spec/DD/20100524/DI}waypoint")) >= 2
    lanes = [lane.get("name") for lane in process.iterfind(".//bpmn:lane", ns)]
    assert lanes == ["村级工作专班 (village_cadre)", "乡镇乡村振兴办 (township_officer)",
                     "县级行业部门 (county_department)", "县领导小组 (county_leader)"]


def test_project_procedure_refuses_a_household_and_a_project_outside_the_jurisdiction(db):
    with db.uow() as work, pytest.raises(ValidationError):
        work.cases.start_case(PROCEDURE, db.household(), db.actor("demo_village"))
    with db.uow() as work, pytest.raises(NotFoundError):
        work.cases.start_case(PROCEDURE, _projects(db)[0], db.actor("demo_other_village"))
    with db.uow() as work, pytest.raises(ForbiddenError):  # the start lane is village_cadre
        work.cases.start_case(PROCEDURE, _projects(db)[0], db.actor("demo_township"))


# ----------------------------------------------------------------------------- 3. reject and return
@pytest.mark.parametrize("level", [1, 2, 3], ids=["township_review", "dept_review", "leader_decision"])
def test_rejection_at_each_review_level_ends_the_case_as_rejected(db, level):
    case_id = _start(db)
    for step, _title, user, _role, _scope, data in REVIEWS[:level]:
        _do(db, case_id, step, user, data=data)
    step, title, user, *_rest = REVIEWS[level]
    if step == "leader_decision":  # 不同意 is one member's vote: two of four make a pass impossible
        user = LEADERS[:2]
    _do(db, case_id, step, user, action="reject", opinion=f"{title}:项目不符合衔接资金支持方向")
    case = db.case(case_id)
    assert case.status == CaseStatus.rejected
    assert case.outcome_reason == f"{title}:项目不符合衔接资金支持方向"
    assert case.finished_at == db.clock.now()
    assert db.open_tasks(case_id) == []
    assert _timers(db, case_id) == {}  # the 入库 deadline timer of 镇初审 is gone too
    last = [r for r in _history(db, case_id) if r.status == TaskStatus.completed][-1]
    assert (last.spec_name, last.action) == (step, "reject")


@pytest.mark.parametrize("level", [1, 2, 3], ids=["township_review", "dept_review", "leader_decision"])
def test_return_goes_back_one_step_and_the_resubmitted_case_continues(db, level):
    case_id = _start(db)
    for step, _title, user, _role, _scope, data in REVIEWS[:level]:
        _do(db, case_id, step, user, data=data)
    step, _title, user, *_rest = REVIEWS[level]
    user = user[0] if isinstance(user, tuple) else user  # one member's 退回 returns the whole 会签
    prev_step, _prev_title, prev_user, prev_role, prev_scope, prev_data = REVIEWS[level - 1]
    with pytest.raises(ValidationError):  # a return needs an opinion
        _do(db, case_id, step, user, action="return", opinion="  ")
    _do(db, case_id, step, user, action="return", opinion="材料不全,请补充")
    assert db.case(case_id).return_count == 1
    assert db.case(case_id).status == CaseStatus.running
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.role_code, row.scope_code) == (prev_step, prev_role, prev_scope)

    resubmitted = {**prev_data, "budget_yuan": 760000} if prev_step == "apply" else prev_data
    _do(db, case_id, prev_step, prev_user, data=resubmitted)
    assert {r.spec_name for r in db.open_tasks(case_id)} == {step}
    for step_, _t, user_, _r, _s, data_ in REVIEWS[level:]:
        _do(db, case_id, step_, user_, data=data_)
    assert set(_open(db, case_id)) == {"public_notice"}


def test_return_to_a_named_earlier_step_from_the_leading_group(db):
    case_id = _start(db)
    for step, _title, user, _role, _scope, data in REVIEWS[:3]:
        _do(db, case_id, step, user, data=data)
    _do(db, case_id, "leader_decision", "demo_county", action="return", opinion="联农带农机制需细化",
        return_to="apply")
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.role_code) == ("apply", "village_cadre")
    _do(db, case_id, "apply", "demo_village", data=APPLICATION)
    for step, _title, user, _role, _scope, data in REVIEWS[1:]:
        _do(db, case_id, step, user, data=data)
    assert set(_open(db, case_id)) == {"public_notice"}
    assert db.case(case_id).return_count == 1


# ----------------------------------------------------------------------------- 4. 公示 and objections
def test_objection_during_the_notice_goes_back_to_posting_and_the_new_notice_runs_its_full_period(db):
    case_id = _start(db)
    _to_notice(db, case_id)
    first = _post(db, case_id)
    first_due = _timers(db, case_id)["notice_expired"].due_at
    db.clock.advance(timedelta(days=3))

    with db.uow() as work, pytest.raises(ForbiddenError):  # objections are recorded by the village
        work.cases.raise_event(case_id, "notice_objection", db.actor("demo_township"), "有群众反映选址占用耕地")
    with db.uow() as work, pytest.raises(ValidationError):
        work.cases.raise_event(case_id, "notice_objection", db.actor("demo_village"), "")
    _raise(db, case_id, "notice_objection", "demo_village", "有群众反映选址占用耕地")

    assert db.case(case_id).status == CaseStatus.running
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.role_code, row.scope_code) == ("public_notice", "village_cadre", VILLAGE)
    assert _timers(db, case_id) == {}
    cancelled = _timers(db, case_id, status=TimerStatus.cancelled)
    assert cancelled["notice_expired"].due_at == first_due
    db.clock.set(first_due + timedelta(hours=1))
    assert _fire(db) == 0  # the old period no longer ends anything

    reposted = {**PUBLIC_NOTICE, "objection_handling": "经核实选址为村集体建设用地,异议不成立"}
    second = _post(db, case_id, reposted)  # a new notice (new serial) for the new period
    assert second != first
    second_due = _timers(db, case_id)["notice_expired"].due_at
    assert second_due == db.clock.now() + timedelta(days=7)
    db.clock.set(second_due - timedelta(minutes=1))
    assert _fire(db) == 0
    assert db.case(case_id).status == CaseStatus.running
    db.clock.set(second_due + timedelta(seconds=1))
    assert _fire(db) == 1
    assert db.case(case_id).status == CaseStatus.approved
    assert set(_open(db, case_id)) == {"completion_report"}
    with db.uow() as work, pytest.raises(ConflictError):  # the notice is over
        work.cases.raise_event(case_id, "notice_objection", db.actor("demo_village"), "迟到的异议")
    history = [(r.spec_name, r.action) for r in _history(db, case_id)]
    assert history.count(("public_notice", "approve")) == 2
    assert history.count(("issue_project_notice", "issue")) == 2


# ----------------------------------------------------------------------------- 5. screening DMN
SCREENING_FAIL = [
    ("rule_no_link", {"project_type": "基础设施", "link_mode": "无"}, "未建立联农带农机制"),
    ("rule_industry_public_only", {"link_mode": "公益受益"},
     "产业发展、村集体经济项目须以务工、入股分红、订单收购、租赁或收益分配等方式带动农户增收"),
    ("rule_industry_public_only_collective", {"project_type": "村集体经济", "link_mode": "公益受益"},
     "产业发展、村集体经济项目须以务工、入股分红、订单收购、租赁或收益分配等方式带动农户增收"),
    ("rule_industry_no_poor", {"poor_households": 0}, "产业发展项目未带动脱贫户(含监测户)"),
    ("rule_year_before", {"project_type": "人居环境", "link_mode": "务工就业", "plan_year": 2025},
     "计划实施年度早于申报年度"),
]
SCREENING_PASS = [
    ("industry_with_dividends", {}),
    ("infrastructure_public_benefit_no_poor", {"project_type": "基础设施", "link_mode": "公益受益",
                                               "poor_households": 0}),
    ("living_environment_work_relief", {"project_type": "人居环境", "link_mode": "务工就业"}),
    ("collective_income_sharing_no_poor", {"project_type": "村集体经济", "link_mode": "收益分配",
                                           "poor_households": 0}),
    ("plan_year_is_this_year", {"plan_year": 2026}),
]


def _workflow(db, case_id: int):
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        version = case.version
        return load_state(case.state, case.serializer_version, work.definitions.specs(version), version.spec_json)


def _completed_data(db, case_id: int, spec_name: str) -> dict:
    """The data of the last completed task of that spec (e.g. a DMN task's outputs)."""
    tasks = [t for t in _workflow(db, case_id).get_tasks(state=TaskState.COMPLETED) if t.task_spec.name == spec_name]
    return tasks[-1].data


@pytest.mark.parametrize(("rule", "change", "note"), SCREENING_FAIL, ids=[r[0] for r in SCREENING_FAIL])
def test_screening_rule_rows_that_fail_end_the_case_as_rejected_with_the_rule_as_reason(db, rule, change, note):
    case_id = _start(db)
    db.clock.advance(timedelta(hours=3))
    _do(db, case_id, "apply", "demo_village", data={**APPLICATION, **change})
    decided = _completed_data(db, case_id, "screen")
    assert (decided["screening_result"], decided["screening_note"]) == ("fail", note)
    case = db.case(case_id)
    assert (case.status, case.outcome_reason, case.finished_at) == (CaseStatus.rejected, note, db.clock.now())
    assert db.open_tasks(case_id) == [] and _timers(db, case_id) == {}
    # a corrected application is a new case for the same project
    again = _start(db)
    _do(db, again, "apply", "demo_village", data=APPLICATION)
    assert set(_open(db, again)) == {"township_review"}


@pytest.mark.parametrize(("name", "change"), SCREENING_PASS, ids=[r[0] for r in SCREENING_PASS])
def test_screening_pass_row_goes_to_the_township_review(db, name, change):
    case_id = _start(db)
    _do(db, case_id, "apply", "demo_village", data={**APPLICATION, **change})
    decided = _completed_data(db, case_id, "screen")
    assert (decided["screening_result"], decided["screening_note"]) == ("pass", "符合入库初筛条件")
    row = _open(db, case_id)["township_review"]
    assert (row.role_code, row.scope_code) == ("township_officer", TOWNSHIP)
    # a 2026 project reaches the township after 31 October 2025: the library deadline has passed, so the
    # county supervises at once
    late = change.get("plan_year") == 2026
    assert set(_open(db, case_id)) == ({"township_review", "library_overdue"} if late else {"township_review"})


# ----------------------------------------------------------------------------- 6. forms validate
@pytest.mark.parametrize(("step", "bad"), [
    ("apply", {"budget_yuan": -1}),
    ("apply", {"poor_households": -3}),
    ("apply", {"project_type": "房地产"}),
    ("apply", {"plan_year": 1999}),
    ("apply", {"link_description": ""}),
])
def test_application_form_refuses_bad_values_and_changes_nothing(db, step, bad):
    case_id = _start(db)
    before = _rows(db, case_id)
    with pytest.raises(ValidationError) as err:
        _do(db, case_id, step, "demo_village", data={**APPLICATION, **bad})
    assert set(err.value.errors) == set(bad)
    assert _rows(db, case_id) == before


@pytest.mark.parametrize("bad", [{"spent_pct": 100.5}, {"spent_pct": -1}, {"spent_amount_yuan": -10}])
@pytest.mark.db_snapshot("implementation_started")
def test_spending_report_refuses_a_share_outside_0_to_100_and_negative_amounts(db, implementation_started, bad):
    case_id = implementation_started.value
    db.clock.set(_due(4, 30) + timedelta(minutes=1))
    assert _fire(db) == 1
    with pytest.raises(ValidationError) as err:
        _do(db, case_id, "spending_report_q1", "demo_village", data={**_report(40), **bad})
    assert set(err.value.errors) == set(bad)
    assert "spending_report_q1" in _open(db, case_id)


# ----------------------------------------------------------------------------- 7. spending checkpoints
def _finish_works(db, case_id: int) -> None:
    """竣工报告, 验收 and 资产移交 on 2027-10-25, before the end-of-November deadline."""
    db.clock.set(datetime(2027, 10, 25, 2, 0, tzinfo=timezone.utc))
    for step, user, data in (("completion_report", "demo_village", COMPLETION), ("acceptance", "demo_dept", ACCEPTANCE),
                             ("asset_handover", "demo_township", ASSET)):
        _do(db, case_id, step, user, data=data)


def _to_checkpoint(db, case_id: int, k: int, works_done: bool = True) -> None:
    """Implementation started and the checkpoints before the k-th met on time; before the last checkpoint
    the works are completed and handed over (unless works_done is False)."""
    _to_implementation(db, case_id)
    for suffix, _label, month, day, target in CHECKPOINTS[:k]:
        _pass_checkpoint(db, case_id, suffix, month, day, target)
    if k == 3 and works_done:
        _finish_works(db, case_id)


def _case_at_checkpoint(db, k: int, works_done: bool = True, project: int = 0) -> int:
    """A project case taken to checkpoint k (``_to_checkpoint``); its id. Built once per session for each
    (k, works_done, project) by snapshot_db: the reviews, the signed 公示 and the checkpoints take seconds."""
    case_id = _start(db, project)
    _to_checkpoint(db, case_id, k, works_done)
    return case_id


@pytest.fixture
def at_checkpoint(snapshot_db, k):
    return snapshot_db(_case_at_checkpoint, k)


@pytest.fixture
def implementation_started(snapshot_db):
    return snapshot_db(_case_at_checkpoint, 0)


@pytest.fixture
def first_checkpoint_met(snapshot_db):
    return snapshot_db(_case_at_checkpoint, 1)


@pytest.fixture
def second_project_first_checkpoint_met(snapshot_db):
    return snapshot_db(_case_at_checkpoint, 1, True, 1)


@pytest.fixture
def works_not_done_before_the_last_checkpoint(snapshot_db):
    return snapshot_db(_case_at_checkpoint, 3, False)


@pytest.mark.parametrize("k", range(4), ids=[c[1] for c in CHECKPOINTS])
@pytest.mark.db_snapshot("at_checkpoint")
def test_each_spending_checkpoint_fires_at_its_date_and_not_before(db, at_checkpoint, k):
    suffix, label, month, day, _target = CHECKPOINTS[k]
    case_id = at_checkpoint.value
    due = _due(month, day)
    timer = _timers(db, case_id)[f"spending_timer_{suffix}"]
    assert (timer.due_at, timer.title) == (due, f"{month}月{day}日支出节点")

    db.clock.set(due - timedelta(minutes=1))
    assert _fire(db) == 0
    assert f"spending_report_{suffix}" not in _open(db, case_id)
    db.clock.set(due + timedelta(seconds=1))  # 23:59 China time on the date has passed
    assert _fire(db) == 1
    row = _open(db, case_id)[f"spending_report_{suffix}"]
    assert (row.title, row.role_code, row.scope_code, row.form_key) == (
        f"资金支出进度报告({label})", "village_cadre", VILLAGE, f"{PROCEDURE}/spending_report")
    assert _timers(db, case_id, status=TimerStatus.fired)[f"spending_timer_{suffix}"].fired_at == db.clock.now()
    assert _fire(db) == 0


@pytest.mark.parametrize("k", range(4), ids=[c[1] for c in CHECKPOINTS])
@pytest.mark.db_snapshot("at_checkpoint")
def test_a_share_exactly_at_the_target_meets_the_checkpoint(db, at_checkpoint, k):
    suffix, label, month, day, target = CHECKPOINTS[k]
    case_id = at_checkpoint.value
    _pass_checkpoint(db, case_id, suffix, month, day, target)
    decided = _completed_data(db, case_id, f"spending_check_{suffix}")
    assert (decided["checkpoint"], decided["spending_on_track"], decided["spending_target"]) == (label, True, target)
    assert not any(name.startswith("spending_supervision") for name in _open(db, case_id))
    if k < 3:
        nxt = CHECKPOINTS[k + 1]
        assert _timers(db, case_id)[f"spending_timer_{nxt[0]}"].due_at == _due(nxt[2], nxt[3])
    else:
        assert "spending_timer_q4" not in _timers(db, case_id)


@pytest.mark.parametrize("k", range(4), ids=[c[1] for c in CHECKPOINTS])
@pytest.mark.db_snapshot("at_checkpoint")
def test_a_missed_checkpoint_escalates_to_county_supervision_and_then_the_next_checkpoint_waits(db, at_checkpoint, k):
    suffix, label, month, day, target = CHECKPOINTS[k]
    case_id = at_checkpoint.value
    _pass_checkpoint(db, case_id, suffix, month, day, target - 0.5)
    decided = _completed_data(db, case_id, f"spending_check_{suffix}")
    assert (decided["checkpoint"], decided["spending_on_track"], decided["spending_target"]) == (label, False, target)
    row = _open(db, case_id)[f"spending_supervision_{suffix}"]
    assert (row.title, row.role_code, row.scope_code, row.form_key) == (
        f"支出进度督导({label}未达{target}%)", "county_department", COUNTY, f"{PROCEDURE}/spending_supervision")
    nxt = f"spending_timer_{CHECKPOINTS[k + 1][0]}" if k < 3 else None
    assert nxt not in _timers(db, case_id)  # the chain waits for the supervision

    with pytest.raises(ValidationError):  # the acknowledgement is required
        _do(db, case_id, f"spending_supervision_{suffix}", "demo_dept", data={**SUPERVISION,
                                                                              "supervision_acknowledged": False})
    _do(db, case_id, f"spending_supervision_{suffix}", "demo_dept", data=SUPERVISION)
    if nxt:
        assert _timers(db, case_id)[nxt].due_at == _due(CHECKPOINTS[k + 1][2], CHECKPOINTS[k + 1][3])
        assert db.case(case_id).status == CaseStatus.approved
    else:  # works handed over in October: the supervised last checkpoint completes the project
        assert db.open_tasks(case_id) == []
        case = db.case(case_id)
        assert (case.status, case.finished_at) == (CaseStatus.completed, db.clock.now())


# ----------------------------------------------------------------------------- 8. deadlines of seed 000
@pytest.mark.db_snapshot("works_not_done_before_the_last_checkpoint")
def test_works_not_completed_by_end_of_november_escalate_to_the_township_and_the_late_report_stays_open(db, works_not_done_before_the_last_checkpoint):
    case_id = works_not_done_before_the_last_checkpoint.value
    due = _due(11, 30)
    assert _timers(db, case_id)["works_deadline"].due_at == due
    db.clock.set(due)
    assert _fire(db) == 0
    db.clock.set(due + timedelta(hours=2))
    assert _fire(db) == 1
    tasks = _open(db, case_id)
    assert set(tasks) == {"completion_report", "works_overdue"}
    assert (tasks["works_overdue"].title, tasks["works_overdue"].role_code, tasks["works_overdue"].scope_code) == (
        "竣工超期督办", "township_officer", TOWNSHIP)
    _do(db, case_id, "works_overdue", "demo_township", data=OVERDUE)
    db.clock.advance(timedelta(days=10))
    _do(db, case_id, "completion_report", "demo_village", data={**COMPLETION, "completion_date": "2027-12-08"})
    _do(db, case_id, "acceptance", "demo_dept", data={**ACCEPTANCE, "acceptance_date": "2027-12-12"})
    _do(db, case_id, "asset_handover", "demo_township", data={**ASSET, "handover_date": "2027-12-20"})
    _pass_checkpoint(db, case_id, "q4", 12, 31, 100)
    assert db.case(case_id).status == CaseStatus.completed
    tasks = [(r.spec_name, r.status) for r in _history(db, case_id)]
    assert ("works_overdue", TaskStatus.completed) in tasks


def test_township_review_still_open_in_november_escalates_to_the_county_and_stays_open(db):
    """当年 11 月前完成次年镇级项目库建设 (seed 000 item 18): for a 2027 project, 镇初审 is due on
    31 October 2026; still open after that, the county department gets 入库超期督办."""
    case_id = _start(db)
    _do(db, case_id, "apply", "demo_village", data=APPLICATION)
    due = _due(10, 31, PLAN_YEAR - 1)
    row = _open(db, case_id)["township_review"]
    assert row.due_at == due  # dueAt: the inbox shows the calendar deadline
    timer = _timers(db, case_id)["library_deadline"]
    assert (timer.due_at, timer.title) == (due, "11月前未完成镇级入库")
    db.clock.set(due)
    assert _fire(db) == 0
    assert set(_open(db, case_id)) == {"township_review"}
    db.clock.set(due + timedelta(seconds=1))
    assert _fire(db) == 1
    tasks = _open(db, case_id)
    assert set(tasks) == {"township_review", "library_overdue"}
    assert (tasks["library_overdue"].title, tasks["library_overdue"].role_code, tasks["library_overdue"].scope_code) == (
        "入库超期督办", "county_department", COUNTY)
    with pytest.raises(ValidationError):  # acknowledgement and note are required
        _do(db, case_id, "library_overdue", "demo_dept", data={})
    _do(db, case_id, "township_review", "demo_township", data=TOWNSHIP_REVIEW)  # the late review goes on
    assert set(_open(db, case_id)) == {"library_overdue", "dept_review"}
    _do(db, case_id, "library_overdue", "demo_dept", data=OVERDUE)
    assert set(_open(db, case_id)) == {"dept_review"}
    assert _timers(db, case_id) == {}


def test_township_review_decided_before_november_cancels_the_library_deadline(db):
    case_id = _start(db)
    _do(db, case_id, "apply", "demo_village", data=APPLICATION)
    db.clock.set(_due(10, 31, PLAN_YEAR - 1) - timedelta(minutes=1))
    _do(db, case_id, "township_review", "demo_township", data=TOWNSHIP_REVIEW)
    assert _timers(db, case_id) == {}
    assert _timers(db, case_id, status=TimerStatus.cancelled)["library_deadline"].fired_at == db.clock.now()
    db.clock.advance(timedelta(days=30))
    assert _fire(db) == 0
    assert set(_open(db, case_id)) == {"dept_review"}


def test_returning_from_a_late_township_review_rearms_the_library_deadline(db):
    case_id = _start(db)
    _do(db, case_id, "apply", "demo_village", data=APPLICATION)
    db.clock.set(datetime(2026, 11, 5, 2, 0, tzinfo=timezone.utc))
    assert _fire(db) == 1
    assert set(_open(db, case_id)) == {"township_review", "library_overdue"}
    _do(db, case_id, "township_review", "demo_township", action="return", opinion="请补充村民代表会议纪要")
    assert set(_open(db, case_id)) == {"apply"}  # the open supervision went with the returned step
    assert _timers(db, case_id) == {}
    _do(db, case_id, "apply", "demo_village", data=APPLICATION)
    # the deadline has passed: the re-armed timer fires at once and the county supervises again
    assert set(_open(db, case_id)) == {"township_review", "library_overdue"}
    assert _fire(db) == 0


@pytest.mark.db_snapshot("first_checkpoint_met")
def test_acceptance_can_return_the_works_for_rework_without_disturbing_the_spending_checkpoints(db, first_checkpoint_met):
    case_id = first_checkpoint_met.value
    waiting_before = {k: v.due_at for k, v in _timers(db, case_id).items()}
    assert set(waiting_before) == {"spending_timer_q2", "works_deadline"}
    _do(db, case_id, "completion_report", "demo_village", data=COMPLETION)
    _do(db, case_id, "acceptance", "demo_dept", action="return", opinion="护栏未完工,整改后重新报验")
    assert set(_open(db, case_id)) == {"completion_report"}
    assert {k: v.due_at for k, v in _timers(db, case_id).items()} == waiting_before
    _do(db, case_id, "completion_report", "demo_village", data=COMPLETION)
    _do(db, case_id, "acceptance", "demo_dept", data=ACCEPTANCE)
    _do(db, case_id, "asset_handover", "demo_township", data=ASSET)
    for suffix, _label, month, day, target in CHECKPOINTS[1:]:
        _pass_checkpoint(db, case_id, suffix, month, day, target)
    assert db.case(case_id).status == CaseStatus.completed


@pytest.mark.db_snapshot("second_project_first_checkpoint_met")
def test_asset_handover_can_return_to_the_acceptance(db, second_project_first_checkpoint_met):
    case_id = second_project_first_checkpoint_met.value
    _do(db, case_id, "completion_report", "demo_village", data=COMPLETION)
    _do(db, case_id, "acceptance", "demo_dept", data=ACCEPTANCE)
    _do(db, case_id, "asset_handover", "demo_township", action="return", opinion="决算金额与台账不符,请核对")
    assert set(_open(db, case_id)) == {"acceptance"}
    assert set(_timers(db, case_id)) == {"spending_timer_q2"}


@pytest.mark.db_snapshot("first_checkpoint_met")
def test_a_return_from_acceptance_to_the_notice_reposts_it_and_restarts_implementation(db, first_checkpoint_met):
    """Returning across the implementation split resets both branches: the notice is posted again, and a
    checkpoint whose date has already passed asks for its report as soon as implementation restarts."""
    case_id = first_checkpoint_met.value
    _do(db, case_id, "completion_report", "demo_village", data=COMPLETION)
    _do(db, case_id, "acceptance", "demo_dept", action="return", opinion="建设内容与公示不符,重新公示",
        return_to="public_notice")
    assert set(_open(db, case_id)) == {"public_notice"}
    assert _timers(db, case_id) == {}
    _post(db, case_id)
    db.clock.advance(timedelta(days=7, seconds=1))
    assert _fire(db) == 1
    assert set(_open(db, case_id)) == {"completion_report", "spending_report_q1"}
    assert set(_timers(db, case_id)) == {"works_deadline"}


# ----------------------------------------------------------------------------- 9. save/restore between steps
def _round_trip(db, case_id: int) -> dict[str, object]:
    """Explicit save/restore between steps (roundtrip_support); a 会签 step's READY instances, one per
    signer, are named without SpiffWorkflow's " [child]" suffix."""
    def check(session, _restored, after):
        open_rows = open_task_names(session, case_id)
        assert sorted(name for name, _d in after["ready"] if name in set(open_rows) | _USER_STEPS) == open_rows

    after = round_trip_case(db, case_id, check, ready_name=lambda t: t.task_spec.name.removesuffix(" [child]"))
    return {"ready": [n for n, _d in after["ready"]], "waiting": [n for n, _v in after["waiting"]],
            "data": {n: json.loads(d) for n, d in after["ready"]}}


_USER_STEPS = {"apply", "township_review", "dept_review", "leader_decision", "leader_record", "public_notice",
               "issue_project_notice", "completion_report",
               "acceptance", "asset_handover"} | {f"spending_report_{c[0]}" for c in CHECKPOINTS}


def test_straight_through_survives_an_explicit_spiff_save_and_restore_between_every_step(db):
    case_id = _start(db, project=1)  # 村道硬化及安全防护项目
    road = {**APPLICATION, "project_type": "基础设施", "link_mode": "务工就业", "budget_yuan": 450000,
            "link_description": "以工代赈,优先吸纳脱贫劳动力务工,提高劳务报酬发放比例"}
    snap = _round_trip(db, case_id)
    assert snap["ready"] == ["apply"]
    assert snap["data"]["apply"]["subject_name"] == "村道硬化及安全防护项目"
    assert snap["data"]["apply"]["subject_project_type"] == "基础设施"

    expected = ["township_review", "dept_review", "leader_decision", "leader_record", "public_notice"]
    for (step, title, user, *_rest, data), nxt in zip(REVIEWS, expected, strict=True):
        _do(db, case_id, step, user, opinion=f"{title}同意", data=road if step == "apply" else data)
        snap = _round_trip(db, case_id)
        assert snap["ready"] == [nxt] * (len(MEMBERS) if nxt == "leader_decision" else 1)
        carried = snap["data"][nxt]
        assert carried["link_mode"] == "务工就业" and carried["plan_year"] == PLAN_YEAR
        assert carried["last_opinion"] == f"{title}同意"
        assert snap["waiting"] == (["library_deadline"] if nxt == "township_review" else [])

    _do(db, case_id, "public_notice", "demo_village", data=PUBLIC_NOTICE)
    snap = _round_trip(db, case_id)
    assert snap["ready"] == ["issue_project_notice"] and snap["waiting"] == []
    db.issue_notices(case_id)
    snap = _round_trip(db, case_id)
    assert snap["ready"] == [] and "notice_expired" in snap["waiting"] and "notice_objection" in snap["waiting"]
    db.clock.advance(timedelta(days=7))
    assert _fire(db) == 0  # the full seven days, not a moment less
    db.clock.advance(timedelta(seconds=1))
    assert _fire(db) == 1
    snap = _round_trip(db, case_id)
    assert snap["ready"] == ["completion_report"]
    assert sorted(snap["waiting"]) == ["spending_timer_q1", "works_deadline"]
    assert db.case(case_id).status == CaseStatus.approved

    for suffix, _label, month, day, target in CHECKPOINTS[:3]:
        db.clock.set(_due(month, day) + timedelta(seconds=1))
        assert _fire(db) == 1
        snap = _round_trip(db, case_id)
        assert sorted(snap["ready"]) == ["completion_report", f"spending_report_{suffix}"]
        _do(db, case_id, f"spending_report_{suffix}", "demo_village", data=_report(target + 1))
        snap = _round_trip(db, case_id)
        assert snap["ready"] == ["completion_report"]

    db.clock.set(datetime(2027, 11, 3, 2, 0, tzinfo=timezone.utc))
    for step, user, data, nxt in (("completion_report", "demo_village", COMPLETION, ["acceptance"]),
                                  ("acceptance", "demo_dept", ACCEPTANCE, ["asset_handover"]),
                                  ("asset_handover", "demo_township", ASSET, [])):
        _do(db, case_id, step, user, data=data)
        snap = _round_trip(db, case_id)
        assert snap["ready"] == nxt
        assert "works_deadline" not in snap["waiting"]
    assert sorted(snap["waiting"]) == ["implementation_join", "spending_timer_q4"]  # the join waits for it

    db.clock.set(_due(12, 31) + timedelta(seconds=1))
    assert _fire(db) == 1
    snap = _round_trip(db, case_id)
    assert snap["ready"] == ["spending_report_q4"]
    _do(db, case_id, "spending_report_q4", "demo_village", data=_report(100))
    snap = _round_trip(db, case_id)
    assert snap == {"ready": [], "waiting": [], "data": {}}
    case = db.case(case_id)
    assert case.status == CaseStatus.completed
    assert case.finished_at == db.clock.now()

"""四步法 exit (monitoring_exit) end to end at engine level: task rows, audit, DMN, timers.

No Flask: everything goes through UnitOfWork services, with the fixed clock moved by hand.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine import demo_data as D
from engine.models import AuditEvent, Case, CaseStatus, TaskRow, TaskStatus, TimerRow, TimerStatus
from engine.serialization import SERIALIZER_VERSION, dump_state, load_state

VILLAGE = "510921107001"  # a village of 宝梵镇, where demo_village holds village_cadre
TOWNSHIP = "510921107000"  # 宝梵镇
COUNTY = "510921000000"  # 蓬溪县

# (bpmn id, title, user, role, scope, dueIn, form key, data)
STEPS = [
    ("household_check", "入户核查", "demo_village", "village_cadre", VILLAGE, timedelta(days=10),
     "monitoring_exit/household_check", D.HOUSEHOLD_CHECK),
    ("village_review", "民主评议及村公示", "demo_village", "village_cadre", VILLAGE, timedelta(days=15),
     "monitoring_exit/village_review", D.VILLAGE_REVIEW),
    ("township_recheck", "镇复核", "demo_township", "township_officer", TOWNSHIP, timedelta(days=5),
     "monitoring_exit/township_recheck", D.TOWNSHIP_RECHECK),
    ("dept_decision", "部门审定", "demo_dept", "county_department", COUNTY, timedelta(days=5),
     "monitoring_exit/dept_decision", D.DEPT_DECISION),
    ("county_announcement", "县级公告", "demo_county", "county_leader", COUNTY, timedelta(days=5),
     "monitoring_exit/county_announcement", D.COUNTY_ANNOUNCEMENT),
]


def _case_tasks(db, case_id: int) -> list[TaskRow]:
    with db.uow() as work:
        return work.inbox.case_tasks(case_id)


def _history(db, case_id: int) -> list[AuditEvent]:
    with db.uow() as work:
        return work.inbox.case_history(case_id)


def _timers(db, case_id: int) -> list[TimerRow]:
    with db.uow() as work:
        return work.inbox.case_timers(case_id)


def _household(category: str) -> dict:
    return {**D.HOUSEHOLD_CHECK, "special_category": category}


def _run_to(db, case_id: int, n_steps: int, household: dict | None = None) -> None:
    """Approve the first n_steps steps of the 四步法 path."""
    for i, (_bpmn_id, _title, user, *_rest, data) in enumerate(STEPS[:n_steps]):
        db.complete(case_id, user, data=household if (i == 0 and household) else data)


# ----------------------------------------------------------------------------- 1. straight through
def test_exit_case_runs_straight_through_the_four_steps_to_exited_with_task_rows_and_audit(db):
    users = {u: db.actor(u).user_id for u in ("demo_village", "demo_township", "demo_dept", "demo_county")}
    case_id = db.start_case()
    started_at = db.clock.now()
    step_started = started_at
    completions: list[tuple[datetime, str]] = []

    for bpmn_id, title, user, role, scope, due_in, form_key, data in STEPS:
        (row,) = db.open_tasks(case_id)
        assert (row.spec_name, row.title) == (bpmn_id, title)
        assert row.role_code == role
        assert row.scope_code == scope
        assert row.region_code == VILLAGE
        assert row.form_key == form_key
        assert row.created_at == step_started
        assert row.due_at == step_started + due_in
        assert row.completed_by_id is None and row.action is None

        db.clock.advance(timedelta(days=1, hours=3))  # work takes a while
        opinion = f"{title}:情况属实,同意。"
        db.complete(case_id, user, opinion=opinion, data=data)
        completions.append((db.clock.now(), opinion))
        step_started = db.clock.now()

    case = db.case(case_id)
    assert case.status == CaseStatus.exited
    assert case.outcome_reason is None
    assert case.finished_at is None  # the six-month follow-up timer is still waiting
    assert case.return_count == 0

    rows = _case_tasks(db, case_id)
    assert [r.spec_name for r in rows] == [s[0] for s in STEPS]
    for r, (_bpmn_id, _title, user, *_rest, data), (done_at, opinion) in zip(rows, STEPS, completions, strict=True):
        assert r.status == TaskStatus.completed
        assert r.completed_by_id == users[user]
        assert r.action == "approve"
        assert r.opinion == opinion
        assert r.completed_at == done_at
        assert r.data == data
    assert db.open_tasks(case_id) == []

    events = _history(db, case_id)
    assert [(e.action, e.step, e.user_id, e.opinion) for e in events] == [
        ("start", None, users["demo_village"], None),
        *[("approve", title, users[user], opinion)
          for (_b, title, user, *_r), (_t, opinion) in zip(STEPS, completions, strict=True)],
    ]
    assert [e.task_id for e in events[1:]] == [r.id for r in rows]
    assert [e.created_at for e in events] == [started_at] + [t for t, _o in completions]
    assert [e.data_diff for e in events[1:]] == [{"data": s[-1]} for s in STEPS]


# ----------------------------------------------------------------------------- 2. explicit save/restore
def _snapshot(workflow) -> dict[str, object]:
    """READY task spec names with their data, and waiting timers with their frozen due time."""
    ready = sorted(
        (t.task_spec.name, json.dumps(t.data, sort_keys=True, ensure_ascii=False, default=str))
        for t in workflow.get_tasks(state=TaskState.READY)
    )
    waiting = sorted(
        (t.task_spec.name, str(t.internal_data.get("event_value")))
        for t in workflow.get_tasks(state=TaskState.WAITING)
    )
    return {"ready": ready, "waiting": waiting}


def _round_trip_case_state(db, case_id: int) -> dict[str, object]:
    """Load the stored workflow, dump and reload it, compare, and store the round-tripped state.

    The next engine step therefore runs on a workflow that went through an explicit
    SpiffWorkflow-level save/restore on top of the service's own database round trip.
    """
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        version = case.version
        specs = work.definitions.specs(version)
        first = load_state(case.state, case.serializer_version, specs, version.spec_json)
        saved = dump_state(first)
        second = load_state(saved, SERIALIZER_VERSION, specs, version.spec_json)
        before, after = _snapshot(first), _snapshot(second)
        assert after == before
        assert dump_state(second) == saved  # restore → save is stable
        assert second.is_completed() == first.is_completed()
        open_names = sorted(r.spec_name for r in work.session.scalars(
            select(TaskRow).where(TaskRow.case_id == case_id, TaskRow.status == TaskStatus.open)))
        assert sorted(name for name, _data in after["ready"]
                      if name in {s[0] for s in STEPS} | {"follow_up_visit"}) == open_names
        case.state = saved
        return {**after, "data": {name: json.loads(data) for name, data in after["ready"]}}


def test_exit_case_survives_an_explicit_spiff_save_and_restore_between_every_step(db):
    case_id = db.start_case()
    snap = _round_trip_case_state(db, case_id)
    assert [n for n, _d in snap["ready"]] == ["household_check"]
    assert snap["data"]["household_check"]["subject_name"] == "张德明"
    assert snap["data"]["household_check"]["region_code"] == VILLAGE

    expected_next = [s[0] for s in STEPS[1:]] + [None]
    for (_bpmn_id, title, user, *_rest, data), nxt in zip(STEPS, expected_next, strict=True):
        db.complete(case_id, user, opinion=f"{title}同意", data=data)
        snap = _round_trip_case_state(db, case_id)
        if nxt is None:
            assert snap["ready"] == []
            assert [n for n, _v in snap["waiting"]] == ["follow_up_timer"]
        else:
            assert [n for n, _d in snap["ready"]] == [nxt]
            carried = snap["data"][nxt]
            # data of every earlier step is carried to the next one
            assert carried["special_category"] == "无"
            assert carried["opinions"][STEPS[0][0]] == f"{STEPS[0][1]}同意"
            assert carried["decision"] == "approve"
            assert carried["last_opinion"] == f"{title}同意"

    assert db.case(case_id).status == CaseStatus.exited
    db.clock.advance(timedelta(days=200))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    snap = _round_trip_case_state(db, case_id)
    assert [n for n, _d in snap["ready"]] == ["follow_up_visit"]
    db.complete(case_id, "demo_village", data=D.FOLLOW_UP_VISIT)
    snap = _round_trip_case_state(db, case_id)
    assert snap == {"ready": [], "waiting": [], "data": {}}
    case = db.case(case_id)
    assert case.status == CaseStatus.exited
    assert case.finished_at == db.clock.now()


# ----------------------------------------------------------------------------- 3. DMN exit_mode
@pytest.mark.parametrize("category", ["低保", "特困", "残疾"])
def test_special_category_household_ends_as_delayed_exit_after_department_decision(db, category):
    case_id = db.start_case()
    _run_to(db, case_id, 3, household=_household(category))
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "dept_decision"
    db.clock.advance(timedelta(days=2))
    db.complete(case_id, "demo_dept", data=D.DEPT_DECISION)

    case = db.case(case_id)
    assert case.status == CaseStatus.delayed_exit
    assert case.finished_at == db.clock.now()
    assert db.open_tasks(case_id) == []
    names = [r.spec_name for r in _case_tasks(db, case_id)]
    assert names == ["household_check", "village_review", "township_recheck", "dept_decision"]
    assert "county_announcement" not in names
    assert _timers(db, case_id) == []
    assert _history(db, case_id)[-1].step == "部门审定"


def test_household_without_special_category_takes_the_normal_path_to_county_announcement(db):
    case_id = db.start_case()
    _run_to(db, case_id, 4, household=_household("无"))
    case = db.case(case_id)
    assert case.status == CaseStatus.running
    assert case.finished_at is None
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.role_code, row.scope_code) == ("county_announcement", "county_leader", COUNTY)


# ----------------------------------------------------------------------------- 6. timers
def test_follow_up_timer_is_due_six_months_after_the_county_announcement_and_fires_once(db):
    case_id = db.start_case()
    _run_to(db, case_id, 4)
    db.clock.advance(timedelta(days=20))  # announced on 2026-09-21T01:00Z
    announced_at = db.clock.now()
    assert announced_at == datetime(2026, 9, 21, 1, 0, tzinfo=timezone.utc)
    db.complete(case_id, "demo_county", data=D.COUNTY_ANNOUNCEMENT)

    (timer,) = _timers(db, case_id)
    due = datetime(2027, 3, 21, 1, 0, tzinfo=timezone.utc)
    assert timer.due_at == due
    assert timer.status == TimerStatus.waiting
    assert (timer.spec_name, timer.title) == ("follow_up_timer", "退出满六个月")
    assert db.open_tasks(case_id) == []

    db.clock.set(due - timedelta(seconds=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
    assert db.open_tasks(case_id) == []
    (timer,) = _timers(db, case_id)
    assert timer.status == TimerStatus.waiting

    db.clock.set(due + timedelta(minutes=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    fired_at = db.clock.now()
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.title, row.role_code, row.scope_code) == (
        "follow_up_visit", "回访", "village_cadre", VILLAGE)
    assert row.due_at == fired_at + timedelta(days=15)
    (timer,) = _timers(db, case_id)
    assert timer.status == TimerStatus.fired
    assert timer.fired_at == fired_at

    db.clock.advance(timedelta(days=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
        assert work.inbox.waiting_timer_count() == 0
    assert len(db.open_tasks(case_id)) == 1

    fired_events = [e for e in _history(db, case_id) if e.action == "timer_fired"]
    assert len(fired_events) == 1
    assert fired_events[0].user_id is None
    assert fired_events[0].created_at == fired_at
    assert fired_events[0].data_diff["timer"] == "退出满六个月"

    db.complete(case_id, "demo_village", data=D.FOLLOW_UP_VISIT)
    case = db.case(case_id)
    assert case.status == CaseStatus.exited
    assert case.finished_at == db.clock.now()
    assert db.open_tasks(case_id) == []

"""四步法 exit (monitoring_exit) end to end at engine level: task rows, audit, DMN, timers.

The path: 入户核查 → 民主评议 → 出具村级公示 (completed by issuing the signed notice) → 村级公示
period (a timer of settings.notice_days from the issue; a 村级公示异议 sends the case back to 民主评议)
→ 镇复核 → 部门审定 → exit_mode DMN (低保/特困/残疾: 缓退) → 县级公告 → 出具县级公告 → 县级公告期
(same timer; a 县级公告期异议 sends it back to 县级公告) → 退出告知 → 已退出 → 回访 after
settings.follow_up_months.

No Flask: everything goes through UnitOfWork services, with the fixed clock moved by hand.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from engine import demo_data as D
from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import AuditEvent, Case, CaseStatus, TaskRow, TaskStatus, TimerRow, TimerStatus, User
from engine.procedures.expressions import CHINA_TZ as CHINA
from tests.integration.notices_support import complete_exit_notice, issue_step_notice
from tests.integration.roundtrip_support import open_task_names, round_trip_case

VILLAGE = "510921107001"  # a village of 宝梵镇, where demo_village holds village_cadre
TOWNSHIP = "510921107000"  # 宝梵镇
COUNTY = "510921000000"  # 蓬溪县

# (bpmn id, title, user, role, scope, dueIn, form key, data)
STEPS = [
    ("household_check", "入户核查", "demo_village", "village_cadre", VILLAGE, timedelta(days=10),
     "monitoring_exit/household_check", D.HOUSEHOLD_CHECK),
    ("village_review", "民主评议", "demo_village", "village_cadre", VILLAGE, timedelta(days=15),
     "monitoring_exit/village_review", D.VILLAGE_REVIEW),
    ("township_recheck", "镇复核", "demo_township", "township_officer", TOWNSHIP, timedelta(days=5),
     "monitoring_exit/township_recheck", D.TOWNSHIP_RECHECK),
    ("dept_decision", "部门审定", "demo_dept", "county_department", COUNTY, timedelta(days=5),
     "monitoring_exit/dept_decision", D.DEPT_DECISION),
    ("county_announcement", "县级公告", "demo_county", "county_leader", COUNTY, timedelta(days=5),
     "monitoring_exit/county_announcement", D.COUNTY_ANNOUNCEMENT),
    ("exit_notice", "退出告知", "demo_village", "village_cadre", VILLAGE, timedelta(days=5),
     "monitoring_exit/exit_notice", D.EXIT_NOTICE),
]
STEP_NAMES = [s[0] for s in STEPS]

# the public-notice period that follows a step: (timer id, timer title, objection event id, event name,
# the role that may object, a demo user holding it, the step that opens when the period runs out)
NOTICES = {
    "village_review": ("village_notice_timer", "村级公示期满", "village_objection", "村级公示异议",
                       "village_cadre", "demo_village", "township_recheck"),
    "county_announcement": ("county_notice_timer", "公告期满", "county_objection", "县级公告期异议",
                            "county_leader", "demo_county", "exit_notice"),
}
# the step that issues the notice starting that period: (bpmn id, title, role, scope, issuer, notice kind)
ISSUANCE = {
    "village_review": ("issue_village_notice", "出具村级公示", "village_cadre", VILLAGE, "demo_village",
                       "village_public_notice"),
    "county_announcement": ("issue_county_notice", "出具县级公告", "county_leader", COUNTY, "demo_county",
                            "county_announcement"),
}
NOTICE = timedelta(days=D.NOTICE_DAYS)


def _case_tasks(db, case_id: int) -> list[TaskRow]:
    with db.uow() as work:
        return work.inbox.case_tasks(case_id)


def _history(db, case_id: int) -> list[AuditEvent]:
    with db.uow() as work:
        return work.inbox.case_history(case_id)


def _timers(db, case_id: int) -> list[TimerRow]:
    with db.uow() as work:
        return work.inbox.case_timers(case_id)


def _waiting_timers(db, case_id: int) -> list[TimerRow]:
    return [t for t in _timers(db, case_id) if t.status == TimerStatus.waiting]


def _waiting_events(db, case_id: int, username: str) -> list[dict]:
    with db.uow() as work:
        return work.cases.waiting_events(work.session.get(Case, case_id), db.actor(username))


def _raise(db, case_id: int, event_id: str, username: str, reason: str | None) -> None:
    with db.uow() as work:
        work.cases.raise_event(case_id, event_id, db.actor(username), reason)


def _household(category: str) -> dict:
    return {**D.HOUSEHOLD_CHECK, "special_category": category}


def _run_to(db, case_id: int, n_steps: int, household: dict | None = None) -> None:
    """Approve the first n_steps steps of the 四步法 path, letting each public-notice period run out."""
    for i, (bpmn_id, _title, user, *_rest, data) in enumerate(STEPS[:n_steps]):
        issue_step_notice(db, case_id, user)  # 退出告知: its 退出告知书 first
        db.complete(case_id, user, data=household if (i == 0 and household) else data)
        if bpmn_id in NOTICES:
            assert db.pass_notice() == 1


def _approve_from(db, case_id: int, bpmn_id: str) -> None:
    """Approve every step from bpmn_id (open now) to 退出告知, letting the notice periods run out."""
    for name, _title, user, *_rest, data in STEPS[STEP_NAMES.index(bpmn_id):]:
        (row,) = db.open_tasks(case_id)
        assert row.spec_name == name
        issue_step_notice(db, case_id, user)  # 退出告知: its 退出告知书 first
        db.complete(case_id, user, data=data)
        if name in NOTICES:
            assert db.pass_notice() == 1


def _notice_is_issued(db, case_id: int, after: str) -> tuple[datetime, TaskRow]:
    """The case just passed step after: its issuance step is open, no period runs yet, a plain approve
    is refused; two hours later the notice is issued, which completes the step. The issue time and row."""
    step_id, title, role, scope, issuer, _kind = ISSUANCE[after]
    opened_at = db.clock.now()
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.title, row.role_code, row.scope_code, row.actions) == (step_id, title, role, scope, "issue")
    assert (row.created_at, row.due_at) == (opened_at, opened_at + timedelta(days=3))
    assert _waiting_timers(db, case_id) == [] and _waiting_events(db, case_id, issuer) == []
    with pytest.raises(ValidationError, match="请在“公示公告”页面出具公示"), db.uow() as work:
        work.cases.complete_task(row.id, db.actor(issuer), "approve", "同意", {})
    db.clock.advance(timedelta(hours=2))
    (serial,) = db.issue_notices(case_id)
    (done,) = [r for r in _case_tasks(db, case_id) if r.id == row.id]
    assert (done.status, done.action, done.completed_by_id, done.completed_at, done.data) == (
        TaskStatus.completed, "issue", db.actor(issuer).user_id, db.clock.now(), {"notice_serial": serial})
    return db.clock.now(), done


def _notice_period_runs_out(db, case_id: int, after: str) -> datetime:
    """The notice of the step after was just issued: check the public-notice period, then let it run out.

    Returns the moment the period's timer fired.
    """
    timer_id, timer_title, event_id, event_name, role, username, next_step = NOTICES[after]
    approved_at = db.clock.now()  # the issue
    # nothing to do for anyone while the notice is up; the next level's task does not exist yet
    assert db.open_tasks(case_id) == []
    assert next_step not in {r.spec_name for r in _case_tasks(db, case_id)}
    case = db.case(case_id)
    assert (case.status, case.finished_at) == (CaseStatus.running, None)
    (timer,) = _waiting_timers(db, case_id)
    assert (timer.spec_name, timer.title) == (timer_id, timer_title)
    assert timer.due_at == approved_at + NOTICE  # exactly settings.notice_days after the notice was issued
    assert _waiting_events(db, case_id, username) == [
        {"event_id": event_id, "name": event_name, "role": role, "can_raise": True}]

    db.clock.set(timer.due_at - timedelta(seconds=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
    assert db.open_tasks(case_id) == []

    db.clock.set(timer.due_at + timedelta(minutes=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    fired_at = db.clock.now()
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == next_step
    (done,) = [t for t in _timers(db, case_id) if t.id == timer.id]
    assert (done.status, done.fired_at) == (TimerStatus.fired, fired_at)
    assert _waiting_events(db, case_id, username) == []  # no objection once the period is over
    return fired_at


# ----------------------------------------------------------------------------- 1. straight through
def test_exit_case_runs_straight_through_the_four_steps_and_both_notice_periods_to_exited(db):
    users = {u: db.actor(u).user_id for u in ("demo_village", "demo_township", "demo_dept", "demo_county")}
    with db.uow() as work:
        manifest = work.definitions.manifest(work.definitions.latest("monitoring_exit"))
    assert manifest["settings"]["notice_days"] == D.NOTICE_DAYS == 7
    assert manifest["settings"]["follow_up_months"] == 6
    case_id = db.start_case()
    started_at = db.clock.now()
    step_started = started_at
    completions: list[tuple[datetime, str]] = []
    # (action, step, user, opinion, time, data_diff) of every audit event after the start
    expected_events: list[tuple] = []

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
        signature = db.sign_if_asked(row.id, user)  # 入户核查: the household signs first
        if signature is not None:
            expected_events.append(("attachment_added", title, users[user], None, db.clock.now(), {
                "file": f"农户签字-{title}-{db.clock.now().astimezone(CHINA).strftime('%Y%m%d-%H%M%S')}.png",
                "sha256": hashlib.sha256(D.signature_png(row.id)).hexdigest(), "kind": "signature",
                "attachment_id": signature}))
        serial = issue_step_notice(db, case_id, user)  # 退出告知: the village issues the 退出告知书 first
        if serial is not None:
            expected_events.append(("notice_issued", "退出告知书", users[user], None, db.clock.now(), serial))
        db.complete(case_id, user, opinion=opinion, data=data, sign=False)
        completions.append((db.clock.now(), opinion))
        expected_events.append(("approve", title, users[user], opinion, db.clock.now(), {"data": data}))
        step_started = db.clock.now()
        if bpmn_id in NOTICES:
            issued_at, issuance = _notice_is_issued(db, case_id, bpmn_id)
            expected_events.append(("notice_issued", issuance.title, issuance.completed_by_id, None, issued_at,
                                    issuance.data["notice_serial"]))
            fired_at = _notice_period_runs_out(db, case_id, bpmn_id)
            expected_events.append(("timer_fired", None, None, None, fired_at, {"timer": NOTICES[bpmn_id][1]}))
            step_started = fired_at  # the next level's task opens when the period ends

    case = db.case(case_id)
    assert case.status == CaseStatus.exited
    assert case.outcome_reason is None
    assert case.finished_at is None  # the six-month follow-up timer is still waiting
    assert case.return_count == 0

    all_rows = _case_tasks(db, case_id)
    assert [r.spec_name for r in all_rows] == [
        "household_check", "village_review", "issue_village_notice", "township_recheck", "dept_decision",
        "county_announcement", "issue_county_notice", "exit_notice"]
    rows = [r for r in all_rows if r.action != "issue"]
    for r, (_bpmn_id, _title, user, *_rest, data), (done_at, opinion) in zip(rows, STEPS, completions, strict=True):
        assert r.status == TaskStatus.completed
        assert r.completed_by_id == users[user]
        assert r.action == "approve"
        assert r.opinion == opinion
        assert r.completed_at == done_at
        assert r.data == data
    assert db.open_tasks(case_id) == []

    events = _history(db, case_id)
    assert [(e.action, e.step, e.user_id, e.opinion, e.created_at,
             e.data_diff["serial"] if e.action == "notice_issued" else e.data_diff) for e in events] == [
        ("start", None, users["demo_village"], None, started_at, {"data": {}}),
        *expected_events,
    ]
    assert [e.task_id for e in events if e.action == "approve"] == [r.id for r in rows]
    # the two issuance steps' notices name their step; the 退出告知书, issued at 退出告知 but not completing it, none
    assert [e.task_id for e in events if e.action == "notice_issued"] == [
        *(r.id for r in all_rows if r.action == "issue"), None]
    assert all(e.task_id is None for e in events if e.action == "timer_fired")

    # the 已退出 mark came with 退出告知; six months later the 回访
    exit_noticed_at = completions[-1][0]
    assert exit_noticed_at == datetime(2026, 9, 21, 23, 2, tzinfo=timezone.utc)  # two notices issued 2 h after their step
    assert [(t.spec_name, t.status) for t in _timers(db, case_id)] == [
        ("village_notice_timer", TimerStatus.fired),
        ("county_notice_timer", TimerStatus.fired),
        ("follow_up_timer", TimerStatus.waiting),
    ]
    assert _timers(db, case_id)[-1].due_at == datetime(2027, 3, 21, 23, 2, tzinfo=timezone.utc)


# ----------------------------------------------------------------------------- 2. explicit save/restore
def _round_trip_case_state(db, case_id: int) -> dict[str, object]:
    """Explicit SpiffWorkflow-level save/restore (roundtrip_support) on top of the service's own database
    round trip; the restored READY user tasks are the open task rows."""
    user_steps = {s[0] for s in STEPS} | {"follow_up_visit"} | {i[0] for i in ISSUANCE.values()}

    def check(session, _restored, after):
        assert sorted(name for name, _data in after["ready"] if name in user_steps) == open_task_names(session, case_id)

    after = round_trip_case(db, case_id, check)
    return {**after, "data": {name: json.loads(data) for name, data in after["ready"]}}


def test_exit_case_survives_an_explicit_spiff_save_and_restore_between_every_step(db):
    """Including both public-notice waits: the waiting timer and objection event survive the round
    trip, and the timer then fires from the restored state."""
    case_id = db.start_case()
    snap = _round_trip_case_state(db, case_id)
    assert [n for n, _d in snap["ready"]] == ["household_check"]
    assert snap["data"]["household_check"]["subject_name"] == "张德明"
    assert snap["data"]["household_check"]["region_code"] == VILLAGE

    expected_next = STEP_NAMES[1:] + [None]
    for (bpmn_id, title, user, *_rest, data), nxt in zip(STEPS, expected_next, strict=True):
        db.clock.advance(timedelta(hours=2))
        issue_step_notice(db, case_id, user)  # 退出告知: its 退出告知书 first
        db.complete(case_id, user, opinion=f"{title}同意", data=data)
        snap = _round_trip_case_state(db, case_id)
        if bpmn_id in NOTICES:
            timer_id, _t, event_id, *_rest2 = NOTICES[bpmn_id]
            assert [n for n, _d in snap["ready"]] == [ISSUANCE[bpmn_id][0]] and snap["waiting"] == []
            db.clock.advance(timedelta(hours=1))
            db.issue_notices(case_id)
            snap = _round_trip_case_state(db, case_id)
            assert snap["ready"] == []
            due = db.clock.now() + NOTICE
            assert snap["waiting"] == sorted([(timer_id, due.isoformat()), (event_id, "None")])
            (timer,) = _waiting_timers(db, case_id)
            assert timer.due_at == due
            assert db.pass_notice() == 1  # fires on the round-tripped state
            snap = _round_trip_case_state(db, case_id)
        if nxt is None:
            assert snap["ready"] == []
            assert [n for n, _v in snap["waiting"]] == ["follow_up_timer"]
        else:
            assert snap["waiting"] == []
            assert [n for n, _d in snap["ready"]] == [nxt]
            carried = snap["data"][nxt]
            # data of every earlier step is carried to the next one, through the notice periods too
            assert carried["special_category"] == "无"
            assert carried["opinions"][STEPS[0][0]] == f"{STEPS[0][1]}同意"
            if STEP_NAMES.index(nxt) > STEP_NAMES.index("village_review"):
                assert carried["review_result"] == D.VILLAGE_REVIEW["review_result"]
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
    assert names == ["household_check", "village_review", "issue_village_notice", "township_recheck", "dept_decision"]
    assert "county_announcement" not in names and "exit_notice" not in names
    # only the 村级公示 period ran: no 县级公告期, no follow-up
    assert [(t.spec_name, t.status) for t in _timers(db, case_id)] == [("village_notice_timer", TimerStatus.fired)]
    assert _history(db, case_id)[-1].step == "部门审定"
    assert _waiting_events(db, case_id, "demo_county") == []


def test_household_without_special_category_takes_the_normal_path_to_county_announcement(db):
    case_id = db.start_case()
    _run_to(db, case_id, 4, household=_household("无"))
    case = db.case(case_id)
    assert case.status == CaseStatus.running
    assert case.finished_at is None
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.role_code, row.scope_code) == ("county_announcement", "county_leader", COUNTY)
    assert _waiting_timers(db, case_id) == []


# ----------------------------------------------------------------------------- 公示异议
def _fingerprint(db, case_id: int):
    """Everything a refused objection must leave untouched."""
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        tasks = [(r.id, r.spec_name, r.status) for r in work.inbox.case_tasks(case_id)]
        timers = [(t.id, t.status, t.due_at) for t in work.inbox.case_timers(case_id)]
        audit = [e.id for e in work.inbox.case_history(case_id)]
        return case.status, case.lock_version, case.state, tasks, timers, audit


def _new_task_notes(db, username: str, task_id: int) -> list[str]:
    with db.uow() as work:
        user_id = work.session.scalar(select(User.id).where(User.username == username))
        return [n.title for n in work.notifications.recent(user_id) if n.task_id == task_id and n.kind == "task"]


def test_a_village_notice_objection_sends_the_case_back_to_village_review_and_cancels_the_notice_timer(db):
    village = db.actor("demo_village")
    case_id = db.start_case()
    _run_to(db, case_id, 1)
    db.clock.advance(timedelta(days=1))
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    db.clock.advance(timedelta(hours=5))  # the notice is issued later the same day: the period starts then
    db.issue_notices(case_id)
    issued_at = db.clock.now()
    (timer,) = _waiting_timers(db, case_id)
    assert (timer.spec_name, timer.due_at) == ("village_notice_timer", issued_at + NOTICE)
    _round_trip_case_state(db, case_id)  # the objection is raised on an explicitly restored state

    db.clock.advance(timedelta(days=3))  # an objection on the fourth day of the notice
    reason = "村民反映该户家庭收入核算不实"
    _raise(db, case_id, "village_objection", "demo_village", reason)
    objected_at = db.clock.now()

    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.title, row.role_code, row.scope_code, row.form_key) == (
        "village_review", "民主评议", "village_cadre", VILLAGE, "monitoring_exit/village_review")
    assert row.created_at == objected_at
    assert row.due_at == objected_at + timedelta(days=15)
    assert [r.spec_name for r in _case_tasks(db, case_id)] == [
        "household_check", "village_review", "issue_village_notice", "village_review"]
    assert _new_task_notes(db, "demo_village", row.id) == ["新待办:民主评议"]
    (cancelled,) = _timers(db, case_id)
    assert (cancelled.id, cancelled.status) == (timer.id, TimerStatus.cancelled)
    case = db.case(case_id)
    assert (case.status, case.finished_at) == (CaseStatus.running, None)
    last = _history(db, case_id)[-1]
    assert (last.action, last.step, last.user_id, last.opinion, last.data_diff, last.created_at) == (
        "event", None, village.user_id, reason, {"event": "村级公示异议"}, objected_at)
    snap = _round_trip_case_state(db, case_id)
    assert [n for n, _d in snap["ready"]] == ["village_review"]
    assert snap["waiting"] == []
    assert snap["data"]["village_review"]["last_event_reason"] == reason
    assert _waiting_events(db, case_id, "demo_village") == []

    # the cancelled period never fires, not even long after its due time
    db.clock.advance(timedelta(days=10))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
    assert [r.id for r in db.open_tasks(case_id)] == [row.id]

    # a new 民主评议 and a new notice (the first one covers the case, but the step is open again)
    # start a fresh, full 村级公示 period
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["issue_village_notice"]
    db.clock.advance(timedelta(hours=1))
    db.issue_notices(case_id)
    reissued_at = db.clock.now()
    (fresh,) = _waiting_timers(db, case_id)
    assert fresh.id != timer.id
    assert (fresh.spec_name, fresh.due_at) == ("village_notice_timer", reissued_at + NOTICE)
    assert db.open_tasks(case_id) == []
    assert db.pass_notice() == 1
    _approve_from(db, case_id, "township_recheck")
    assert db.case(case_id).status == CaseStatus.exited
    assert [(t.spec_name, t.status) for t in _timers(db, case_id)] == [
        ("village_notice_timer", TimerStatus.cancelled),
        ("village_notice_timer", TimerStatus.fired),
        ("county_notice_timer", TimerStatus.fired),
        ("follow_up_timer", TimerStatus.waiting),
    ]


def test_a_county_notice_objection_sends_the_case_back_to_county_announcement_and_cancels_the_notice_timer(db):
    county = db.actor("demo_county")
    case_id = db.start_case()
    _run_to(db, case_id, 4)
    db.complete(case_id, "demo_county", data=D.COUNTY_ANNOUNCEMENT)
    db.issue_notices(case_id)
    announced_at = db.clock.now()
    (timer,) = _waiting_timers(db, case_id)
    assert (timer.spec_name, timer.title, timer.due_at) == ("county_notice_timer", "公告期满", announced_at + NOTICE)
    _round_trip_case_state(db, case_id)

    db.clock.advance(timedelta(days=6, hours=23))  # the last hour of the period still counts
    reason = "公告期内收到实名举报,需重新审定公告"
    _raise(db, case_id, "county_objection", "demo_county", reason)
    objected_at = db.clock.now()

    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.title, row.role_code, row.scope_code) == (
        "county_announcement", "县级公告", "county_leader", COUNTY)
    assert (row.created_at, row.due_at) == (objected_at, objected_at + timedelta(days=5))
    assert _new_task_notes(db, "demo_county", row.id) == ["新待办:县级公告"]
    names = [r.spec_name for r in _case_tasks(db, case_id)]
    assert names == ["household_check", "village_review", "issue_village_notice", "township_recheck", "dept_decision",
                     "county_announcement", "issue_county_notice", "county_announcement"]  # no 退出告知 was ever opened
    assert [(t.spec_name, t.status) for t in _timers(db, case_id)] == [
        ("village_notice_timer", TimerStatus.fired),
        ("county_notice_timer", TimerStatus.cancelled),  # and no follow-up timer either
    ]
    case = db.case(case_id)
    assert (case.status, case.finished_at) == (CaseStatus.running, None)
    last = _history(db, case_id)[-1]
    assert (last.action, last.user_id, last.opinion, last.data_diff) == (
        "event", county.user_id, reason, {"event": "县级公告期异议"})
    snap = _round_trip_case_state(db, case_id)
    assert [n for n, _d in snap["ready"]] == ["county_announcement"]
    assert snap["data"]["county_announcement"]["last_event_reason"] == reason

    db.clock.advance(timedelta(days=2))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0  # the cancelled period's due time has passed
    assert [r.id for r in db.open_tasks(case_id)] == [row.id]

    db.complete(case_id, "demo_county", data=D.COUNTY_ANNOUNCEMENT)
    db.issue_notices(case_id)
    (fresh,) = _waiting_timers(db, case_id)
    assert (fresh.spec_name, fresh.due_at) == ("county_notice_timer", db.clock.now() + NOTICE)
    assert db.open_tasks(case_id) == []
    assert db.pass_notice() == 1
    (notice,) = db.open_tasks(case_id)
    assert (notice.spec_name, notice.role_code, notice.scope_code) == ("exit_notice", "village_cadre", VILLAGE)
    complete_exit_notice(db, case_id)
    assert db.case(case_id).status == CaseStatus.exited


def _in_village_notice(db) -> int:
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    db.issue_notices(case_id)
    return case_id


@pytest.fixture
def in_village_notice(snapshot_db):
    """The database with one case in its 村级公示 (its notice rendered and signed), built once per session."""
    return snapshot_db(_in_village_notice)


REFUSED_OBJECTIONS = {
    "no_reason": ("demo_village", "village_objection", None, ValidationError),
    "blank_reason": ("demo_village", "village_objection", "   ", ValidationError),
    "township_officer": ("demo_township", "village_objection", "镇里有异议", ForbiddenError),
    "county_leader_at_village_notice": ("demo_county", "village_objection", "县里有异议", ForbiddenError),
    "other_township_village": ("demo_other_village", "village_objection", "外村异议", NotFoundError),
    "county_event_during_village_notice": ("demo_county", "county_objection", "县级公告期异议", ConflictError),
    "a_timer_is_not_an_event": ("demo_village", "village_notice_timer", "提前结束公示", ConflictError),
}


@pytest.mark.db_snapshot("in_village_notice")
@pytest.mark.parametrize(("username", "event_id", "reason", "error"), list(REFUSED_OBJECTIONS.values()),
                         ids=list(REFUSED_OBJECTIONS))
def test_a_refused_objection_changes_nothing_and_the_notice_period_still_runs_out(db, in_village_notice, username,
                                                                                  event_id, reason, error):
    case_id = in_village_notice.value
    before = _fingerprint(db, case_id)
    with pytest.raises(error) as info:
        _raise(db, case_id, event_id, username, reason)
    if error is ValidationError:
        assert "opinion" in info.value.errors
    assert _fingerprint(db, case_id) == before
    assert db.pass_notice() == 1
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["township_recheck"]


@pytest.mark.db_snapshot("in_village_notice")
def test_an_objection_after_the_notice_period_ran_out_is_a_conflict(db, in_village_notice):
    case_id = in_village_notice.value
    assert db.pass_notice() == 1
    before = _fingerprint(db, case_id)
    with pytest.raises(ConflictError):
        _raise(db, case_id, "village_objection", "demo_village", "公示期满后才提出")
    assert _fingerprint(db, case_id) == before
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["township_recheck"]


# ----------------------------------------------------------------------------- 6. timers
def test_follow_up_timer_is_due_six_months_after_the_exit_notice_and_fires_once(db):
    case_id = db.start_case()
    _run_to(db, case_id, 5)  # through 县级公告 and its notice period: 退出告知 is open
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "exit_notice"
    assert [t.spec_name for t in _timers(db, case_id)] == ["village_notice_timer", "county_notice_timer"]
    db.clock.set(datetime(2026, 9, 21, 1, 0, tzinfo=timezone.utc))  # the household is told on 2026-09-21
    complete_exit_notice(db, case_id)
    assert db.case(case_id).status == CaseStatus.exited

    (timer,) = _waiting_timers(db, case_id)
    due = datetime(2027, 3, 21, 1, 0, tzinfo=timezone.utc)
    assert timer.due_at == due
    assert (timer.spec_name, timer.title) == ("follow_up_timer", "退出满六个月")
    assert db.open_tasks(case_id) == []

    db.clock.set(due - timedelta(seconds=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
    assert db.open_tasks(case_id) == []
    (timer,) = _waiting_timers(db, case_id)

    db.clock.set(due + timedelta(minutes=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    fired_at = db.clock.now()
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.title, row.role_code, row.scope_code) == (
        "follow_up_visit", "回访", "village_cadre", VILLAGE)
    assert row.due_at == fired_at + timedelta(days=15)
    timer = _timers(db, case_id)[-1]
    assert timer.spec_name == "follow_up_timer"
    assert timer.status == TimerStatus.fired
    assert timer.fired_at == fired_at

    db.clock.advance(timedelta(days=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
        assert work.inbox.waiting_timer_count() == 0
    assert len(db.open_tasks(case_id)) == 1

    fired_events = [e for e in _history(db, case_id) if e.action == "timer_fired"]
    assert [e.data_diff["timer"] for e in fired_events] == ["村级公示期满", "公告期满", "退出满六个月"]
    assert fired_events[-1].user_id is None
    assert fired_events[-1].created_at == fired_at

    db.complete(case_id, "demo_village", data=D.FOLLOW_UP_VISIT)
    case = db.case(case_id)
    assert case.status == CaseStatus.exited
    assert case.finished_at == db.clock.now()
    assert db.open_tasks(case_id) == []

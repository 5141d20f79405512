"""Reject and return at engine level: reasons, reopened steps, guards, and many return rounds.

The 四步法 path has two public-notice periods (村级公示 after 民主评议, 县级公告期 after 县级公告);
the helpers let them run out with ``db.pass_notice()``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, select

from engine import demo_data as D
from engine.core.errors import ValidationError
from engine.models import AuditEvent, Case, CaseStatus, TaskRow, TaskStatus, TimerRow, TimerStatus
from engine.procedures.serialization import load_state
from tests.integration.cases_support import exit_case_at
from tests.integration.notices_support import issue_step_notice

VILLAGE = "510921107001"
TOWNSHIP = "510921107000"
COUNTY = "510921000000"

# (bpmn id, user, data) in path order
PATH = [
    ("household_check", "demo_village", D.HOUSEHOLD_CHECK),
    ("village_review", "demo_village", D.VILLAGE_REVIEW),
    ("township_recheck", "demo_township", D.TOWNSHIP_RECHECK),
    ("dept_decision", "demo_dept", D.DEPT_DECISION),
    ("county_announcement", "demo_county", D.COUNTY_ANNOUNCEMENT),
    ("exit_notice", "demo_village", D.EXIT_NOTICE),
]
NOTICE_AFTER = {"village_review": "village_notice_timer", "county_announcement": "county_notice_timer"}


@pytest.fixture
def at_bpmn_id(snapshot_db, bpmn_id):
    """The Snapshot of an exit case waiting at the test's bpmn_id (``exit_case_at``: the steps before it approved,
    the notice periods run out), built once per step and session."""
    return snapshot_db(exit_case_at, [name for name, _user, _data in PATH].index(bpmn_id))


def _advance_to(db, case_id: int, bpmn_id: str) -> TaskRow:
    """Approve steps from the open one on (letting the notice periods run out) until bpmn_id is the
    open task; return its row."""
    names = [name for name, _user, _data in PATH]
    while True:
        (row,) = db.open_tasks(case_id)
        if row.spec_name == bpmn_id:
            return row
        assert names.index(row.spec_name) < names.index(bpmn_id), f"{bpmn_id} never opened"
        _name, user, data = PATH[names.index(row.spec_name)]
        db.complete(case_id, user, data=data)
        if row.spec_name in NOTICE_AFTER:
            assert db.pass_notice() == 1


def _approve_from(db, case_id: int, bpmn_id: str) -> None:
    """Approve every step from bpmn_id (open now) to the end of the path, in order."""
    names = [name for name, _user, _data in PATH]
    for name, user, data in PATH[names.index(bpmn_id):]:
        (row,) = db.open_tasks(case_id)
        assert row.spec_name == name
        issue_step_notice(db, case_id, user)  # 退出告知: its 退出告知书 first
        db.complete(case_id, user, data=data)
        if name in NOTICE_AFTER:
            assert [r.actions for r in db.open_tasks(case_id)] == ["issue"]  # the notice is issued first
            assert db.pass_notice() == 1


def _waiting_timers(db, case_id: int) -> list[TimerRow]:
    with db.uow() as work:
        return [t for t in work.inbox.case_timers(case_id) if t.status == TimerStatus.waiting]


def _raise(db, case_id: int, event_id: str, username: str, reason: str) -> None:
    with db.uow() as work:
        work.cases.raise_event(case_id, event_id, db.actor(username), reason)


def _ready(db, case_id: int) -> dict[str, dict]:
    """READY tasks of the stored workflow: spec name → task data."""
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        wf = load_state(case.state, case.serializer_version, work.definitions.specs(case.version),
                        case.version.spec_json)
        return {t.task_spec.name: dict(t.data) for t in wf.get_tasks(state=TaskState.READY)}


def _max_depth(db, case_id: int) -> int:
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        wf = load_state(case.state, case.serializer_version, work.definitions.specs(case.version),
                        case.version.spec_json)
        return max(t.depth for t in wf.get_tasks())


def _fingerprint(db, case_id: int):
    """Everything a refused action must leave untouched."""
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        tasks = [(r.id, r.spec_name, r.status, r.action, r.opinion)
                 for r in work.inbox.case_tasks(case_id)]
        audit = [e.id for e in work.inbox.case_history(case_id)]
        return (case.status, case.lock_version, case.state, case.return_count, case.outcome_reason, tasks, audit)


def _complete(db, row_id: int, username: str, action: str, opinion, data=None, **kwargs):
    with db.uow() as work:
        return work.cases.complete_task(row_id, db.actor(username), action, opinion, data or {}, **kwargs)


# ----------------------------------------------------------------------------- 4. reject
REJECT_LEVELS = [
    ("village_review", "demo_village", "民主评议"),
    ("township_recheck", "demo_township", "镇复核"),
    ("dept_decision", "demo_dept", "部门审定"),
    ("county_announcement", "demo_county", "县级公告"),
]


@pytest.mark.parametrize(("bpmn_id", "username", "title"), REJECT_LEVELS, ids=[r[0] for r in REJECT_LEVELS])
@pytest.mark.db_snapshot("at_bpmn_id")
def test_reject_at_a_review_level_ends_the_case_as_rejected_with_the_opinion_as_reason(
        db, at_bpmn_id, bpmn_id, username, title):
    case_id = at_bpmn_id.value
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == bpmn_id
    db.clock.advance(timedelta(days=3))
    reason = f"{title}:收入核算有误,不予退出"
    _complete(db, row.id, username, "reject", reason)

    case = db.case(case_id)
    assert case.status == CaseStatus.rejected
    assert case.outcome_reason == reason
    assert case.finished_at == db.clock.now()
    assert db.open_tasks(case_id) == []
    with db.uow() as work:
        done = work.session.get(TaskRow, row.id)
        assert (done.status, done.action, done.opinion) == (TaskStatus.completed, "reject", reason)
        assert done.completed_by_id == db.actor(username).user_id
        assert work.session.scalar(select(func.count(TimerRow.id)).where(
            TimerRow.case_id == case_id, TimerRow.status == TimerStatus.waiting)) == 0
        last = work.inbox.case_history(case_id)[-1]
        assert (last.action, last.step, last.opinion, last.user_id) == (
            "reject", title, reason, db.actor(username).user_id)
    assert _ready(db, case_id) == {}

    # the case is over: nothing fires, nothing reopens later
    db.clock.advance(timedelta(days=400))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
    assert db.open_tasks(case_id) == []


@pytest.mark.parametrize("opinion", [None, "", "   "])
@pytest.mark.db_snapshot("at_township_recheck")
def test_reject_without_an_opinion_is_refused_and_changes_nothing(db, at_township_recheck, opinion):
    case_id = at_township_recheck.value
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "township_recheck"
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError) as info:
        _complete(db, row.id, "demo_township", "reject", opinion)
    assert "opinion" in info.value.errors
    assert _fingerprint(db, case_id) == before
    assert db.case(case_id).status == CaseStatus.running


@pytest.mark.parametrize("action", ["reject", "return"])
@pytest.mark.parametrize("bpmn_id", ["household_check", "exit_notice"])  # actions: approve
@pytest.mark.db_snapshot("at_bpmn_id")
def test_reject_or_return_is_refused_at_a_step_that_does_not_allow_it(db, at_bpmn_id, bpmn_id, action):
    case_id = at_bpmn_id.value
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == bpmn_id
    assert row.actions == "approve"
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError) as info:
        _complete(db, row.id, "demo_village", action, "不同意")
    assert "action" in info.value.errors
    assert _fingerprint(db, case_id) == before


# ----------------------------------------------------------------------------- 5. return
@pytest.mark.db_snapshot("at_township_recheck")
def test_return_one_step_reopens_the_previous_step_for_its_lane_with_the_reason_then_resubmit_proceeds(
        db, at_township_recheck):
    case_id = at_township_recheck.value
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "township_recheck"
    db.clock.advance(timedelta(days=1))
    reason = "评议材料缺少签字页,请补充"
    _complete(db, row.id, "demo_township", "return", reason)

    (reopened,) = db.open_tasks(case_id)
    assert reopened.spec_name == "village_review"
    assert (reopened.role_code, reopened.scope_code) == ("village_cadre", VILLAGE)
    assert reopened.created_at == db.clock.now()
    assert reopened.due_at == db.clock.now() + timedelta(days=15)
    ready = _ready(db, case_id)
    assert list(ready) == ["village_review"]
    assert ready["village_review"]["return_reason"] == reason
    assert ready["village_review"]["returned_from"] == "镇复核"
    case = db.case(case_id)
    assert (case.status, case.return_count) == (CaseStatus.running, 1)
    with db.uow() as work:
        returned = work.session.get(TaskRow, row.id)
        assert (returned.status, returned.action, returned.opinion) == (TaskStatus.completed, "return", reason)
        last = work.inbox.case_history(case_id)[-1]
        assert (last.action, last.step, last.opinion) == ("return", "镇复核", reason)
        assert work.cases.return_targets(reopened) == [("household_check", "入户核查")]

    # the village resubmits and issues a new notice (the first one still covers the case): a fresh, full
    # 村级公示 period runs before the case goes back up to 镇复核
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["issue_village_notice"]
    db.issue_notices(case_id)
    assert db.open_tasks(case_id) == []
    (notice,) = _waiting_timers(db, case_id)
    assert (notice.spec_name, notice.due_at) == ("village_notice_timer", db.clock.now() + timedelta(days=D.NOTICE_DAYS))
    assert db.pass_notice() == 1
    (again,) = db.open_tasks(case_id)
    assert (again.spec_name, again.role_code, again.scope_code) == ("township_recheck", "township_officer", TOWNSHIP)
    assert again.id != row.id
    _approve_from(db, case_id, "township_recheck")
    assert db.case(case_id).status == CaseStatus.exited


@pytest.mark.db_snapshot("at_dept_decision")
def test_return_to_household_check_from_department_decision_goes_back_to_the_village(db, at_dept_decision):
    case_id = at_dept_decision.value
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "dept_decision"
    reason = "收入数据与行业部门数据不一致,请重新入户核查"
    _complete(db, row.id, "demo_dept", "return", reason, return_to="household_check")

    (reopened,) = db.open_tasks(case_id)
    assert (reopened.spec_name, reopened.role_code, reopened.scope_code) == (
        "household_check", "village_cadre", VILLAGE)
    ready = _ready(db, case_id)
    assert list(ready) == ["household_check"]
    assert ready["household_check"]["return_reason"] == reason
    assert ready["household_check"]["returned_from"] == "部门审定"
    assert db.case(case_id).return_count == 1

    # every later step has to be done again, in order, with the 村级公示 period again
    _approve_from(db, case_id, "household_check")
    assert db.case(case_id).status == CaseStatus.exited


@pytest.mark.parametrize("target", ["county_announcement", "exit_notice", "no_such_step", "dept_decision",
                                    "village_notice", "village_notice_timer", "village_objection"])
@pytest.mark.db_snapshot("at_dept_decision")
def test_return_to_a_step_not_on_the_case_path_is_refused_and_changes_nothing(db, at_dept_decision, target):
    case_id = at_dept_decision.value
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "dept_decision"
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError) as info:
        _complete(db, row.id, "demo_dept", "return", "退回", return_to=target)
    assert "return_to" in info.value.errors
    assert _fingerprint(db, case_id) == before


@pytest.mark.db_snapshot("at_township_recheck")
def test_return_without_an_opinion_is_refused_and_changes_nothing(db, at_township_recheck):
    case_id = at_township_recheck.value
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "township_recheck"
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError) as info:
        _complete(db, row.id, "demo_township", "return", "  ")
    assert "opinion" in info.value.errors
    assert _fingerprint(db, case_id) == before


@pytest.mark.db_snapshot("at_county_announcement")
def test_return_one_step_from_county_announcement_crosses_the_decision_table_back_to_department(
        db, at_county_announcement):
    case_id = at_county_announcement.value
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "county_announcement"
    _complete(db, row.id, "demo_county", "return", "部门审定意见需补充")
    (reopened,) = db.open_tasks(case_id)
    assert (reopened.spec_name, reopened.role_code, reopened.scope_code) == (
        "dept_decision", "county_department", COUNTY)
    assert _ready(db, case_id)["dept_decision"]["return_reason"] == "部门审定意见需补充"
    db.complete(case_id, "demo_dept", data=D.DEPT_DECISION)
    (again,) = db.open_tasks(case_id)
    assert again.spec_name == "county_announcement"
    _approve_from(db, case_id, "county_announcement")
    assert db.case(case_id).status == CaseStatus.exited


@pytest.mark.db_snapshot("at_county_announcement")
def test_a_household_recategorised_after_a_return_is_decided_again_by_the_decision_table(db, at_county_announcement):
    case_id = at_county_announcement.value  # 无 → normal path so far
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "county_announcement"
    _complete(db, row.id, "demo_county", "return", "该户实为低保户,请重新核查", return_to="household_check")
    db.complete(case_id, "demo_village", data={**D.HOUSEHOLD_CHECK, "special_category": "低保"})
    _advance_to(db, case_id, "dept_decision")
    db.complete(case_id, "demo_dept", data=D.DEPT_DECISION)
    case = db.case(case_id)
    assert case.status == CaseStatus.delayed_exit
    assert db.open_tasks(case_id) == []
    with db.uow() as work:  # the 村级公示 ran twice; no 县级公告期, no follow-up
        assert [(t.spec_name, t.status) for t in work.inbox.case_timers(case_id)] == [
            ("village_notice_timer", TimerStatus.fired), ("village_notice_timer", TimerStatus.fired)]


class _Undo(Exception):
    """Raised inside a unit of work to roll back a probe."""


@pytest.mark.db_snapshot("at_dept_decision")
def test_every_step_offered_as_a_return_target_is_accepted_by_complete_task(db, at_dept_decision):
    """return_targets is what the task page offers; each offered step must be a valid return_to."""
    case_id = at_dept_decision.value
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "dept_decision"
    _complete(db, row.id, "demo_dept", "return", "请重新入户核查", return_to="household_check")
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    (review,) = db.open_tasks(case_id)
    assert review.spec_name == "village_review"

    with db.uow() as work:
        offered = [bpmn_id for bpmn_id, _title in work.cases.return_targets(review)]
    assert "household_check" in offered
    refused = {}
    for target in offered:
        try:
            with db.uow() as work:
                work.cases.complete_task(review.id, db.actor("demo_village"), "return", "退回", {},
                                         return_to=target)
                raise _Undo
        except _Undo:
            pass
        except ValidationError as exc:
            refused[target] = exc.errors
    assert refused == {}, f"offered {offered}, but complete_task refused {refused}"
    assert offered == ["household_check"]  # the only step before 民主评议 on the current path


def _offered_and_refused(db, row: TaskRow, username: str) -> tuple[list[str], dict]:
    """The return targets offered for row, and those that complete_task then refuses (each probe undone)."""
    with db.uow() as work:
        offered = [bpmn_id for bpmn_id, _title in work.cases.return_targets(row)]
    refused = {}
    for target in offered:
        try:
            with db.uow() as work:
                work.cases.complete_task(row.id, db.actor(username), "return", "退回", {}, return_to=target)
                raise _Undo
        except _Undo:
            pass
        except ValidationError as exc:
            refused[target] = exc.errors
    return offered, refused


@pytest.mark.db_snapshot("at_county_announcement")
def test_after_the_village_notice_every_earlier_step_is_offered_nearest_first_and_accepted(db, at_county_announcement):
    """From 县级公告 the whole path is offered, nearest first; the notice periods are not steps."""
    case_id = at_county_announcement.value
    (announcement,) = db.open_tasks(case_id)
    assert announcement.spec_name == "county_announcement"
    offered, refused = _offered_and_refused(db, announcement, "demo_county")
    assert refused == {}, f"offered {offered}, but complete_task refused {refused}"
    assert offered == ["dept_decision", "township_recheck", "village_review", "household_check"]
    db.complete(case_id, "demo_county", data=D.COUNTY_ANNOUNCEMENT)
    assert db.pass_notice() == 1
    (notice,) = db.open_tasks(case_id)
    assert notice.spec_name == "exit_notice"
    with db.uow() as work:
        assert work.cases.return_targets(notice) == []  # 退出告知 only allows approve


# ----------------------------------------------------------------------------- returns after a 公示异议
def test_after_a_village_notice_objection_village_review_offers_and_returns_to_household_check_not_itself(db):
    """Engine bug: the objection's boundary flow back to 民主评议 leaves the earlier, completed 民主评议
    on the new task's ancestor path (CaseService._earlier_user_steps walks task.parent), so
    return_targets offers 民主评议 itself, return_to="village_review" is accepted, and a one-step
    return reopens 民主评议 instead of 入户核查."""
    case_id = db.start_case()
    _advance_to(db, case_id, "village_review")
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    db.issue_notices(case_id)
    _raise(db, case_id, "village_objection", "demo_village", "村民对评议结果有异议")
    (review,) = db.open_tasks(case_id)
    assert review.spec_name == "village_review"
    with db.uow() as work:
        assert work.cases.return_targets(review) == [("household_check", "入户核查")]
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError):  # as from any step: not back to itself
        _complete(db, review.id, "demo_village", "return", "退回本步", return_to="village_review")
    assert _fingerprint(db, case_id) == before
    _complete(db, review.id, "demo_village", "return", "需重新入户核查")
    (reopened,) = db.open_tasks(case_id)
    assert reopened.spec_name == "household_check"


@pytest.mark.db_snapshot("at_county_announcement")
def test_after_a_county_notice_objection_county_announcement_returns_one_step_to_department_decision(
        db, at_county_announcement):
    """Same engine bug at 县级公告: after a 县级公告期异议 the step offers itself and a one-step return
    reopens 县级公告 instead of 部门审定."""
    case_id = at_county_announcement.value
    db.complete(case_id, "demo_county", data=D.COUNTY_ANNOUNCEMENT)
    db.issue_notices(case_id)
    _raise(db, case_id, "county_objection", "demo_county", "公告期内收到异议")
    (announcement,) = db.open_tasks(case_id)
    assert announcement.spec_name == "county_announcement"
    with db.uow() as work:
        assert [t for t, _n in work.cases.return_targets(announcement)] == [
            "dept_decision", "township_recheck", "village_review", "household_check"]
    _complete(db, announcement.id, "demo_county", "return", "部门审定意见需补充")
    (reopened,) = db.open_tasks(case_id)
    assert reopened.spec_name == "dept_decision"


ROUNDS = 300


def test_three_hundred_return_rounds_keep_the_task_tree_shallow_and_the_case_still_exits(db):
    """SpiffWorkflow issue 441: a modelled loop deepens the tree until the case silently stalls
    (about 90 rounds). Returns reset the workflow instead, so the depth must not grow."""
    village = db.actor("demo_village")
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    depth_after_first_round = None

    def open_row(work) -> TaskRow:
        (row,) = work.session.scalars(select(TaskRow).where(
            TaskRow.case_id == case_id, TaskRow.status == TaskStatus.open)).all()
        return row

    for i in range(ROUNDS):
        with db.uow() as work:  # one round per transaction keeps 300 rounds quick on PostgreSQL too
            review = open_row(work)
            assert review.spec_name == "village_review"
            work.cases.complete_task(review.id, village, "return", f"第{i + 1}次退回:核查表填写不全", {})
            check = open_row(work)
            assert check.spec_name == "household_check"
            work.signatures.add_signature(check.id, village, D.signature_png(i))  # each round is signed anew
            work.cases.complete_task(check.id, village, "approve", "已补充", D.HOUSEHOLD_CHECK)
        if i == 0:
            depth_after_first_round = _max_depth(db, case_id)

    assert _max_depth(db, case_id) == depth_after_first_round
    assert depth_after_first_round < 20
    case = db.case(case_id)
    assert (case.status, case.return_count) == (CaseStatus.running, ROUNDS)
    assert _ready(db, case_id).keys() == {"village_review"}

    _approve_from(db, case_id, "village_review")
    case = db.case(case_id)
    assert case.status == CaseStatus.exited
    with db.uow() as work:
        actions = work.session.execute(
            select(AuditEvent.action, func.count()).where(AuditEvent.case_id == case_id)
            .group_by(AuditEvent.action)).all()
        assert dict(actions) == {"start": 1, "return": ROUNDS, "approve": 1 + ROUNDS + 5, "timer_fired": 2,
                                 "attachment_added": 1 + ROUNDS,  # every round of 入户核查 signed anew
                                 "notice_issued": 3}  # 出具村级公示, 出具县级公告, the 退出告知书
        assert work.session.scalar(select(func.count(TaskRow.id)).where(TaskRow.case_id == case_id)) == (
            1 + 2 * ROUNDS + 5 + 2)
        timers = work.session.scalars(select(TimerRow).where(TimerRow.case_id == case_id).order_by(TimerRow.id)).all()
        assert [(t.spec_name, t.status) for t in timers] == [
            ("village_notice_timer", TimerStatus.fired),
            ("county_notice_timer", TimerStatus.fired),
            ("follow_up_timer", TimerStatus.waiting),
        ]

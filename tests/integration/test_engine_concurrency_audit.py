"""Two writers on one task, an objection racing the end of its notice period, and the audit
table's append-only guarantee in the database itself."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from engine import demo_data as D
from engine.core.errors import ConflictError
from engine.models import AuditEvent, Case, TaskRow, TaskStatus, TimerRow, TimerStatus
from engine.runtime.pipeline import CasePipeline
from engine.runtime.timers import TimerWorker

VILLAGE = "510921107001"


def _second_village_cadre(db) -> None:
    with db.uow() as work:
        work.directory.create_user("engine_test_cadre2", "宝梵镇村干部二", "secret-12345",
                                   [("village_cadre", VILLAGE)])


def _run_to_end(threads: list[threading.Thread]) -> None:
    """Start the threads together and wait for each; none may hang."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"


def _race(db, task_id: int, usernames: list[str], data: dict, monkeypatch) -> list[object]:
    """Each thread opens its own unit of work and completes task_id at the same moment.

    A second barrier just before the case lock makes the overlap certain: both threads have
    already read the task as open when either of them starts writing.
    """
    actors = [db.actor(u) for u in usernames]
    barrier = threading.Barrier(len(actors))
    both_read_open = threading.Barrier(len(actors))
    original_lock = CasePipeline.lock_task

    def lock_after_both_have_read(self, task_id):
        both_read_open.wait(timeout=20)
        return original_lock(self, task_id)

    monkeypatch.setattr(CasePipeline, "lock_task", lock_after_both_have_read)
    results: list[object] = [None] * len(actors)

    def work_on(i: int) -> None:
        try:
            with db.uow() as work:
                barrier.wait(timeout=20)
                work.cases.complete_task(task_id, actors[i], "approve", f"{usernames[i]} 同意", data)
            results[i] = "ok"
        except Exception as exc:  # reported through results, never swallowed silently
            results[i] = exc

    _run_to_end([threading.Thread(target=work_on, args=(i,)) for i in range(len(actors))])
    monkeypatch.undo()
    return results


@pytest.mark.parametrize("round_", range(3))
def test_two_cadres_completing_the_same_task_at_once_exactly_one_wins_the_other_gets_conflict(
        db, round_, monkeypatch):
    _second_village_cadre(db)
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    db.sign_if_asked(row.id, "demo_village")  # the household signs once; both cadres then submit
    lock_before = db.case(case_id).lock_version

    results = _race(db, row.id, ["demo_village", "engine_test_cadre2"], D.HOUSEHOLD_CHECK, monkeypatch)

    winners = [r for r in results if r == "ok"]
    losers = [r for r in results if r != "ok"]
    assert len(winners) == 1, results
    assert len(losers) == 1 and isinstance(losers[0], ConflictError), results

    with db.uow() as work:
        done = work.session.get(TaskRow, row.id)
        assert done.status == TaskStatus.completed
        winner = ["demo_village", "engine_test_cadre2"][results.index("ok")]
        assert done.completed_by_id == db.actor(winner).user_id
        assert done.opinion == f"{winner} 同意"
        assert work.session.scalar(select(func.count(TaskRow.id)).where(
            TaskRow.case_id == case_id, TaskRow.spec_name == "household_check")) == 1
        events = work.session.scalars(select(AuditEvent).where(AuditEvent.task_id == row.id)).all()
        assert [(e.action, e.user_id) for e in events] == [("attachment_added", db.actor("demo_village").user_id),
                                                           ("approve", db.actor(winner).user_id)]
        case = work.session.get(Case, case_id)
        assert case.lock_version == lock_before + 1  # advanced exactly once
        assert work.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.case_id == case_id)) == 3
    (nxt,) = db.open_tasks(case_id)
    assert nxt.spec_name == "village_review"


def test_completing_a_task_that_was_already_completed_is_a_conflict(db):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    with pytest.raises(ConflictError):
        with db.uow() as work:
            work.cases.complete_task(row.id, db.actor("demo_village"), "approve", "再次提交", D.HOUSEHOLD_CHECK)
    (nxt,) = db.open_tasks(case_id)
    assert nxt.spec_name == "village_review"


# ----------------------------------------------------------------------------- 村级公示: objection vs deadline
def _in_village_notice(db) -> int:
    """A case whose 民主评议 is approved and its notice issued: the 村级公示 period is running."""
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    db.issue_notices(case_id)
    assert db.open_tasks(case_id) == []
    return case_id


def _notice_timer(db, case_id: int) -> TimerRow:
    with db.uow() as work:
        (timer,) = [t for t in work.inbox.case_timers(case_id) if t.spec_name == "village_notice_timer"]
        return timer


def _actions(db, case_id: int) -> list[str]:
    with db.uow() as work:
        return [e.action for e in work.inbox.case_history(case_id)]


def _assert_exactly_one_took_effect(db, case_id: int, objected: bool, fired: int) -> None:
    """Either the objection took effect (back to 民主评议, the deadline cancelled and never audited as
    fired) or the deadline did (on to 镇复核, the objection refused) - never both."""
    actions = _actions(db, case_id)
    timer = _notice_timer(db, case_id)
    open_steps = [r.spec_name for r in db.open_tasks(case_id)]
    if objected:
        assert (fired, timer.status, open_steps) == (0, TimerStatus.cancelled, ["village_review"])
        assert actions.count("event") == 1 and "timer_fired" not in actions, actions
    else:
        assert (fired, timer.status, open_steps) == (1, TimerStatus.fired, ["township_recheck"])
        assert actions.count("timer_fired") == 1 and "event" not in actions, actions
    with db.uow() as work:
        assert work.session.scalar(select(func.count(TimerRow.id)).where(
            TimerRow.case_id == case_id, TimerRow.status == TimerStatus.waiting)) == 0


def test_an_objection_after_the_deadline_but_before_the_worker_fired_it_is_either_refused_or_cancels_the_timer(db):
    """The timer worker claimed the due 村级公示 timer (committed lease) but has not fired it yet when
    the objection arrives. Whichever the engine decides, the case must not record both: the
    objection accepted *and* the notice period run out (timer "fired", a 定时触发 entry).

    Fails now (engine bug): raise_event catches the signal and then _advance runs refresh_timers,
    so the overdue timer completes the 村级公示 subprocess in the same step; the boundary event
    still fires, the case goes back to 民主评议, and _sync_timers marks the timer fired and audits
    timer_fired before the objection's event entry.
    """
    case_id = _in_village_notice(db)
    timer = _notice_timer(db, case_id)
    db.clock.set(timer.due_at + timedelta(minutes=5))
    with db.uow() as work:
        assert work.cases.claim_due_timers(db.clock.now(), 10) == [timer.id]
    try:
        with db.uow() as work:
            work.cases.raise_event(case_id, "village_objection", db.actor("demo_village"), "公示期满时收到异议")
        objected = True
    except ConflictError:
        objected = False
    with db.uow() as work:
        fired = int(work.cases.fire_timer(timer.id))
    _assert_exactly_one_took_effect(db, case_id, objected, fired)


def test_an_objection_that_read_the_case_before_the_timer_worker_fired_is_a_conflict_and_leaves_no_trace(
        db, monkeypatch):
    """The deadline and an objection at the same moment: the objection has read the case as waiting
    for it, then the worker (engine.runtime.timers.TimerWorker, as in production: claim committed, then one
    transaction per timer) fires the deadline and commits before the objection takes the case
    lock. The objection must fail as a conflict and leave nothing behind."""
    case_id = _in_village_notice(db)
    timer = _notice_timer(db, case_id)
    db.clock.set(timer.due_at + timedelta(minutes=5))
    lock_before = db.case(case_id).lock_version
    village = db.actor("demo_village")
    with db.uow() as work:
        assert work.cases.waiting_events(work.session.get(Case, case_id), village)[0]["can_raise"]
    objection_read, worker_done = threading.Event(), threading.Event()
    original_lock = CasePipeline.lock

    def objection_locks_after_the_worker(self, locked_case_id):
        if threading.current_thread().name == "objection":
            objection_read.set()  # raise_event has read the case (get_case) and comes to lock it
            assert worker_done.wait(timeout=60)
        return original_lock(self, locked_case_id)

    monkeypatch.setattr(CasePipeline, "lock", objection_locks_after_the_worker)
    results: dict[str, object] = {}

    def object_() -> None:
        try:
            with db.uow() as work:
                work.cases.raise_event(case_id, "village_objection", village, "群众异议")
            results["objection"] = "ok"
        except Exception as exc:  # reported through results
            results["objection"] = exc

    def tick() -> None:
        try:
            assert objection_read.wait(timeout=60)
            results["fired"] = TimerWorker(db.factory, db.clock, name="w").run_once()
        except Exception as exc:
            results["fired"] = exc
        finally:
            worker_done.set()

    _run_to_end([threading.Thread(target=object_, name="objection"), threading.Thread(target=tick, name="worker")])
    monkeypatch.undo()

    assert isinstance(results["objection"], ConflictError), results
    _assert_exactly_one_took_effect(db, case_id, objected=False, fired=results["fired"])
    assert db.case(case_id).lock_version == lock_before + 1  # the case advanced exactly once
    assert _notice_timer(db, case_id).attempts == 0


# ----------------------------------------------------------------------------- 11. audit append-only
def _audit_rows(db, case_id: int) -> list[tuple]:
    with db.uow() as work:
        return [(e.id, e.action, e.opinion, e.user_id) for e in work.inbox.case_history(case_id)]


@pytest.mark.parametrize("statement", [
    "UPDATE audit_event SET opinion = '篡改' WHERE case_id = :case_id",
    "UPDATE audit_event SET user_id = NULL WHERE case_id = :case_id",
    "DELETE FROM audit_event WHERE case_id = :case_id",
], ids=["update_opinion", "update_user", "delete"])
def test_the_database_refuses_to_update_or_delete_audit_events(db, statement):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", opinion="核查属实", data=D.HOUSEHOLD_CHECK)
    before = _audit_rows(db, case_id)
    assert len(before) == 3  # start, the household's signature, approve: the statement matches rows

    with pytest.raises(DBAPIError, match="append-only"):
        with db.uow() as work:
            work.session.execute(text(statement), {"case_id": case_id})
    assert _audit_rows(db, case_id) == before


def test_appending_audit_events_still_works_after_a_refused_change(db):
    case_id = db.start_case()
    with pytest.raises(DBAPIError):
        with db.uow() as work:
            work.session.execute(text("DELETE FROM audit_event"))
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    assert [a for _id, a, _o, _u in _audit_rows(db, case_id)] == ["start", "attachment_added", "approve"]

"""Timers beyond the happy path: simultaneous ticks fire once, a failing timer changes nothing."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine import demo_data as D
from engine.models import AuditEvent, Case, TimerRow, TimerStatus
from engine.procedures.definitions import bundle_from_files
from engine.procedures.serialization import SPEC_CACHE
from engine.runtime.cases import MAX_TIMER_ATTEMPTS, TIMER_BACKOFF
from engine.runtime.timers import TimerWorker
from tests.integration.notices_support import complete_exit_notice


@pytest.fixture(autouse=True)
def _private_spec_cache(monkeypatch):
    """SPEC_CACHE is keyed by version id only; SQLite test databases reuse ids (see definitions tests)."""
    monkeypatch.setattr(SPEC_CACHE, "_specs", {})


def _in_village_notice(db, n: int) -> list[int]:
    """n cases whose 民主评议 is approved and whose village issued one notice for them all: each waits
    out its 村级公示 period."""
    ids = []
    for _ in range(n):
        case_id = db.start_case()
        db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
        db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
        ids.append(case_id)
    assert len(db.issue_notices()) == 1
    return ids


def _exited_cases(db, n: int) -> list[int]:
    """n cases taken through both notice periods and 退出告知: each waits for its six-month follow-up."""
    ids = _in_village_notice(db, n)
    assert db.pass_notice() == n
    for username, data in D.REVIEW_STEPS[1:]:
        for case_id in ids:
            db.complete(case_id, username, data=data)
    assert db.pass_notice() == n
    for case_id in ids:
        complete_exit_notice(db, case_id)  # the 退出告知书 issued first
    return ids


def _in_threads(fn, n: int = 2) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=20)
            results[i] = fn()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a ticker hung"
    return results


def _two_timer_workers_at_once(db) -> list[object]:
    """Two TimerWorkers, each run_once() in its own thread at the same moment; their results."""
    workers = iter([TimerWorker(db.factory, db.clock, name=f"w{i}") for i in range(2)])
    lock = threading.Lock()

    def run() -> int:
        with lock:
            worker = next(workers)
        return worker.run_once()

    return _in_threads(run)


def _assert_each_fired_once(db, case_ids: list[int], timer_name: str = "follow_up_timer",
                            title: str = "退出满六个月", next_step: str = "follow_up_visit") -> None:
    with db.uow() as work:
        for case_id in case_ids:
            (timer,) = [t for t in work.inbox.case_timers(case_id) if t.spec_name == timer_name]
            assert timer.status == TimerStatus.fired
            assert not [t for t in work.inbox.case_timers(case_id) if t.status == TimerStatus.waiting]
            events = [e for e in work.inbox.case_history(case_id)
                      if e.action == "timer_fired" and e.data_diff == {"timer": title}]
            assert len(events) == 1
    for case_id in case_ids:
        (row,) = db.open_tasks(case_id)  # exactly one task: the next step was not opened twice
        assert row.spec_name == next_step


def test_two_simultaneous_ticks_in_one_transaction_each_fire_every_due_timer_exactly_once(db):
    case_ids = _exited_cases(db, 3)
    db.clock.advance(timedelta(days=200))

    def tick() -> int:
        with db.uow() as work:
            return work.cases.fire_due_timers()

    results = _in_threads(tick)
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 3
    _assert_each_fired_once(db, case_ids)


def test_two_timer_workers_at_the_end_of_the_village_notice_fire_every_notice_timer_exactly_once(db):
    case_ids = _in_village_notice(db, 3)
    db.clock.advance(timedelta(days=D.NOTICE_DAYS, hours=1))
    results = _two_timer_workers_at_once(db)
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 3
    _assert_each_fired_once(db, case_ids, "village_notice_timer", "村级公示期满", "township_recheck")


def test_two_timer_workers_running_at_once_fire_every_due_timer_exactly_once(db):
    case_ids = _exited_cases(db, 3)
    db.clock.advance(timedelta(days=200))
    results = _two_timer_workers_at_once(db)
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 3
    _assert_each_fired_once(db, case_ids)
    db.clock.advance(timedelta(days=1))
    assert TimerWorker(db.factory, db.clock).run_once() == 0


# ----------------------------------------------------------------------------- a timer that fails
FORM = json.dumps({"type": "default", "components": [
    {"type": "number", "key": "score", "label": "得分", "validate": {"required": True, "min": 0}},
]})
NOTE_FORM = json.dumps({"type": "default", "components": [{"type": "textfield", "key": "note", "label": "备注"}]})


def _timer_then_script_bpmn(process_id: str) -> str:
    """start → 核查 → wait one day → ratio = 10 / score → 跟进 → end, all in the village lane."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    id="Definitions_timer" targetNamespace="http://xiangflow.cn/test">
  <bpmn:process id="{process_id}" name="定时测试" isExecutable="true">
    <bpmn:laneSet id="LaneSet_t">
      <bpmn:lane id="Lane_village" name="村级 (village_cadre)">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>check</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>wait</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>calc</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>follow</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="check" name="核查">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formKey" value="t/score" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:intermediateCatchEvent id="wait" name="等待一天">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition id="TimerDef_wait">
        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">"P1D"</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:scriptTask id="calc" name="计算" scriptFormat="python">
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
      <bpmn:script>ratio = 10 / score</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:userTask id="follow" name="跟进">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formKey" value="t/note" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f4</bpmn:incoming><bpmn:outgoing>f5</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f5</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="check" />
    <bpmn:sequenceFlow id="f2" sourceRef="check" targetRef="wait" />
    <bpmn:sequenceFlow id="f3" sourceRef="wait" targetRef="calc" />
    <bpmn:sequenceFlow id="f4" sourceRef="calc" targetRef="follow" />
    <bpmn:sequenceFlow id="f5" sourceRef="follow" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.fixture
def timer_procedure(db) -> str:
    code = f"t_timer_{uuid.uuid4().hex[:8]}"
    bundle = bundle_from_files({
        "procedure.json": json.dumps({"code": code, "name": "定时测试", "process_id": "t_timer"}),
        "bpmn/t.bpmn": _timer_then_script_bpmn("t_timer"),
        "form/t/score": FORM,
        "form/t/note": NOTE_FORM,
    })
    with db.uow() as work:
        work.definitions.deploy(bundle, "tester", set(work.directory.role_levels()))
    return code


def _case_fingerprint(db, case_id: int):
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        return case.state, case.lock_version, case.status


def test_a_timer_whose_next_step_succeeds_fires_and_opens_it(db, timer_procedure):
    case_id = db.start_case(procedure=timer_procedure)
    db.complete(case_id, "demo_village", data={"score": 2})
    db.clock.advance(timedelta(days=1, seconds=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "follow"


def test_a_timer_whose_firing_fails_changes_nothing_records_the_error_and_retries_with_backoff(
        db, timer_procedure):
    case_id = db.start_case(procedure=timer_procedure)
    db.complete(case_id, "demo_village", data={"score": 0})  # 10 / 0 after the timer
    db.clock.advance(timedelta(days=1, seconds=1))
    before = _case_fingerprint(db, case_id)

    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
    (timer,) = _timers(db, case_id)
    assert timer.status == TimerStatus.waiting
    assert timer.attempts == 1
    assert timer.last_error == "流程无法继续: 除数为零"  # Chinese, no exception name, for the incident list
    assert _case_fingerprint(db, case_id) == before
    assert db.open_tasks(case_id) == []
    assert _audit_actions(db, case_id) == ["start", "approve"]

    # not retried while backing off
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
    assert _timers(db, case_id)[0].attempts == 1

    # retried after the backoff, and after the last attempt it becomes an incident
    for attempt in range(2, MAX_TIMER_ATTEMPTS + 1):
        db.clock.advance(TIMER_BACKOFF * 2 ** (attempt - 1) + timedelta(seconds=1))
        with db.uow() as work:
            assert work.cases.fire_due_timers() == 0
        (timer,) = _timers(db, case_id)
        assert timer.attempts == attempt
    assert timer.status == TimerStatus.incident
    assert _case_fingerprint(db, case_id) == before
    assert _audit_actions(db, case_id) == ["start", "approve", "timer_incident"]
    db.clock.advance(timedelta(days=30))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
        assert work.session.scalar(select(func.count(TimerRow.id)).where(
            TimerRow.case_id == case_id, TimerRow.status == TimerStatus.waiting)) == 0


def test_a_failing_timer_does_not_block_other_due_timers_in_the_same_tick(db, timer_procedure):
    bad = db.start_case(procedure=timer_procedure)
    db.complete(bad, "demo_village", data={"score": 0})
    good = db.start_case(procedure=timer_procedure)
    db.complete(good, "demo_village", data={"score": 5})
    db.clock.advance(timedelta(days=2))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    (row,) = db.open_tasks(good)
    assert row.spec_name == "follow"
    assert db.open_tasks(bad) == []
    assert _timers(db, bad)[0].attempts == 1


def _timers(db, case_id: int) -> list[TimerRow]:
    with db.uow() as work:
        return work.inbox.case_timers(case_id)


def _audit_actions(db, case_id: int) -> list[str]:
    with db.uow() as work:
        return list(work.session.scalars(
            select(AuditEvent.action).where(AuditEvent.case_id == case_id).order_by(AuditEvent.id)))

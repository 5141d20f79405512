"""Exactly-once timers across processes, on PostgreSQL: two worker processes and two web-app ticks
fire 2,000 due timers; a worker killed with SIGKILL in the middle loses nothing and doubles nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine.access.directory import ROLES
from engine.core.settings import ROOT
from engine.models import AuditEvent, TaskRow, TaskStatus, TimerRow, TimerStatus
from engine.procedures.definitions import bundle_from_files
from engine.runtime.timers import TIMER_LEASE

pytestmark = pytest.mark.postgres
TIMERS = 2000

FORM = json.dumps({"type": "default", "components": [{"type": "textfield", "key": "note", "label": "说明"}]})
BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="http://x">
  <bpmn:collaboration id="c"><bpmn:participant id="p" processRef="t_many" /></bpmn:collaboration>
  <bpmn:process id="t_many" isExecutable="true">
    <bpmn:laneSet id="ls"><bpmn:lane id="lv" name="村 (village_cadre)">
      <bpmn:flowNodeRef>s</bpmn:flowNodeRef><bpmn:flowNodeRef>wait</bpmn:flowNodeRef>
      <bpmn:flowNodeRef>visit</bpmn:flowNodeRef><bpmn:flowNodeRef>e</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>
    <bpmn:startEvent id="s"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="wait" name="等待"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration>"P1D"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:userTask id="visit" name="回访">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formKey" value="t_many/form" /></spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="e"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="wait" />
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="visit" />
    <bpmn:sequenceFlow id="f3" sourceRef="visit" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"""

WEB_TICK = """
import sys
from datetime import datetime
from engine.core.clock import FixedClock
from web import create_app
from web.cli import fire_due
app = create_app({"XIANGFLOW_DATABASE_URL": sys.argv[1], "XIANGFLOW_SCHEDULER": False,
                  "XIANGFLOW_CLOCK": FixedClock(datetime.fromisoformat(sys.argv[2]))})
with app.app_context():
    print("fired", fire_due(batch=50), flush=True)
"""


def _worker(db, at, name, *extra):
    """A worker process on a clock frozen at at, or on the system clock when at is None."""
    clock = ["--at", at.isoformat()] if at is not None else []
    return subprocess.Popen([sys.executable, "-m", "engine.runtime.timers", "--url", db.url, *clock,
                             "--batch", "50", "--name", name, *extra], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _web(db, at):
    return subprocess.Popen([sys.executable, "-c", WEB_TICK, db.url, at.isoformat()], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _count(db, stmt) -> int:
    with db.uow() as work:
        return work.session.scalar(stmt)


@pytest.fixture
def many_due_timers(db):
    if not db.url.startswith("postgresql"):
        pytest.skip("multi-process exactly-once is a PostgreSQL test (CI runs the suite on PostgreSQL too)")
    with db.uow() as work:
        work.definitions.deploy(bundle_from_files({
            "procedure.json": json.dumps({"code": "t_many", "name": "批量定时", "process_id": "t_many"}),
            "bpmn/t_many.bpmn": BPMN, "form/t_many/form": FORM}), "test", {c for c, _n, _l in ROLES})
    subject_id = db.household()
    actor = db.actor("demo_village")
    with db.uow() as work:
        for _ in range(TIMERS):
            work.cases.start_case("t_many", subject_id, actor)
    assert _count(db, select(func.count(TimerRow.id)).where(TimerRow.status == TimerStatus.waiting)) == TIMERS
    return db


def _assert_each_fired_once(db):
    assert _count(db, select(func.count(AuditEvent.id)).where(AuditEvent.action == "timer_fired")) == TIMERS
    assert _count(db, select(func.count(TimerRow.id)).where(TimerRow.status == TimerStatus.fired)) == TIMERS
    opened = _count(db, select(func.count(TaskRow.id)).where(TaskRow.status == TaskStatus.open))
    assert opened == TIMERS  # one 回访 per case, none twice
    with db.uow() as work:
        per_case = work.session.scalars(select(func.count(TaskRow.id)).group_by(TaskRow.case_id)).all()
    assert len(per_case) == TIMERS and set(per_case) == {1}


def test_two_workers_and_two_web_ticks_fire_2000_timers_exactly_once(many_due_timers):
    db = many_due_timers
    at = db.clock.now() + timedelta(days=2)
    procs = [_worker(db, at, "w1"), _worker(db, at, "w2"), _web(db, at), _web(db, at)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    fired = [int(o[0].split()[-1]) for o in outputs]
    assert sum(fired) == TIMERS, fired
    _assert_each_fired_once(db)


def test_a_worker_killed_mid_run_loses_no_timer_and_fires_none_twice(many_due_timers):
    db = many_due_timers
    at = db.clock.now() + timedelta(days=2)
    # the victim fires 225 timers, then stops in the middle of a claimed batch of 50
    victim = _worker(db, at, "victim", "--pause-after", "225")
    assert victim.stdout.readline().strip() == "paused", victim.stderr.read()[-2000:]
    claimed_unfired = _count(db, select(func.count(TimerRow.id)).where(
        TimerRow.status == TimerStatus.waiting, TimerRow.claimed_until.is_not(None)))
    assert claimed_unfired == 25  # leased to the victim, not yet fired
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for pipe in (victim.stdin, victim.stdout, victim.stderr):
        pipe.close()
    fired_stmt = select(func.count(AuditEvent.id)).where(AuditEvent.action == "timer_fired")
    assert _count(db, fired_stmt) == 225
    # a worker inside the dead worker's lease leaves its 25 timers alone …
    early = _worker(db, at, "early")
    out, err = early.communicate(timeout=600)
    assert early.returncode == 0, err[-2000:]
    assert _count(db, fired_stmt) == TIMERS - 25
    # … and once its lease (TIMER_LEASE, 30 s, no longer renewed by the dead worker) has run out, they are
    # fired exactly once
    later = at + TIMER_LEASE + timedelta(seconds=1)
    procs = [_worker(db, later, "w1"), _worker(db, later, "w2")]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    _assert_each_fired_once(db)


def test_a_live_workers_heartbeat_keeps_its_timers_and_a_killed_workers_timers_are_free_after_the_lease(
        many_due_timers):
    db = many_due_timers  # due a day after START, long before the system clock's now
    lease = ["--lease-seconds", "6"]  # renewed every 2 s while the worker lives
    holder = _worker(db, None, "holder", "--pause-after", "225", *lease)
    assert holder.stdout.readline().strip() == "paused", holder.stderr.read()[-2000:]
    held = select(func.count(TimerRow.id)).where(TimerRow.status == TimerStatus.waiting,
                                                 TimerRow.claimed_until.is_not(None))
    assert _count(db, held) == 25
    time.sleep(9)  # longer than the lease: only the heartbeat keeps the 25 timers the holder's
    other = _worker(db, None, "other", *lease)
    out, err = other.communicate(timeout=600)
    assert other.returncode == 0, err[-2000:]
    fired_stmt = select(func.count(AuditEvent.id)).where(AuditEvent.action == "timer_fired")
    assert _count(db, fired_stmt) == TIMERS - 25 and _count(db, held) == 25
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    for pipe in (holder.stdin, holder.stdout, holder.stderr):
        pipe.close()
    time.sleep(7)  # the dead holder renews nothing: its lease runs out
    after = _worker(db, None, "after", *lease)
    out, err = after.communicate(timeout=600)
    assert after.returncode == 0, err[-2000:]
    assert out.split()[-1] == "25"
    _assert_each_fired_once(db)

"""Time limits: working-day due dates, timer incidents, 催办 reminders, notifications, mail, overdue report."""

from __future__ import annotations

import json
import socketserver
import threading
from datetime import timedelta
from io import BytesIO

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, text

from engine import demo_data as D
from engine.access.directory import ROLES
from engine.models import AuditEvent, Notification, TaskRow, TimerRow, TimerStatus, User
from engine.procedures.definitions import bundle_from_files
from engine.runtime.notify import SmtpSettings
from engine.runtime.timers import TimerWorker
from tests.integration.dates_support import dated

ROLE_CODES = {code for code, _name, _level in ROLES}
FORM = json.dumps({"type": "default", "components": [
    {"type": "textfield", "key": "note", "label": "说明", "validate": {"required": False}}]})


def timer_bundle(code: str, after_timer: str, settings: dict | None = None) -> dict[str, str]:
    """A two-lane procedure: 填报 (village) → a one-day timer → a script → 复核 (township)."""
    bpmn = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d_{code}" targetNamespace="http://x">
  <bpmn:collaboration id="c_{code}"><bpmn:participant id="p_{code}" processRef="{code}" /></bpmn:collaboration>
  <bpmn:process id="{code}" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="lv" name="村 (village_cadre)"><bpmn:flowNodeRef>s</bpmn:flowNodeRef><bpmn:flowNodeRef>fill</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>wait</bpmn:flowNodeRef><bpmn:flowNodeRef>calc</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="lt" name="镇 (township_officer)"><bpmn:flowNodeRef>check</bpmn:flowNodeRef><bpmn:flowNodeRef>e</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="s"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="fill" name="填报">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formKey" value="{code}/form" />
        <spiffworkflow:property name="dueIn" value="P3D" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:intermediateCatchEvent id="wait" name="等待一天"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration>"P1D"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:scriptTask id="calc" name="计算"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
      <bpmn:script>{after_timer}</bpmn:script></bpmn:scriptTask>
    <bpmn:userTask id="check" name="复核">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formKey" value="{code}/form" />
        <spiffworkflow:property name="actions" value="approve,reject,return" />
        <spiffworkflow:property name="dueIn" value="P5D" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f4</bpmn:incoming><bpmn:outgoing>f5</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="e"><bpmn:incoming>f5</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="fill" />
    <bpmn:sequenceFlow id="f2" sourceRef="fill" targetRef="wait" />
    <bpmn:sequenceFlow id="f3" sourceRef="wait" targetRef="calc" />
    <bpmn:sequenceFlow id="f4" sourceRef="calc" targetRef="check" />
    <bpmn:sequenceFlow id="f5" sourceRef="check" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"""
    manifest = {"code": code, "name": f"测试{code}", "subject_kind": "household", "process_id": code,
                "settings": settings or {}}
    return {"procedure.json": json.dumps(manifest), f"bpmn/{code}.bpmn": bpmn, f"form/{code}/form": FORM}


def deploy(db, files) -> None:
    with db.uow() as work:
        work.definitions.deploy(bundle_from_files(files), "test", ROLE_CODES)


def audit_count(db, action: str) -> int:
    with db.uow() as work:
        return work.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == action))


def notifications_of(db, username: str) -> list[Notification]:
    with db.uow() as work:
        user_id = work.session.scalar(select(User.id).where(User.username == username))
        return work.notifications.recent(user_id)


def test_a_procedure_counted_in_working_days_sets_due_dates_across_national_day(db):
    deploy(db, timer_bundle("t_workdays", "x = 1", {"day_kind": "working"}))
    db.clock.set(db.clock.now().replace(month=9, day=28, hour=2))  # Monday 28 Sep 2026, 10:00 China time
    case_id = db.start_case(procedure="t_workdays")
    (row,) = db.open_tasks(case_id)
    # 3 working days after 28 Sep: 29, 30 Sep, then the holiday to 7 Oct, so 8 Oct
    assert row.day_kind == "working"
    assert row.due_at.date().isoformat() == "2026-10-08"


def test_a_procedure_counted_in_natural_days_keeps_calendar_days(db):
    deploy(db, timer_bundle("t_natural", "x = 1"))
    db.clock.set(db.clock.now().replace(month=9, day=28, hour=2))
    case_id = db.start_case(procedure="t_natural")
    (row,) = db.open_tasks(case_id)
    assert row.day_kind == "natural"
    assert row.due_at.date().isoformat() == "2026-10-01"


def test_a_timer_that_keeps_failing_becomes_an_incident_and_never_blocks_other_timers(db):
    deploy(db, timer_bundle("t_broken", "x = missing_value + 1"))
    deploy(db, timer_bundle("t_fine", "x = 1"))
    broken = db.start_case(procedure="t_broken")
    fine = db.start_case(procedure="t_fine")
    db.complete(broken, "demo_village", data={"note": "a"})
    db.complete(fine, "demo_village", data={"note": "b"})
    db.clock.advance(timedelta(days=2))
    worker = TimerWorker(db.factory, db.clock)
    assert worker.run_once() == 1  # the good timer fires; the bad one is recorded
    assert [t.title for t in db.open_tasks(fine)] == ["复核"]
    for _attempt in range(10):
        db.clock.advance(timedelta(hours=1))  # past every backoff
        worker.run_once()
    with db.uow() as work:
        timer = work.session.scalar(select(TimerRow).where(TimerRow.case_id == broken))
        assert timer.status == TimerStatus.incident
        assert timer.attempts == 5
        assert "missing_value" in timer.last_error
        incidents = work.admin.incidents(db.actor("demo_admin"))
        assert [i.id for i in incidents] == [timer.id]
        assert work.admin.incidents(db.actor("demo_admin"))  # still listed until acted on
    assert db.open_tasks(broken) == []
    assert audit_count(db, "timer_incident") == 1


def test_an_admin_can_retry_or_skip_an_incident_and_both_are_audited(db):
    deploy(db, timer_bundle("t_retry", "x = missing_value + 1"))
    case_id = db.start_case(procedure="t_retry")
    db.complete(case_id, "demo_village", data={"note": "a"})
    db.clock.advance(timedelta(days=2))
    worker = TimerWorker(db.factory, db.clock)
    for _attempt in range(6):
        worker.run_once()
        db.clock.advance(timedelta(hours=1))
    admin = db.actor("demo_admin")
    with db.uow() as work:
        (incident,) = work.admin.incidents(admin)
        work.admin.retry_incident(admin, incident.id)
    with db.uow() as work:
        timer = work.session.get(TimerRow, incident.id)
        assert (timer.status, timer.attempts) == (TimerStatus.waiting, 0)
    for _attempt in range(6):
        worker.run_once()
        db.clock.advance(timedelta(hours=1))
    with db.uow() as work:
        work.admin.skip_incident(admin, incident.id, "数据缺失,人工处理")
    with db.uow() as work:
        assert work.session.get(TimerRow, incident.id).status == TimerStatus.cancelled
    assert audit_count(db, "timer_retry") == 1
    assert audit_count(db, "timer_skipped") == 1


def test_only_admins_see_incidents(db):
    from engine.core.errors import ForbiddenError

    with db.uow() as work, pytest.raises(ForbiddenError):
        work.admin.incidents(db.actor("demo_township"))


def test_the_next_level_is_notified_of_a_new_task_and_the_starter_of_a_rejection(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    assert notifications_of(db, "demo_township") == []
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    assert notifications_of(db, "demo_township") == []  # the 村级公示 period runs first
    db.pass_notice()
    (note,) = notifications_of(db, "demo_township")
    assert note.kind == "task" and "镇复核" in note.title
    assert notifications_of(db, "demo_other_township") == []
    db.complete(case_id, "demo_township", action="reject", opinion="收入数据与台账不符")
    outcome = [n for n in notifications_of(db, "demo_village") if n.kind == "outcome"]
    assert len(outcome) == 1 and "收入数据与台账不符" in outcome[0].body


def test_reminders_go_to_the_assignees_once_before_the_limit_and_again_never(db):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)  # 入户核查, due in 10 days
    with db.uow() as work:
        assert work.notifications.remind_due_tasks(timedelta(days=2)) == 0
    db.clock.advance(timedelta(days=9))
    with db.uow() as work:
        assert work.notifications.remind_due_tasks(timedelta(days=2)) == 1
    with db.uow() as work:
        assert work.notifications.remind_due_tasks(timedelta(days=2)) == 0
    reminders = [n for n in notifications_of(db, "demo_village") if n.kind == "reminder"]
    assert len(reminders) == 1 and reminders[0].task_id == row.id


def test_reminders_go_out_in_batches_earliest_first_until_none_is_left(db):
    cases = [db.start_case() for _ in range(5)]
    db.clock.advance(timedelta(days=11))  # every 入户核查 (10 days) is overdue
    with db.uow() as work:
        assert work.notifications.remind_due_tasks(timedelta(days=2), limit=2) == 2
    first = {n.task_id for n in notifications_of(db, "demo_village") if n.kind == "overdue"}
    assert first == {db.open_tasks(c)[0].id for c in cases[:2]}  # same due time: by task id
    assert TimerWorker(db.factory, db.clock).remind(timedelta(days=2), batch=2) == 3  # two batches and one
    overdue = [n for n in notifications_of(db, "demo_village") if n.kind == "overdue"]
    assert sorted(n.task_id for n in overdue) == sorted(db.open_tasks(c)[0].id for c in cases)  # each once
    assert TimerWorker(db.factory, db.clock).remind(timedelta(days=2), batch=2) == 0


def test_a_reminder_batch_skips_a_task_a_completion_holds_instead_of_waiting(db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite has one writer, so nothing is held beside a reminder pass)")
    cases = [db.start_case() for _ in range(2)]
    held_id, free_id = (db.open_tasks(c)[0].id for c in cases)
    db.clock.advance(timedelta(days=11))
    with db.engine.connect() as other:  # a completion in progress holds its task row
        other.execute(select(TaskRow.id).where(TaskRow.id == held_id).with_for_update())
        with db.uow() as work:
            work.session.execute(text("SET LOCAL lock_timeout = '2s'"))  # a wait would fail the test, not hang it
            assert work.notifications.remind_due_tasks(timedelta(days=2)) == 1
        other.rollback()
    assert {n.task_id for n in notifications_of(db, "demo_village") if n.kind == "overdue"} == {free_id}
    with db.uow() as work:  # the held one goes out once it is free
        assert work.notifications.remind_due_tasks(timedelta(days=2)) == 1
    assert {n.task_id for n in notifications_of(db, "demo_village") if n.kind == "overdue"} == {free_id, held_id}


def test_unread_notifications_are_counted_and_cleared(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    with db.uow() as work:
        user_id = db.actor("demo_village").user_id
        unread = work.notifications.unread_count(user_id)
        assert unread >= 2  # 入户核查 and 民主评议及村公示 opened for the village
        work.notifications.mark_all_read(user_id)
    with db.uow() as work:
        assert work.notifications.unread_count(user_id) == 0


class _SmtpSink(socketserver.StreamRequestHandler):
    received: list[bytes] = []

    def handle(self):
        self.wfile.write(b"220 sink\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250 sink\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go\r\n")
                body = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    body += chunk
                _SmtpSink.received.append(body)
                self.wfile.write(b"250 ok\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_notifications_are_mailed_through_smtp_when_users_have_an_address(db):
    with db.uow() as work:
        user = work.session.scalar(select(User).where(User.username == "demo_township"))
        user.email = "township@example.org"
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    db.pass_notice()
    _SmtpSink.received = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpSink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        smtp = SmtpSettings("127.0.0.1", server.server_address[1])
        worker = TimerWorker(db.factory, db.clock)
        assert worker.mail(smtp) == 1
        assert worker.mail(smtp) == 0  # sent once
    finally:
        server.shutdown()
        server.server_close()
    (message,) = _SmtpSink.received
    assert b"township@example.org" in message


def test_the_overdue_report_counts_open_and_late_tasks_by_region_and_step_and_exports_to_excel(db):
    late = db.start_case()
    db.clock.advance(timedelta(days=11))  # 入户核查 was due after 10 days
    on_time = db.start_case(subject_id=db.household("李秀英"))
    db.complete(on_time, "demo_village", data=dated(db, D.HOUSEHOLD_CHECK))  # started after the clock moved
    with db.uow() as work:
        lines = work.reports.overdue(db.actor("demo_township"))
        assert [(line.step, line.open_overdue) for line in lines] == [("入户核查", 1)]
        assert work.reports.overdue(db.actor("demo_other_township")) == []
        book = load_workbook(BytesIO(work.reports.to_xlsx(lines)))
    rows = list(book.active.values)
    assert rows[0][:4] == ("区划代码", "地区", "流程", "步骤")
    assert rows[1][3] == "入户核查" and rows[1][4] == 1
    db.complete(late, "demo_village", data=D.HOUSEHOLD_CHECK)
    with db.uow() as work:
        (line,) = [x for x in work.reports.overdue(db.actor("demo_township")) if x.step == "入户核查"]
        assert (line.open_overdue, line.done_late) == (0, 1)


def test_two_workers_racing_fire_every_due_timer_exactly_once(db):
    deploy(db, timer_bundle("t_race", "x = 1"))
    cases = [db.start_case(procedure="t_race") for _ in range(12)]
    for case_id in cases:
        db.complete(case_id, "demo_village", data={"note": "x"})
    db.clock.advance(timedelta(days=2))
    barrier = threading.Barrier(2)
    fired: list[int] = []

    def run():
        barrier.wait()
        fired.append(TimerWorker(db.factory, db.clock, name=threading.current_thread().name).run_once(batch=5))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fired) == 12
    assert audit_count(db, "timer_fired") == 12
    assert all([t.title for t in db.open_tasks(c)] == ["复核"] for c in cases)

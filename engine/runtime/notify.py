"""Notifications: new tasks, 催办 reminders before a limit, outcomes; in-app and, if set, e-mail."""

from __future__ import annotations

import functools
import smtplib
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import cast

from sqlalchemy import Insert, Integer, String, Table, bindparam, func, insert, literal_column, select, true, update
from sqlalchemy.orm import Session

from engine.access.policy import AccessPolicy
from engine.models import Case, Notification, Region, Role, TaskRow, User, UserRole, UTCDateTime

_NOTIFICATION = cast(Table, Notification.__table__)


def _holders_told(task_id, prefix: str = "", new_task=None):
    """INSERT … SELECT: a notification for each active holder of the role ``:role_code`` at ``:scope_code``
    about task task_id (a parameter, or the id column of the CTE new_task), the parameters named with prefix."""
    def param(name: str, type_):
        return bindparam(f"{prefix}{name}", type_=type_)

    holders = select(UserRole.user_id, param("case_id", Integer()), task_id, param("kind", String()),
                     param("title", String()), param("body", String()), param("created_at", UTCDateTime()))
    if new_task is not None:
        holders = holders.select_from(new_task).join(UserRole, true())
    return insert(_NOTIFICATION).from_select(
        ["user_id", "case_id", "task_id", "kind", "title", "body", "created_at"],
        holders.join(User, User.id == UserRole.user_id)
        .where(UserRole.role_code == param("role_code", String()), UserRole.region_code == param("scope_code", String()),
               User.is_active.is_(True)))


# built once (its compiled form and cache key are reused): a notification for each active holder of a
# role at a scope, in one INSERT … SELECT
_TASK_OPENED = _holders_told(bindparam("task_id", type_=Integer())).returning(_NOTIFICATION.c.id)
_NOTIFY = insert(_NOTIFICATION)
# 催办 tasks per transaction (engine.runtime.timers.TimerWorker.remind runs batches until none is left)
REMIND_BATCH = 200


def _notification_rows(user_ids, kind: str, title: str, body: str, case_id: int | None, task_id: int | None,
                       now) -> list[dict[str, object]]:
    """The notification rows for each distinct user, as ``_NOTIFY`` inserts them."""
    return [{"user_id": user_id, "case_id": case_id, "task_id": task_id, "kind": kind, "title": title[:200],
             "body": body, "created_at": now} for user_id in sorted(set(user_ids))]


@functools.cache
def _task_opened_with(task_insert: Insert):
    """``WITH new_task AS (INSERT … RETURNING id), told AS (<_TASK_OPENED for it>) SELECT id, count(told)``."""
    new_task = task_insert.returning(task_insert.table.c.id).cte("new_task")
    told = _holders_told(new_task.c.id, "n_", new_task).returning(_NOTIFICATION.c.id).cte("told")
    return select(new_task.c.id, select(func.count()).select_from(told).scalar_subquery())


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "xiangflow@localhost"
    username: str | None = None
    password: str | None = None
    use_tls: bool = False


class NotificationService:
    def __init__(self, session: Session, clock, access: AccessPolicy):
        self.session = session
        self.clock = clock
        self.access = access

    def holders(self, role_code: str, scope_code: str) -> list[int]:
        """Ids of the active users holding role_code at scope_code."""
        return list(self.session.scalars(
            select(UserRole.user_id).join(User, User.id == UserRole.user_id)
            .where(UserRole.role_code == role_code, UserRole.region_code == scope_code, User.is_active.is_(True))))

    def notify(self, user_ids, kind: str, title: str, body: str = "", case_id: int | None = None,
               task_id: int | None = None) -> int:
        rows = _notification_rows(user_ids, kind, title, body, case_id, task_id, self.clock.now())
        if rows:  # one multi-row INSERT for every holder, not one statement each
            self.session.execute(_NOTIFY, rows)
        return len(rows)

    def task_opened(self, row: TaskRow, case_title: str) -> None:
        """Tell every active holder of a new group task's role at its scope (one INSERT … SELECT)."""
        # RETURNING, not rowcount: psycopg reports -1 for INSERT … SELECT
        told = self.session.execute(_TASK_OPENED, {**self._opened(row, case_title), "task_id": row.id}).first()
        if told is None and row.parent_task_id is None:
            self.task_unstaffed(row, case_title)

    def insert_opened(self, task_insert: Insert, values: dict[str, object], row: TaskRow, case_title: str) -> int:
        """PostgreSQL: ``task_insert`` (one task row, with values) and ``task_opened`` in one statement (the
        row's INSERT a data-modifying WITH clause); return the new row's id."""
        params = {**values, **{f"n_{key}": value for key, value in self._opened(row, case_title).items()}}
        task_id, told = self.session.execute(_task_opened_with(task_insert), params).one()
        if not told and row.parent_task_id is None:
            row.id = task_id
            self.task_unstaffed(row, case_title)
        return task_id

    def _opened(self, row: TaskRow, case_title: str) -> dict[str, object]:
        return {"case_id": row.case_id, "kind": "task", "title": f"新待办:{row.title}"[:200], "body": case_title,
                "created_at": self.clock.now(), "role_code": row.role_code, "scope_code": row.scope_code}

    def task_unstaffed(self, row: TaskRow, case_title: str) -> None:
        """审批人为空: nobody holds the new task's role at its scope; tell the admins of its region (the
        county's, and the system admin above) so they grant the role to someone."""
        role = self.session.get(Role, row.role_code)
        region = self.session.get(Region, row.scope_code)
        self.notify(self.access.region_admin_ids(row.region_code), "unstaffed", f"无人办理:{row.title}",
                    f"{case_title}:{region.name if region else row.scope_code}没有在岗的"
                    f"「{role.name if role else row.role_code}」,请在“无人办理”页授权或指派办理人",
                    case_id=row.case_id, task_id=row.id)

    def remind_due_tasks(self, window: timedelta, limit: int = REMIND_BATCH) -> int:
        """催办: tell the assignees (or the holders) of up to `limit` open tasks due within window, earliest first,
        once per task; return how many were reminded. One batch is one short transaction: rows a completion holds
        are skipped (SKIP LOCKED on PostgreSQL) and come in a later batch, so a reminder pass never waits for a
        user and never keeps one waiting — at province scale a backlog of overdue tasks is a hundred thousand rows."""
        now = self.clock.now()
        ids = list(self.session.scalars(
            select(TaskRow.id).where(TaskRow.status == literal_column("'open'"), TaskRow.reminded_at.is_(None),
                                     TaskRow.due_at.is_not(None), TaskRow.due_at <= now + window)
            .order_by(TaskRow.due_at, TaskRow.id).limit(limit).with_for_update(skip_locked=True)))
        if not ids:
            return 0
        rows = self.session.execute(
            select(TaskRow.id, TaskRow.case_id, TaskRow.title, TaskRow.due_at, TaskRow.assignee_id, TaskRow.role_code,
                   TaskRow.scope_code, Case.title).join(Case, Case.id == TaskRow.case_id)
            .where(TaskRow.id.in_(ids)).order_by(TaskRow.due_at, TaskRow.id)).all()
        holders: dict[tuple[str, str], list[int]] = {}
        notes = []
        for task_id, case_id, title, due_at, assignee_id, role_code, scope_code, case_title in rows:
            if assignee_id:
                people = [assignee_id]
            else:
                if (role_code, scope_code) not in holders:
                    holders[role_code, scope_code] = self.holders(role_code, scope_code)
                people = holders[role_code, scope_code]
            kind, heading = ("overdue", "已超期") if due_at <= now else ("reminder", "即将超期")
            notes += _notification_rows(people, kind, f"{heading}:{title}", case_title, case_id, task_id, now)
        if notes:  # the batch's reminders in one multi-row INSERT
            self.session.execute(_NOTIFY, notes)
        self.session.execute(update(TaskRow).where(TaskRow.id.in_(ids)).values(reminded_at=now)
                             .execution_options(synchronize_session=False))
        return len(rows)

    def unread_count(self, user_id: int) -> int:
        return self.session.scalar(select(func.count(Notification.id)).where(
            Notification.user_id == user_id, Notification.read_at.is_(None))) or 0

    def recent(self, user_id: int, limit: int = 100) -> list[Notification]:
        return list(self.session.scalars(select(Notification).where(Notification.user_id == user_id)
                                         .order_by(Notification.id.desc()).limit(limit)))

    def mark_all_read(self, user_id: int) -> None:
        self.session.execute(update(Notification).where(Notification.user_id == user_id,
                                                        Notification.read_at.is_(None))
                             .values(read_at=self.clock.now()))

    def send_email(self, smtp: SmtpSettings, limit: int = 200) -> int:
        """Mail unsent notifications to users who have an address; return how many were sent."""
        rows = self.session.execute(
            select(Notification, User.email).join(User, User.id == Notification.user_id)
            .where(Notification.emailed_at.is_(None), User.email.is_not(None)).order_by(Notification.id)
            .limit(limit)).all()
        if not rows:
            return 0
        with smtplib.SMTP(smtp.host, smtp.port, timeout=30) as client:
            if smtp.use_tls:
                client.starttls()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            for note, address in rows:
                msg = EmailMessage()
                msg["From"] = smtp.sender
                msg["To"] = address
                msg["Subject"] = f"[乡流] {note.title}"
                msg.set_content(f"{note.title}\n\n{note.body}\n")
                client.send_message(msg)
                note.emailed_at = self.clock.now()
        self.session.flush()
        return len(rows)

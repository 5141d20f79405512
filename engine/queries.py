"""Read-side queries: inboxes and case history, always over indexed rows, never blobs."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from engine.assignment import Actor
from engine.models import AuditEvent, Case, CaseCc, TaskRow, TaskStatus, TimerRow, TimerStatus

VIEWS = ("todo", "done", "started", "cc")


class InboxQueries:
    def __init__(self, session: Session):
        self.session = session

    def _todo_filter(self, actor: Actor):
        scopes = actor.scopes
        if not scopes:
            return None
        return and_(
            TaskRow.status == TaskStatus.open,
            or_(*[and_(TaskRow.role_code == r, TaskRow.scope_code == s) for r, s in sorted(scopes)]),
            or_(TaskRow.assignee_id.is_(None), TaskRow.assignee_id == actor.user_id),
        )

    def todo(self, actor: Actor, limit: int = 200, due: str | None = None, now=None,
             soon=None) -> list[TaskRow]:
        """Open tasks assigned to the actor's roles in their jurisdiction, soonest due first.

        due="overdue" keeps tasks past their due time; due="soon" those due within soon of now.
        """
        flt = self._todo_filter(actor)
        if flt is None:
            return []
        if due == "overdue":
            flt = and_(flt, TaskRow.due_at < now)
        elif due == "soon":
            flt = and_(flt, TaskRow.due_at >= now, TaskRow.due_at <= now + soon)
        stmt = (select(TaskRow).where(flt)
                .order_by(TaskRow.due_at.is_(None), TaskRow.due_at, TaskRow.created_at).limit(limit))
        return list(self.session.scalars(stmt))

    def done(self, actor: Actor, limit: int = 200) -> list[TaskRow]:
        stmt = (select(TaskRow).where(TaskRow.completed_by_id == actor.user_id)
                .order_by(TaskRow.completed_at.desc()).limit(limit))
        return list(self.session.scalars(stmt))

    def started(self, actor: Actor, limit: int = 200) -> list[Case]:
        stmt = (select(Case).where(Case.started_by_id == actor.user_id)
                .order_by(Case.created_at.desc()).limit(limit))
        return list(self.session.scalars(stmt))

    def cc(self, actor: Actor, limit: int = 200) -> list[Case]:
        """抄送我的: cases copied to the actor."""
        stmt = (select(Case).join(CaseCc, CaseCc.case_id == Case.id).where(CaseCc.user_id == actor.user_id)
                .order_by(CaseCc.created_at.desc()).limit(limit))
        return list(self.session.scalars(stmt))

    def counts(self, actor: Actor) -> dict[str, int]:
        flt = self._todo_filter(actor)
        todo = self.session.scalar(select(func.count(TaskRow.id)).where(flt)) if flt is not None else 0
        done = self.session.scalar(select(func.count(TaskRow.id)).where(TaskRow.completed_by_id == actor.user_id))
        started = self.session.scalar(select(func.count(Case.id)).where(Case.started_by_id == actor.user_id))
        cc = self.session.scalar(select(func.count(CaseCc.id)).where(CaseCc.user_id == actor.user_id))
        return {"todo": todo or 0, "done": done or 0, "started": started or 0, "cc": cc or 0}

    def case_tasks(self, case_id: int) -> list[TaskRow]:
        return list(self.session.scalars(select(TaskRow).where(TaskRow.case_id == case_id).order_by(TaskRow.id)))

    def case_history(self, case_id: int) -> list[AuditEvent]:
        return list(self.session.scalars(
            select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.id)))

    def case_timers(self, case_id: int) -> list[TimerRow]:
        return list(self.session.scalars(select(TimerRow).where(TimerRow.case_id == case_id).order_by(TimerRow.id)))

    def subject_cases(self, subject_id: int) -> list[Case]:
        return list(self.session.scalars(
            select(Case).where(Case.subject_id == subject_id).order_by(Case.created_at.desc())))

    def linked_cases(self, case: Case) -> list[Case]:
        """The case this one was started from, and the cases it started."""
        stmt = select(Case).where(or_(Case.parent_case_id == case.id, Case.id == case.parent_case_id))
        return list(self.session.scalars(stmt.order_by(Case.id)))

    def waiting_timer_count(self) -> int:
        return self.session.scalar(select(func.count(TimerRow.id)).where(TimerRow.status == TimerStatus.waiting)) or 0


def merged_data(tasks: list[TaskRow]) -> dict:
    """The case's form data: every approved step's data, later steps winning."""
    data: dict = {}
    for row in tasks:
        if row.status == TaskStatus.completed and row.action == "approve" and row.data:
            data.update(row.data)
    return data


def diagram_marks(case: Case, tasks: list[TaskRow], timers: list[TimerRow]) -> dict[str, list[str]]:
    """Element ids to mark on the case diagram: done, current and returned steps."""
    done = set(case.path or [])
    done |= {r.spec_name for r in tasks if r.status == TaskStatus.completed and r.action == "approve"}
    done |= {t.spec_name for t in timers if t.status == TimerStatus.fired}
    current = {r.spec_name for r in tasks if r.status == TaskStatus.open}
    current |= {t.spec_name for t in timers if t.status == TimerStatus.waiting}
    returned = {r.spec_name for r in tasks if r.action == "return"}
    return {"done": sorted(done - current), "current": sorted(current), "returned": sorted(returned - current)}


def returned_by(tasks: list[TaskRow], row: TaskRow) -> TaskRow | None:
    """The 退回 that reopened row (its step, who, and the reason), or None if row arrived otherwise.

    The last step completed before row was created decides: a return there sent the case to row.
    """
    before = [t for t in tasks if t.status == TaskStatus.completed and t.id < row.id
              and t.completed_at is not None and t.completed_at <= row.created_at]
    if not before:
        return None
    last = max(before, key=lambda t: (t.completed_at, t.id))
    return last if last.action == "return" else None

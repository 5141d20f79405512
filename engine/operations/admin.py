"""Admin operations: timer incidents (retry, skip) and the working-day override table."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from engine.access.assignment import Actor
from engine.access.policy import AccessPolicy
from engine.core.errors import ForbiddenError, NotFoundError, ValidationError
from engine.core.workcalendar import WorkCalendar
from engine.models import Case, HolidayOverride, TimerRow, TimerStatus
from engine.models.audit import AuditLog


class AdminService:
    def __init__(self, session: Session, clock):
        self.session = session
        self.clock = clock

    @staticmethod
    def require_admin(actor: Actor) -> None:
        if not actor.is_admin:
            raise ForbiddenError("只有管理员可以执行此操作")

    def incidents(self, actor: Actor) -> list[TimerRow]:
        """Timers that failed every attempt, in the admin's regions."""
        self.require_admin(actor)
        rows = self.session.scalars(select(TimerRow).where(TimerRow.status == TimerStatus.incident)
                                    .order_by(TimerRow.due_at).options(selectinload(TimerRow.case))).all()
        return [r for r in rows if AccessPolicy.admin_covers(actor, r.case.region_code)]

    def _incident(self, actor: Actor, timer_id: int) -> TimerRow:
        self.require_admin(actor)
        timer = self.session.get(TimerRow, timer_id)
        if timer is None or timer.status != TimerStatus.incident or not AccessPolicy.admin_covers(actor, timer.case.region_code):
            raise NotFoundError("故障定时器不存在")
        return timer

    def retry_incident(self, actor: Actor, timer_id: int) -> None:
        """Put a failed timer back in the queue with a fresh attempt count."""
        timer = self._incident(actor, timer_id)
        timer.status, timer.attempts, timer.claimed_until = TimerStatus.waiting, 0, None
        self._audit(actor, timer.case, "timer_retry", timer.title)

    def skip_incident(self, actor: Actor, timer_id: int, reason: str) -> None:
        """Give up a failed timer: it will not fire; the case's step must be handled by hand."""
        if not (reason or "").strip():
            raise ValidationError("请填写原因", {"reason": "必须填写原因"})
        timer = self._incident(actor, timer_id)
        timer.status, timer.claimed_until = TimerStatus.cancelled, None
        self._audit(actor, timer.case, "timer_skipped", timer.title, reason.strip())

    def overrides(self) -> list[HolidayOverride]:
        return list(self.session.scalars(select(HolidayOverride).order_by(HolidayOverride.day)))

    def set_override(self, actor: Actor, day: date, is_workday: bool, note: str) -> None:
        self.require_admin(actor)
        row = self.session.get(HolidayOverride, day)
        if row is None:
            row = HolidayOverride(day=day, created_at=self.clock.now())
            self.session.add(row)
        row.is_workday, row.note, row.created_by = is_workday, (note or "")[:120], actor.username
        self._audit(actor, None, "calendar_override", f"{day.isoformat()} {'工作日' if is_workday else '休息日'} {note}")

    def delete_override(self, actor: Actor, day: date) -> None:
        self.require_admin(actor)
        row = self.session.get(HolidayOverride, day)
        if row is None:
            raise NotFoundError("该日期没有调整")
        self.session.delete(row)
        self._audit(actor, None, "calendar_override_removed", day.isoformat())

    def calendar_warnings(self) -> list[str]:
        today = self.clock.now().date()
        calendar = WorkCalendar({o.day: o.is_workday for o in self.overrides()})
        return [f"{year} 年的法定节假日尚未录入:工作日期限暂按周末计算,请在国务院公布后录入调休安排。"
                for year in calendar.missing_years(today)]

    def _audit(self, actor: Actor, case: Case | None, action: str, step: str, opinion: str | None = None) -> None:
        AuditLog(self.session, self.clock).record(action, case_id=case.id if case else None,
                                                  user_id=actor.user_id, step=step, opinion=opinion)

"""Overdue report: per region, procedure and step, for township and county users; Excel export."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.models import Case, Procedure, ProcedureVersion, Region, TaskRow, TaskStatus


@dataclass
class OverdueLine:
    region_code: str
    region_name: str
    procedure: str
    step: str
    open_overdue: int
    done_late: int
    open_total: int


class ReportService:
    def __init__(self, session: Session, clock):
        self.session = session
        self.clock = clock

    def overdue(self, actor: Actor) -> list[OverdueLine]:
        """Open overdue tasks and tasks completed late, in the actor's regions, grouped by village/step."""
        prefixes = {g.prefix for g in actor.grants}
        if not prefixes:
            return []
        now = self.clock.now()
        rows = self.session.execute(
            select(TaskRow.region_code, Region.name, Procedure.name, TaskRow.title, TaskRow.status,
                   TaskRow.due_at, TaskRow.completed_at)
            .join(Case, Case.id == TaskRow.case_id)
            .join(ProcedureVersion, ProcedureVersion.id == Case.procedure_version_id)
            .join(Procedure, Procedure.id == ProcedureVersion.procedure_id)
            .join(Region, Region.code == TaskRow.region_code)
            .where(or_(*[TaskRow.region_code.startswith(p) for p in prefixes]))
            .where(TaskRow.status != TaskStatus.cancelled, TaskRow.due_at.is_not(None))
            .where(or_(TaskRow.status == TaskStatus.open,
                       and_(TaskRow.completed_at.is_not(None), TaskRow.completed_at > TaskRow.due_at)))
        ).all()
        lines: dict[tuple, OverdueLine] = {}
        for region_code, region_name, procedure, step, status, due_at, completed_at in rows:
            key = (region_code, procedure, step)
            line = lines.setdefault(key, OverdueLine(region_code, region_name, procedure, step, 0, 0, 0))
            if status == TaskStatus.open:
                line.open_total += 1
                line.open_overdue += int(due_at < now)
            elif completed_at > due_at:
                line.done_late += 1
        return sorted((v for v in lines.values() if v.open_overdue or v.done_late),
                      key=lambda v: (-v.open_overdue, v.region_code, v.procedure, v.step))

    @staticmethod
    def to_xlsx(lines: list[OverdueLine]) -> bytes:
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.title = "超期统计"
        sheet.append(["区划代码", "地区", "流程", "步骤", "超期未办", "超期办结", "在办总数"])
        for line in lines:
            sheet.append([line.region_code, line.region_name, line.procedure, line.step,
                          line.open_overdue, line.done_late, line.open_total])
        out = BytesIO()
        book.save(out)
        return out.getvalue()

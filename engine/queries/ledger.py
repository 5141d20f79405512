"""台账: the cases an actor may see as an Excel workbook (openpyxl), under the inbox's search fields.

One row per case: its number, procedure, subject, region, status, current step, dates and outcome; with a
procedure chosen, every form field of that procedure follows by its Chinese label (the case's approved form
data, later steps winning). ID numbers are masked outside the subject's own village (``may_see_full_id``),
as on every page. Written with openpyxl's write-only workbook, so memory stays flat for a large county.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.access.policy import AccessPolicy
from engine.core.glossary import CASE_STATUS_LABELS
from engine.models import Case, Procedure, ProcedureVersion, Region, TaskRow, TaskStatus, User
from engine.procedures.definitions import DefinitionService
from engine.procedures.expressions import CHINA_TZ
from engine.procedures.forms import mask_id
from engine.queries.inbox import InboxQueries, InboxSearch
from engine.runtime.case_data import merged_data

MAX_ROWS = 50_000
CHUNK = 500
BASE_HEADERS = ("案件编号", "事项", "对象名称", "身份证号", "所在地区", "状态", "当前步骤", "发起人", "发起时间",
                "最近办理时间", "办结时间", "结果说明")


class Ledger:
    def __init__(self, session: Session, definitions: DefinitionService, inbox: InboxQueries):
        self.session = session
        self.definitions = definitions
        self.inbox = inbox

    def cases(self, actor: Actor, search: InboxSearch) -> list[Case]:
        """The cases the actor may see by jurisdiction or as starter, narrowed by the search, oldest first."""
        stmt = select(Case).where(or_(AccessPolicy.jurisdiction_clause(actor), Case.started_by_id == actor.user_id))
        stmt = self.inbox.narrow_cases(stmt, search)
        return list(self.session.scalars(stmt.order_by(Case.id).limit(MAX_ROWS)))

    def workbook(self, actor: Actor, search: InboxSearch) -> bytes:
        """The 台账 as .xlsx bytes: one sheet, Chinese headers, one row per case."""
        cases = self.cases(actor, search)
        labels = self._labels(search.procedure) if search.procedure else {}
        regions = dict(self.session.execute(select(Region.code, Region.name).where(
            Region.code.in_(sorted({c.region_code for c in cases})))).tuples().all()) if cases else {}
        starters = dict(self.session.execute(select(User.id, User.display_name).where(
            User.id.in_(sorted({c.started_by_id for c in cases})))).tuples().all()) if cases else {}
        book = Workbook(write_only=True)
        sheet = book.create_sheet("台账")
        bold = Font(bold=True)
        headers = [*BASE_HEADERS, *labels.values()]
        sheet.append([_bold(sheet, h, bold) for h in headers])
        for start in range(0, len(cases), CHUNK):
            chunk = cases[start:start + CHUNK]
            tasks = self._tasks([c.id for c in chunk])
            for case in chunk:
                rows = tasks.get(case.id, [])
                current = "、".join(r.title for r in rows if r.status == TaskStatus.open) or "—"
                subject = case.subject
                id_number = subject.id_number or ""
                if id_number and not actor.may_see_full_id(subject.region_code):
                    id_number = mask_id(id_number)
                data = merged_data(rows) if labels else {}
                sheet.append([
                    case.id, case.version.procedure.name, _cell(subject.name), id_number,
                    regions.get(case.region_code, case.region_code),
                    CASE_STATUS_LABELS.get(case.status.value, case.status.value), current,
                    starters.get(case.started_by_id, ""), _local(case.created_at), _local(case.updated_at),
                    _local(case.finished_at), _cell(case.outcome_reason),
                    *[_cell(data.get(key)) for key in labels],
                ])
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()

    def _labels(self, procedure_code: str) -> dict[str, str]:
        """Form field key → label over every version of the procedure (newest label wins)."""
        versions = self.session.scalars(select(ProcedureVersion).join(Procedure)
                                        .where(Procedure.code == procedure_code).order_by(ProcedureVersion.version))
        labels: dict[str, str] = {}
        for version in versions:
            labels.update(self.definitions.field_labels(version))
        return labels

    def _tasks(self, case_ids: list[int]) -> dict[int, list[TaskRow]]:
        found: dict[int, list[TaskRow]] = {}
        for row in self.session.scalars(select(TaskRow).where(TaskRow.case_id.in_(case_ids)).order_by(TaskRow.id)):
            found.setdefault(row.case_id, []).append(row)
        return found


def _bold(sheet, value: str, font: Font) -> WriteOnlyCell:
    cell = WriteOnlyCell(sheet, value=value)
    cell.font = font
    return cell


def _local(value: datetime | None) -> str:
    return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") if value else ""


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    if isinstance(value, dict):
        return "、".join(f"{k}:{v}" for k, v in value.items())
    text = str(value)
    return "'" + text if text.startswith("=") else text  # openpyxl stores "=…" as a formula: never one

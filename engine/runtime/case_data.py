"""A case's form data as its task rows hold it (no workflow load)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.models import TaskRow, TaskStatus


def merged_data(tasks: list[TaskRow]) -> dict:
    """The case's form data: every approved step's data, later steps winning."""
    data: dict = {}
    for row in tasks:
        if row.status == TaskStatus.completed and row.action == "approve" and row.data:
            data.update(row.data)
    return data


def case_form_data(session: Session, case_id: int) -> dict:
    """``merged_data`` of one case's task rows, reading only the approved steps' data column."""
    data: dict = {}
    for values in session.scalars(select(TaskRow.data).where(
            TaskRow.case_id == case_id, TaskRow.status == TaskStatus.completed,
            TaskRow.action == "approve").order_by(TaskRow.id)):
        if values:
            data.update(values)
    return data

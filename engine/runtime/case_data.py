"""A case's form data as its task rows hold it (no workflow load)."""

from __future__ import annotations

from engine.models import TaskRow, TaskStatus


def merged_data(tasks: list[TaskRow]) -> dict:
    """The case's form data: every approved step's data, later steps winning."""
    data: dict = {}
    for row in tasks:
        if row.status == TaskStatus.completed and row.action == "approve" and row.data:
            data.update(row.data)
    return data

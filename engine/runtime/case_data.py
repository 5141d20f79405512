"""A case's form data as its task rows hold it (no workflow load).

The rule, stated once in ``_COUNTS`` and ``_merged``: a row's ``data`` counts when the row was completed with
``approve``; the counting rows are merged in id order, a later step's value winning. ``merged_data`` applies it
to rows in memory, ``case_form_data`` to the rows in the database (the same columns as a WHERE clause).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from engine.models import TaskRow, TaskStatus

# the columns a row must have for its data to count, and their values
_COUNTS: dict[str, Any] = {"status": TaskStatus.completed, "action": "approve"}
# built once: the counting rows' data column of one case, in id order
_FORM_DATA = select(TaskRow.data).where(TaskRow.case_id == bindparam("case_id"),
                                        *(getattr(TaskRow, column) == value for column, value in _COUNTS.items())) \
    .order_by(TaskRow.id)


def _counts(row: TaskRow) -> bool:
    return all(getattr(row, column) == value for column, value in _COUNTS.items())


def _merged(datas: Iterable[dict | None]) -> dict:
    """The counting rows' data, given in id order, merged: later steps win."""
    data: dict = {}
    for values in datas:
        if values:
            data.update(values)
    return data


def merged_data(tasks: list[TaskRow]) -> dict:
    """The case's form data from its task rows (given in id order): every approved step's data, later steps winning."""
    return _merged(row.data for row in tasks if _counts(row))


def case_form_data(session: Session, case_id: int) -> dict:
    """``merged_data`` of one case's task rows, reading only the approved steps' data column."""
    return _merged(session.scalars(_FORM_DATA, {"case_id": case_id}))

"""A case's form data has one rule (engine/runtime/case_data.py): the rows in memory and the query agree."""

from __future__ import annotations

from sqlalchemy import select

from engine import demo_data as D
from engine.models import TaskRow
from engine.runtime.case_data import case_form_data, merged_data


def test_merged_data_of_the_rows_and_case_form_data_of_the_database_agree(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    username, data = D.REVIEW_STEPS[0]
    db.complete(case_id, username, data=data)
    with db.uow() as work:
        rows = list(work.session.scalars(select(TaskRow).where(TaskRow.case_id == case_id).order_by(TaskRow.id)))
        merged = merged_data(rows)
        assert merged == case_form_data(work.session, case_id)
        assert set(D.HOUSEHOLD_CHECK) <= set(merged)  # the first step's fields, with later steps winning

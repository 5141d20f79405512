"""撤回 takes a decision back, so it needs a reason like 退回 and 不通过 do: without one it is refused and
nothing changes; the reason is in the case history."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from engine import demo_data as D
from engine.core.errors import ValidationError
from engine.models import AuditEvent


def _reviewed(db) -> int:
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    return case_id


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_withdraw_without_a_reason_is_refused_and_changes_nothing(db, reason):
    case_id = _reviewed(db)
    before = [t.id for t in db.open_tasks(case_id)]
    with db.uow() as work, pytest.raises(ValidationError) as refused:
        work.cases.withdraw(case_id, db.actor("demo_village"), reason)
    assert refused.value.errors == {"opinion": "撤回时必须填写原因"}
    assert [t.id for t in db.open_tasks(case_id)] == before


def test_the_reason_is_recorded(db, client_for):
    case_id = _reviewed(db)
    village = client_for("demo_village")
    assert village.post(f"/api/v1/cases/{case_id}/withdraw", json={}).status_code == 422
    assert village.post(f"/api/v1/cases/{case_id}/withdraw", json={"opinion": "评议材料需补充"}).status_code == 200
    with db.uow() as work:
        (event,) = work.session.scalars(select(AuditEvent).where(AuditEvent.action == "withdraw"))
        assert event.opinion == "评议材料需补充"

"""The pickers offer exactly the people the access rule accepts: every candidate passes the rule that
抄送/委派/加签 (recipient) or 转办 (transfer_recipient) enforces, and nobody it refuses is offered."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from engine.core.errors import ValidationError
from engine.models import Case, User


def test_candidates_are_exactly_whom_the_rule_accepts(db, exit_case):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    village = db.actor("demo_village")
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        offered = {c.username for c in work.access.candidates(case, village)}
        assert "demo_village" not in offered  # never oneself
        assert {"demo_township", "demo_dept", "demo_county", "demo_clerk"} <= offered
        for user in work.session.scalars(select(User).where(User.is_active.is_(True), User.username != "demo_village")):
            try:
                work.access.recipient(user.username, case, village, "to")
                accepted = True
            except ValidationError:
                accepted = False
            assert accepted == (user.username in offered), user.username
        labels = {c.username: c.label for c in work.access.candidates(case, village)}
        assert labels["demo_township"].startswith("宝梵镇乡村振兴办(演示) · ")


def test_transfer_offers_only_the_same_post_at_the_same_scope(db, exit_case):
    (row,) = db.open_tasks(exit_case(0))
    with db.uow() as work:
        work.directory.create_user("village_two", "第二位村干部", "Pass-word-2026", [("village_cadre", row.scope_code)])
    with db.uow() as work:
        case = work.session.get(Case, row.case_id)
        offered = [c.username for c in work.access.candidates(case, db.actor("demo_village"), row=row)]
        assert offered == ["village_two"]
        with pytest.raises(ValidationError):
            work.access.transfer_recipient("demo_other_village", row, db.actor("demo_village"), "to")

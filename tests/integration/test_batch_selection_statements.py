"""批量审批's selection check costs the same few statements for 2 tasks as for 4 (not 2-3 queries per task)."""

from __future__ import annotations

from tests.integration.statements_support import counted
from tests.integration.test_batch_approval import _recheck_tasks


def _statements(db, ids: list[int]) -> int:
    actor = db.actor("demo_township")
    with db.uow() as work:
        with counted(work.session.get_bind()) as statements:
            rows = work.batch.selection(ids, actor)
        assert [r.id for r in rows] == ids  # in the order chosen, every one eligible
        return len(statements)


def test_the_selection_is_checked_in_a_constant_number_of_statements(db, exit_case):
    rows = _recheck_tasks(db, exit_case, count=4)
    ids = [r.id for r in rows]
    two, four = _statements(db, ids[:2]), _statements(db, ids)
    assert four == two
    assert four <= 3  # the rows, their cases (with versions), and nothing per task

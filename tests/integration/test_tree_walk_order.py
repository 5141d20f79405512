"""The projections' own walk of the task tree visits the tasks SpiffWorkflow's iterator does, in its order
(the task rows of parallel branches are opened in this order)."""

from __future__ import annotations

from engine import demo_data as D
from engine.models import Case
from engine.runtime.projections import tasks_in_order


def _same_order(db, case_id: int) -> tuple[int, int]:
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        workflow = work.cases.pipeline.load(case)
        expected = [t.id for t in workflow.get_tasks_iterator()]
        assert [t.id for t in tasks_in_order(workflow)] == expected
        return len(expected), len(workflow.subprocesses)


def test_the_walk_matches_spiffworkflows_iterator_through_a_case_with_a_subprocess(db):
    case_id = db.start_case()  # monitoring_exit: its 村级公示 period is a subprocess
    sizes = [_same_order(db, case_id)]
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    sizes.append(_same_order(db, case_id))
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    sizes.append(_same_order(db, case_id))
    db.issue_notices(case_id)  # the 公示 runs: its subprocess waits for the period or an objection
    sizes.append(_same_order(db, case_id))
    assert all(tasks > 10 for tasks, _subs in sizes)
    assert any(subs for _tasks, subs in sizes)  # a subprocess's tree was part of a walk

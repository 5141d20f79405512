from datetime import timedelta

from engine import demo_data as D
from engine.models import CaseStatus, TaskStatus


def test_exit_case_runs_to_exited_and_follow_up_fires_after_six_months(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    for username, data in D.REVIEW_STEPS:
        db.complete(case_id, username, data=data)
    assert db.case(case_id).status == CaseStatus.exited
    db.clock.advance(timedelta(days=200))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    (row,) = db.open_tasks(case_id)
    assert row.title == "回访" and row.status == TaskStatus.open

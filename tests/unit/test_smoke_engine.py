from datetime import timedelta

from engine import demo_data as D
from engine.models import CaseStatus, TaskStatus
from tests.integration.notices_support import complete_exit_notice


def test_exit_case_runs_to_exited_and_follow_up_fires_after_six_months(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    for number, (username, data) in enumerate(D.REVIEW_STEPS):
        db.complete(case_id, username, data=data)
        if number in (0, 3):  # 民主评议 → 出具村级公示 → its period; 县级公告 → 出具县级公告 → its period
            assert [r.actions for r in db.open_tasks(case_id)] == ["issue"]
            assert db.pass_notice() == 1  # issues the notice, then the period runs out
    complete_exit_notice(db, case_id)  # 退出告知: the 退出告知书 is issued first
    assert db.case(case_id).status == CaseStatus.exited
    db.clock.advance(timedelta(days=200))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 1
    (row,) = db.open_tasks(case_id)
    assert row.title == "回访" and row.status == TaskStatus.open

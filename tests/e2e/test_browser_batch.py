"""批量审批 in Debian chromium: the township officer ticks three 镇复核 tasks in the inbox, fills the step's
form and one opinion once, and each case moves on to 部门审定 with its own record."""

from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import func, select

from engine import demo_data as D
from engine.models import AuditEvent, Subject

OPINION = "三户材料齐全,复核无误"


def _at_township_recheck(db, count: int = 3) -> list[int]:
    actor = db.actor("demo_village")
    with db.uow() as work:
        names = [s.name for s in work.session.scalars(select(Subject).where(Subject.kind == "household")
                                                       .order_by(Subject.id)) if actor.covers(s.region_code)]
    # started on one day and through one 村级公示: their dates (not before the start) are that day
    cases = [db.start_case("demo_village", subject_id=db.household(name)) for name in names[:count]]
    for case_id in cases:
        db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
        db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    assert db.pass_notice() == count
    for case_id in cases:
        assert [t.spec_name for t in db.open_tasks(case_id)] == ["township_recheck"]
    return cases


def test_three_tasks_approved_in_one_batch(db, user_page):
    cases = _at_township_recheck(db)
    page = user_page("demo_township")
    checks = page.get_by_test_id("batch-check")
    expect(checks).to_have_count(3)
    for i in range(3):
        checks.nth(i).check()
    page.get_by_test_id("batch-start").click()
    expect(page.get_by_test_id("batch-task")).to_have_count(3)
    page.get_by_label("核查、评议、公示材料齐全").check()
    page.get_by_label("复核日期").fill(D.TOWNSHIP_RECHECK["recheck_date"])  # not after today
    page.get_by_label("审批意见(适用于每一项)").fill(OPINION)
    page.get_by_test_id("batch-submit").click()
    expect(page.get_by_test_id("batch-summary")).to_have_text("已通过 3 项。")
    expect(page.get_by_test_id("batch-result")).to_have_count(3)
    for case_id in cases:
        assert [t.spec_name for t in db.open_tasks(case_id)] == ["dept_decision"]
        with db.uow() as work:
            assert work.session.scalar(select(func.count(AuditEvent.id)).where(
                AuditEvent.case_id == case_id, AuditEvent.action == "approve", AuditEvent.opinion == OPINION)) == 1

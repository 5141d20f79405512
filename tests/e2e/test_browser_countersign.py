"""项目库 领导小组审定 as a 会签 in a real browser: three leading-group members sign one after another.

The case is driven through 村申请, 镇初审 and 部门审核 by the engine; then demo_leader1..3 each log
in to Chromium, find their own 会签 task in 待办 with the step's progress, tick the form and approve
with an opinion. The county's leading group has four members (demo_county too): the third
agreement is more than half, so the case moves on to 审定结果登记 and demo_county's row is
cancelled — it leaves that member's 待办 without anyone acting on it.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.integration.test_procedure_project_library import REVIEWS, _do, _start

pytestmark = pytest.mark.e2e

STEP = "领导小组审定"
LEADERS = ("demo_leader1", "demo_leader2", "demo_leader3")


def test_three_leading_group_members_sign_and_the_case_moves_on_once_more_than_half_agree(db, user_page):
    case_id = _start(db)
    for step, _title, user, _role, _scope, data in REVIEWS[:3]:  # 村申请, 镇初审, 部门审核
        _do(db, case_id, step, user, data=data)
    title = db.case(case_id).title
    page_errors: list[str] = []

    for signed, username in enumerate(LEADERS):
        page = user_page(username)
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        row = page.get_by_test_id("task-row").filter(has_text=title)
        expect(row).to_have_count(1)  # their own instance only, never another member's
        expect(row).to_contain_text(f"{STEP}(会签 {signed}/4)")
        row.get_by_role("link", name=re.compile(STEP)).click()
        expect(page.get_by_test_id("countersign-progress")).to_have_text(f"(会签 {signed}/4)")
        expect(page.get_by_test_id("countersign-note")).to_contain_text("本步骤由 4 人分别办理")
        expect(page.get_by_role("button", name="不同意")).to_be_visible()
        page.get_by_label("已审阅项目申报、镇初审和部门审核材料").check()
        page.get_by_label("审批意见").fill(f"{username} 同意纳入储备库")
        page.get_by_role("button", name="通过").click()
        expect(page).to_have_url(re.compile(rf"/cases/{case_id}$"))
        expect(page.get_by_role("status")).to_contain_text(f"已通过「{STEP}」")
        if signed < 2:
            expect(page.get_by_test_id("current-steps")).to_contain_text(STEP)
        else:  # 3 of 4 agreed: the 会签 is decided
            expect(page.get_by_test_id("current-steps")).to_have_text("审定结果登记")
            for other in LEADERS:
                expect(page.get_by_text(f"{other} 同意纳入储备库")).to_be_visible()  # each opinion in the history
        page.context.close()

    county = user_page("demo_county")  # the fourth member's 会签 task was cancelled: 无需处理
    rows = county.get_by_test_id("task-row").filter(has_text=title)
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("审定结果登记")
    expect(rows).not_to_contain_text(STEP)
    assert page_errors == []

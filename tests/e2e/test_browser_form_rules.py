"""Form rules as the approver sees them in Debian chromium, at a desk (1366 × 768) and on a phone (375 × 812):
补助兑付 shows the approved subsidy beside the amount and the browser refuses more; 预判日期 shows only for
季度集中预判; a check date cannot be picked after today."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from engine.bootstrap import DEMO_PASSWORD
from tests.integration.test_procedure_housing_renovation import _run_to, _start

SIZES = [(1366, 768), (375, 812)]
SHOTS = os.environ.get("XIANGFLOW_SHOTS")  # a folder: save what the test looked at (not committed)


def _page_of(browser, live_server, username, width, height):
    context = browser.new_context(base_url=live_server, locale="zh-CN", viewport={"width": width, "height": height})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_test_id("current-user")).to_be_visible()
    return context, page


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_payment_step_shows_the_approved_subsidy_and_the_browser_refuses_more(
        browser, live_server, db, width, height):
    case_id = _start(db)
    _run_to(db, case_id, "subsidy_payment")
    (row,) = [r for r in db.open_tasks(case_id) if r.spec_name == "subsidy_payment"]
    context, page = _page_of(browser, live_server, "demo_dept", width, height)
    try:
        page.goto(f"/tasks/{row.id}")
        field = page.locator('[data-field="amount_paid"]')
        expect(field.get_by_test_id("field-bound")).to_have_text("核定补助 35,000 元(不能超过)")
        expect(field.get_by_test_id("field-bound")).to_be_visible()
        amount = page.get_by_label("兑付金额(元)")
        amount.fill("40000")
        assert amount.evaluate("e => e.validity.rangeOverflow")  # the browser stops it before sending
        amount.fill("35000")
        assert amount.evaluate("e => e.validity.valid")
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        if SHOTS:
            field.scroll_into_view_if_needed()
            page.screenshot(path=f"{SHOTS}/payment-{width}.png")
    finally:
        context.close()


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_pre_assessment_date_shows_only_for_the_quarterly_assessment_and_check_dates_stop_at_today(
        browser, live_server, db, width, height):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    context, page = _page_of(browser, live_server, "demo_village", width, height)
    try:
        page.goto(f"/tasks/{row.id}")
        pre = page.locator('[data-field="pre_assessment_date"]')
        expect(pre).to_be_hidden()  # nothing chosen yet
        page.get_by_label("季度集中预判").check()
        expect(pre).to_be_visible()
        page.get_by_label("农户提出").check()
        expect(pre).to_be_hidden()
        assert page.locator("#f_pre_assessment_date").is_disabled()  # not sent while hidden
        assert page.locator("#f_check_date").get_attribute("max") == db.clock.now().date().isoformat()
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        if SHOTS:
            page.get_by_label("季度集中预判").check()
            pre.scroll_into_view_if_needed()
            page.screenshot(path=f"{SHOTS}/household-check-{width}.png")
    finally:
        context.close()


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_exit_notice_step_prompts_the_village_to_issue_the_notice_it_hands_over(
        browser, live_server, db, width, height):
    from tests.integration.notices_support import case_at, ensure_office_keys

    ensure_office_keys(db)
    case_id = case_at(db, db.household("刘桂芳"), "exit_notice")
    (row,) = db.open_tasks(case_id)
    context, page = _page_of(browser, live_server, "demo_village", width, height)
    try:
        page.goto(f"/tasks/{row.id}")
        prompt = page.get_by_test_id("step-notice-prompt")
        expect(prompt).to_contain_text("本步骤须送达退出告知书")
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/exit-notice-{width}.png")
        prompt.get_by_test_id("step-notice-link").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("退出告知书")
        expect(page.locator(f"#c{case_id}")).to_be_checked()  # this case, preselected
    finally:
        context.close()

"""Form rules as the approver sees them in Debian chromium, at a desk (1366 × 768) and on a phone (375 × 812):
补助兑付 shows the approved subsidy beside the amount and the browser refuses more; 预判日期 shows only for
季度集中预判; a check date cannot be picked after today nor before the case started (and the server says so when
a browser sends one anyway); 退出告知 is refused until its 退出告知书 is issued, then issued and completed."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from engine import demo_data as D
from engine.bootstrap import DEMO_PASSWORD
from engine.procedures.expressions import CHINA_TZ as CHINA
from tests.e2e.forms_support import fill_household_check
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
def test_a_check_date_before_the_case_started_cannot_be_picked_and_the_server_refuses_it_by_name(
        browser, live_server, db, width, height):
    case_id = db.start_case()  # started on the clock's 2026-09-01 (China time)
    started = db.case(case_id).created_at.astimezone(CHINA).date()
    db.clock.advance(timedelta(days=2))  # the village checks two days later
    today = db.clock.now().astimezone(CHINA).date()
    (row,) = db.open_tasks(case_id)
    context, page = _page_of(browser, live_server, "demo_village", width, height)
    try:
        page.goto(f"/tasks/{row.id}")
        check_date = page.locator("#f_check_date")
        assert (check_date.get_attribute("min"), check_date.get_attribute("max")) == (
            started.isoformat(), today.isoformat())
        check_date.fill((started - timedelta(days=1)).isoformat())
        assert check_date.evaluate("e => e.validity.rangeUnderflow")  # the browser stops it before sending
        check_date.fill(started.isoformat())
        assert check_date.evaluate("e => e.validity.valid")
        # the 预判 that led to the case may lie before it: no such bound there
        page.get_by_label("季度集中预判").check()
        assert page.locator("#f_pre_assessment_date").get_attribute("min") == "2000-01-01"

        # a browser that sends an earlier date anyway (no min support): the server refuses it, naming field and day
        fill_household_check(page)
        check_date.evaluate("(e, day) => { e.removeAttribute('min'); e.value = day; }",
                            (started - timedelta(days=1)).isoformat())
        page.get_by_role("button", name="提交").click()
        error = page.locator('[data-field="check_date"] .field-error')
        expect(error).to_have_text(f"「核查日期」不能早于本案发起日期 {started.isoformat()}")
        expect(page.get_by_role("alert").first).to_contain_text("提交未成功")
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        if SHOTS:
            error.scroll_into_view_if_needed()
            page.screenshot(path=f"{SHOTS}/check-date-before-start-{width}.png")
        assert [r.spec_name for r in db.open_tasks(case_id)] == ["household_check"]  # nothing moved
    finally:
        context.close()


@pytest.fixture
def at_exit_notice(snapshot_db):
    """The database with 刘桂芳's exit case at 退出告知 (two signed notices on the way), built once per session."""
    from tests.integration.notices_support import exit_notice_case

    return snapshot_db(exit_notice_case)


@pytest.mark.db_snapshot("at_exit_notice")
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_exit_notice_step_is_refused_until_the_village_issues_the_notice_then_completes(
        browser, live_server, db, at_exit_notice, width, height):
    case_id = at_exit_notice.value
    (row,) = db.open_tasks(case_id)
    context, page = _page_of(browser, live_server, "demo_village", width, height)

    def fill_exit_notice():
        page.locator("#f_notice_delivered_date").fill(db.clock.now().astimezone(CHINA).date().isoformat())
        page.get_by_label("监测户已签收退出告知书").check()
        page.get_by_label("已在全国防返贫监测系统标注风险消除").check()
        page.get_by_label("审批意见").fill("已书面告知农户退出。")

    try:
        page.goto(f"/tasks/{row.id}")
        prompt = page.get_by_test_id("step-notice-prompt")
        expect(prompt).to_contain_text("本步骤须送达退出告知书")
        # ticking 已签收 without a 告知书: refused, and the page says what to do first
        fill_exit_notice()
        page.get_by_role("button", name="提交").click()
        expect(page.get_by_test_id("notice-required")).to_have_text(
            "请先出具退出告知书:本步骤须将退出告知书送达农户签收,出具后再办理本步骤")
        expect(page.get_by_test_id("step-notice-link")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/exit-notice-refused-{width}.png")
        assert [r.spec_name for r in db.open_tasks(case_id)] == ["exit_notice"]

        page.get_by_test_id("step-notice-link").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("退出告知书")
        expect(page.locator(f"#c{case_id}")).to_be_checked()  # this case, preselected
        page.get_by_label("联系电话").fill(D.EXIT_NOTICE_FIELDS["contact_phone"])
        page.get_by_test_id("issue-one").click()
        expect(page.get_by_role("status")).to_contain_text("已签发")

        page.goto(f"/tasks/{row.id}")
        expect(page.get_by_test_id("step-notice-prompt")).to_contain_text("已出具退出告知书")
        fill_exit_notice()
        page.get_by_role("button", name="提交").click()
        expect(page).to_have_url(f"{live_server}/cases/{case_id}")
        expect(page.get_by_role("status")).to_contain_text("已提交「退出告知」")
        expect(page.get_by_test_id("case-status")).to_have_text("已退出")
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    finally:
        context.close()

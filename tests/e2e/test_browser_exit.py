"""四步法 exit in a real browser: four levels log in one after another and take the case to 已退出.

入户核查 and 民主评议 by the village, 出具村级公示 (the village signs the notice on the 公示公告 page,
reached from the step's task page) and the 村级公示 period, 镇复核, 部门审定, 县级公告, 出具县级公告 and
the 县级公告期, then 退出告知 by the village. The notice periods run out by moving the clock the live server
shares with the test and firing the due timers in-process (``run_out_notice``).

Headless Chromium through Playwright against the live app (CSRF on). No sleeps: every wait is
Playwright's auto-waiting or ``expect``. The final case page is saved to /tmp/xiangflow_case.png.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import Page, expect

from engine import demo_data as D
from engine.bootstrap import DEMO_PASSWORD
from tests.e2e.forms_support import fill_household_check
from tests.e2e.signature_support import sign_on_pad
from web.filters import cn_datetime

pytestmark = pytest.mark.e2e

HOUSEHOLD = "张德明"
PROCEDURE = "监测户风险消除退出(四步法)"
CASE_TITLE = f"{HOUSEHOLD} · {PROCEDURE}"
SCREENSHOT = "/tmp/xiangflow_case.png"
NAMES = {
    "demo_village": "宝梵镇村干部(演示)",
    "demo_township": "宝梵镇乡村振兴办(演示)",
    "demo_dept": "蓬溪县乡村振兴局(演示)",
    "demo_county": "蓬溪县领导小组(演示)",
    "demo_other_township": "赤城镇乡村振兴办(演示)",
    None: "系统",  # timer firings
}
CASE_URL = re.compile(r"/cases/(\d+)$")


def log_in(page: Page, username: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))  # not logged in: sent to the login form
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_test_id("current-user")).to_have_text(NAMES[username])
    expect(page.get_by_test_id("tab-todo")).to_contain_text("待办")
    expect(page.get_by_test_id("tab-todo")).to_have_class(re.compile(r"\bactive\b"))


def log_out(page: Page) -> None:
    page.get_by_role("button", name="退出登录").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("status")).to_have_text("已退出登录")
    expect(page.get_by_test_id("current-user")).to_have_count(0)


def expect_submitted(page: Page, case_id: int, now_at: str) -> None:
    """After a successful submit the app redirects to the case page, now at the next step."""
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}$"))
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^已(提交|通过)「"))  # names the step it did
    expect(page.get_by_test_id("current-steps")).to_have_text(now_at)


def open_from_inbox(page: Page, step: str) -> None:
    """Find the case's task in 待办 and open it."""
    row = page.get_by_test_id("task-row").filter(has_text=CASE_TITLE)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(step)
    row.get_by_role("link", name=CASE_TITLE).click()  # the case page first, as a reviewer would
    expect(page.get_by_test_id("current-steps")).to_have_text(step)
    page.get_by_role("link", name=f"办理:{step}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(step)


def issue_notice(page: Page, case_id: int, step: str, fields: dict[str, str]) -> None:
    """Open the 出具 step, follow its link to the 公示公告 page (this case preselected), fill in the
    notice and sign it; then back to the case page."""
    page.get_by_role("link", name=f"办理:{step}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(step)
    expect(page.get_by_test_id("issue-step-note")).to_contain_text("签发")
    page.get_by_test_id("issue-notice-link").click()
    expect(page.locator(f"#c{case_id}")).to_be_checked()
    for label, value in fields.items():
        page.get_by_label(label).fill(value)
    page.get_by_test_id("issue-one").click()
    expect(page.get_by_role("status")).to_contain_text("已签发")
    page.goto(f"/cases/{case_id}")
    expect(page.get_by_test_id("current-steps")).to_have_text("—")


def expect_notice_period(page: Page, timer_title: str, due_text: str, objection: str) -> None:
    """The case page while a public notice is up: no current step, the period's end, the objection form."""
    expect(page.get_by_test_id("current-steps")).to_have_text("—")
    expect(page.get_by_test_id("waiting-timer")).to_have_count(1)
    expect(page.locator("dl.kv dt", has_text=timer_title)).to_be_visible()
    expect(page.get_by_test_id("waiting-timer")).to_have_text(due_text)
    expect(page.get_by_test_id(f"event-{objection}")).to_be_visible()


def expect_notice_over(page: Page, now_at: str, objection: str) -> None:
    """After the notice period ran out (reloaded): the next level's step, no timer, no objection form."""
    page.reload()
    expect(page.get_by_test_id("current-steps")).to_have_text(now_at)
    expect(page.get_by_test_id("waiting-timer")).to_have_count(0)
    expect(page.get_by_test_id(f"event-{objection}")).to_have_count(0)


def fill_village_review(page: Page) -> None:
    d = D.VILLAGE_REVIEW
    page.locator("#f_review_date").fill(d["review_date"])
    page.get_by_label("参会人数").fill(str(d["attendees"]))
    page.get_by_label(d["review_result"], exact=True).check()
    page.get_by_label("审批意见").fill("民主评议通过,进入村级公示。")


def fill_exit_notice(page: Page) -> None:
    d = D.EXIT_NOTICE
    page.locator("#f_notice_delivered_date").fill(d["notice_delivered_date"])
    page.get_by_label("监测户已签收退出告知书").check()
    page.get_by_label("已在全国防返贫监测系统标注风险消除").check()
    page.get_by_label("审批意见").fill("已书面告知农户退出。")


def test_four_levels_take_an_exit_case_to_exited_in_the_browser(page: Page, live_server, db, run_out_notice):
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    notice = timedelta(days=D.NOTICE_DAYS)

    # ---- 村: start the case, 入户核查 (first with a required field left empty), 民主评议
    log_in(page, "demo_village")
    page.get_by_role("link", name="发起流程").click()
    expect(page).to_have_url(re.compile(r"/cases/new$"))
    page.get_by_label("流程").select_option(label=f"{PROCEDURE}(v1)")
    page.get_by_label("农户").select_option(label=f"{HOUSEHOLD}(脱贫不稳定户)")
    page.get_by_role("button", name="发起").click()
    expect(page.get_by_role("status")).to_have_text("流程已发起")
    expect(page.get_by_role("heading", level=1)).to_contain_text("入户核查")
    task_url = page.url
    case_href = page.get_by_role("link", name=CASE_TITLE).get_attribute("href")
    match = CASE_URL.search(case_href or "")
    assert match, case_href
    case_id = int(match.group(1))

    fill_household_check(page, skip="industry_employment")
    page.get_by_role("button", name="提交").click()
    error = page.locator('[data-field="industry_employment"] .field-error')
    expect(error).to_have_text("三查:家庭产业就业情况: 必填")
    expect(page.locator('[data-field="industry_employment"]')).to_have_class(re.compile(r"\bhas-error\b"))
    expect(page.get_by_role("alert").first).to_contain_text("提交未成功")
    expect(page).to_have_url(task_url)  # still the same task, still open, other values kept
    expect(page.get_by_role("heading", level=1)).to_contain_text("待办")
    expect(page.locator("#f_household_size")).to_have_value(str(D.HOUSEHOLD_CHECK["household_size"]))
    expect(page.locator("#f_check_date")).to_have_value(D.HOUSEHOLD_CHECK["check_date"])

    fill_household_check(page)
    sign_on_pad(page)  # the household signs on the pad (农户签字) before the check is submitted
    page.get_by_role("button", name="提交").click()
    expect_submitted(page, case_id, "民主评议")

    page.get_by_role("link", name="办理:民主评议").click()
    fill_village_review(page)
    page.get_by_role("button", name="通过", exact=True).click()
    expect_submitted(page, case_id, "出具村级公示")

    # ---- 出具村级公示: the village signs the notice; its period starts then
    issue_notice(page, case_id, "出具村级公示", {"村委会联系电话": "0825-5421234", "乡镇监督电话": "0825-5420000"})

    # ---- 村级公示: no task for anyone for settings.notice_days, the village may object
    expect_notice_period(page, "村级公示期满", cn_datetime(db.clock.now() + notice), "village_objection")
    assert run_out_notice() == 1
    expect_notice_over(page, "镇复核", "village_objection")
    log_out(page)

    # ---- 镇 复核
    log_in(page, "demo_township")
    open_from_inbox(page, "镇复核")
    page.get_by_label("核查、评议、公示材料齐全").check()
    page.locator("#f_recheck_date").fill(D.TOWNSHIP_RECHECK["recheck_date"])
    page.get_by_label("审批意见").fill("材料齐全,同意退出。")
    page.get_by_role("button", name="通过", exact=True).click()
    expect_submitted(page, case_id, "部门审定")
    log_out(page)

    # ---- 县级行业部门 审定
    log_in(page, "demo_dept")
    open_from_inbox(page, "部门审定")
    page.get_by_label("行业部门数据核实无误").check()
    page.get_by_label("审定部门").fill(D.DEPT_DECISION["department_name"])
    page.get_by_label("审批意见").fill("行业数据核实无误。")
    page.get_by_role("button", name="通过", exact=True).click()
    expect_submitted(page, case_id, "县级公告")
    log_out(page)

    # ---- 县领导小组 公告
    log_in(page, "demo_county")
    open_from_inbox(page, "县级公告")
    assert page.get_by_label("公告文号").count() == 0  # asked once: on the notice, at 出具县级公告
    page.locator("#f_announcement_date").fill(D.COUNTY_ANNOUNCEMENT["announcement_date"])
    page.get_by_label("审批意见").fill("同意公告退出。")
    page.get_by_role("button", name="通过", exact=True).click()
    expect_submitted(page, case_id, "出具县级公告")
    issue_notice(page, case_id, "出具县级公告", {"公告文号": D.COUNTY_NOTICE_FIELDS["document_number"],
                                            "监督电话": "0825-5400000"})

    # ---- 县级公告期: the county leader may object until it runs out
    expect_notice_period(page, "公告期满", cn_datetime(db.clock.now() + notice), "county_objection")
    expect(page.get_by_test_id("case-status")).to_have_text("办理中")
    assert run_out_notice() == 1
    expect_notice_over(page, "退出告知", "county_objection")
    log_out(page)

    # ---- 村 退出告知: first the 退出告知书 (the step's prompt links to it, this case preselected), then the step
    log_in(page, "demo_village")
    open_from_inbox(page, "退出告知")
    page.get_by_test_id("step-notice-link").click()
    expect(page.locator(f"#c{case_id}")).to_be_checked()
    page.get_by_label("联系电话").fill(D.EXIT_NOTICE_FIELDS["contact_phone"])
    page.get_by_test_id("issue-one").click()
    expect(page.get_by_role("status")).to_contain_text("已签发")
    page.goto(f"/cases/{case_id}")
    page.get_by_role("link", name="办理:退出告知").click()
    fill_exit_notice(page)
    page.get_by_role("button", name="提交").click()
    expect_submitted(page, case_id, "—")

    # ---- the finished case page
    expect(page.get_by_test_id("case-status")).to_have_text("已退出")
    expect(page.locator("dl.kv dt", has_text="退出满六个月")).to_be_visible()
    expect(page.get_by_test_id("waiting-timer")).to_have_count(1)
    # told after two notice periods (7 days + the hour the test lets pass, twice): 回访 six months on
    assert db.clock.now() == datetime(2026, 9, 15, 3, 0, tzinfo=timezone.utc)
    expect(page.get_by_test_id("waiting-timer")).to_have_text("2027-03-15 11:00")  # China time

    history = page.get_by_test_id("history").locator("li")
    expected = [
        ("发起", None, "demo_village"),
        ("上传附件", "入户核查", "demo_village"),  # 农户签字
        ("通过", "入户核查", "demo_village"),
        ("通过", "民主评议", "demo_village"),
        ("签发公示公告", "出具村级公示", "demo_village"),
        ("定时触发", None, None),  # 村级公示期满
        ("通过", "镇复核", "demo_township"),
        ("通过", "部门审定", "demo_dept"),
        ("通过", "县级公告", "demo_county"),
        ("签发公示公告", "出具县级公告", "demo_county"),
        ("定时触发", None, None),  # 公告期满
        ("签发公示公告", "退出告知书", "demo_village"),
        ("通过", "退出告知", "demo_village"),
    ]
    expect(history).to_have_count(len(expected))
    for item, (action, step, user) in zip(history.all(), expected, strict=True):
        expect(item.locator("strong")).to_have_text(action)
        if step:
            expect(item).to_contain_text(f"· {step}")
        expect(item).to_contain_text(NAMES[user])
    expect(history.nth(2)).to_contain_text("意见:入户核查完毕,四查情况属实。")
    expect(history.nth(2).get_by_test_id("history-signature").locator("img")).to_have_js_property("naturalWidth", 600)

    diagram = page.locator("#diagram")
    expect(diagram).to_have_attribute("data-rendered", "true")
    expect(diagram.locator("svg").first).to_be_visible()
    expect(diagram.locator(".xf-done").first).to_be_attached()
    assert diagram.locator(".xf-done").count() >= 1
    for done in ("household_check", "issue_village_notice", "village_notice", "issue_county_notice", "county_notice",
                 "exit_notice"):
        expect(diagram.locator(f'[data-element-id="{done}"]')).to_have_class(re.compile(r"\bxf-done\b"))
    expect(diagram.locator('[data-element-id="follow_up_timer"]')).to_have_class(re.compile(r"\bxf-current\b"))
    page.screenshot(path=SCREENSHOT, full_page=True)
    log_out(page)

    # ---- another township (赤城镇) cannot see the case: 404, not 403
    log_in(page, "demo_other_township")
    response = page.goto(f"/cases/{case_id}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("404 · 未找到")
    expect(page.get_by_text(HOUSEHOLD)).to_have_count(0)

    assert page_errors == []

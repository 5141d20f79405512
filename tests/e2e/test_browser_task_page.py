"""The township officer's task page in Debian chromium, at a desk (1366 × 768) and on a phone (375 × 812):
the village's earlier steps are on the page in words, a photo uploaded on the task keeps what was typed,
and 不通过 asks first and says what it will do before it ends the case."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from engine.bootstrap import DEMO_PASSWORD
from engine.demo_data import signature_png
from engine.models import CaseStatus

STEP = "镇(街道)审核"


def _township_page(browser, live_server, width, height):
    context = browser.new_context(base_url=live_server, locale="zh-CN", viewport={"width": width, "height": height})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("用户名").fill("demo_township")
    page.get_by_label("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_test_id("current-user")).to_be_visible()
    return context, page


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (375, 812)])
@pytest.mark.db_snapshot("housing_at_township_audit")
def test_the_task_page_shows_the_case_and_keeps_typed_input_across_an_upload(
        browser, live_server, db, housing_at_township_audit, width, height):
    case_id = housing_at_township_audit.value
    (row,) = db.open_tasks(case_id)
    context, page = _township_page(browser, live_server, width, height)
    try:
        page.goto(f"/tasks/{row.id}")
        glance = page.get_by_test_id("case-at-a-glance")
        expect(glance.get_by_test_id("step-record")).to_have_count(2)  # 农户申请, 村级评议 (its 公示 period is a timer)
        expect(glance).to_contain_text("农户申请")
        expect(glance).to_contain_text("住房现状(住房安全动态监测结果)")
        expect(glance).to_contain_text("D级危房(整体危险)")  # the option's words, not "D"
        expect(glance).to_contain_text("村级评议")
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")

        page.get_by_label("鉴定机构").fill("蓬溪县住房安全鉴定技术服务组")
        page.get_by_label("审批意见").fill("房屋整体危险,材料齐全")
        upload = page.get_by_test_id("task-upload-form")
        upload.get_by_label("附件类别").select_option(label="房屋照片")
        upload.locator("input[type=file]").set_input_files(
            {"name": "房屋照片.png", "mimeType": "image/png", "buffer": signature_png(row.id)})
        url = page.url
        upload.get_by_role("button", name="上传附件").click()
        expect(page.get_by_test_id("upload-status")).to_have_text("已上传:房屋照片.png")
        expect(page.get_by_test_id("task-files").get_by_test_id("file-chip")).to_contain_text("房屋照片")
        assert page.url == url  # no page change: what was typed is still there
        expect(page.get_by_label("鉴定机构")).to_have_value("蓬溪县住房安全鉴定技术服务组")
        expect(page.get_by_label("审批意见")).to_have_value("房屋整体危险,材料齐全")
    finally:
        context.close()


@pytest.mark.db_snapshot("housing_at_township_audit")
def test_reject_asks_for_confirmation_and_says_what_happens(browser, live_server, db, housing_at_township_audit):
    case_id = housing_at_township_audit.value
    (row,) = db.open_tasks(case_id)
    context, page = _township_page(browser, live_server, 1366, 768)
    try:
        page.goto(f"/tasks/{row.id}")
        page.get_by_label("审批意见").fill("住房鉴定为 B 级,不符合改造条件")
        asked: list[str] = []
        page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
        page.get_by_role("button", name="不通过").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text(STEP)  # dismissed: nothing was sent
        assert asked and "不通过将结束本案件" in asked[0]
        assert db.case(case_id).status == CaseStatus.running

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="不通过").click()
        expect(page).to_have_url(re.compile(rf"/cases/{case_id}$"))
        expect(page.get_by_role("status")).to_have_text(f"已不通过「{STEP}」,案件已结束")
        assert db.case(case_id).status == CaseStatus.rejected
    finally:
        context.close()

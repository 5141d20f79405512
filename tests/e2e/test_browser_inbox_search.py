"""Inbox search in headless Chromium: by name and by ID number, with the tab counts following the filters."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

ZHANG_ID = "510921196503120011"  # 张德明


def badge(page, tab: str):
    return page.get_by_test_id(f"tab-{tab}").locator(".badge")


def test_search_by_name_and_by_id_narrows_the_rows_and_the_tab_counts(db, user_page):
    for household in ("张德明", "李秀英", "王建国"):
        db.start_case(subject_id=db.household(household))
    page = user_page("demo_village")
    expect(page.get_by_test_id("task-row")).to_have_count(3)
    expect(badge(page, "todo")).to_have_text("3")
    expect(badge(page, "started")).to_have_text("3")

    page.get_by_label("姓名").fill("秀英")
    page.get_by_role("button", name="查询").click()
    expect(page.get_by_test_id("task-row")).to_have_count(1)
    expect(page.get_by_test_id("task-row")).to_contain_text("李秀英")
    expect(badge(page, "todo")).to_have_text("1")
    expect(badge(page, "started")).to_have_text("1")
    page.get_by_test_id("tab-started").click()  # the filter is kept on the other tab
    expect(page).to_have_url(re.compile(r"view=started"))
    expect(page.get_by_label("姓名")).to_have_value("秀英")
    expect(page.get_by_test_id("case-row")).to_have_count(1)
    expect(page.get_by_test_id("case-row")).to_contain_text("李秀英")

    page.get_by_test_id("search-reset").click()
    expect(page.get_by_label("姓名")).to_have_value("")
    page.get_by_label("身份证号").fill("51092119650312001")  # 17 digits: a field error, nothing listed
    page.get_by_role("button", name="查询").click()
    expect(page.locator(".field-error")).to_contain_text("身份证号应为 18 位")
    expect(badge(page, "started")).to_have_text("0")
    page.get_by_label("身份证号").fill(ZHANG_ID)
    page.get_by_role("button", name="查询").click()
    expect(page.get_by_test_id("case-row")).to_have_count(1)
    expect(page.get_by_test_id("case-row")).to_contain_text("张德明")
    expect(badge(page, "todo")).to_have_text("1")
    expect(badge(page, "started")).to_have_text("1")


def test_another_townships_user_finds_nothing_by_the_same_id_number(db, user_page):
    db.start_case(subject_id=db.household("张德明"))
    page = user_page("demo_other_township")
    page.get_by_label("身份证号").fill(ZHANG_ID)
    page.get_by_role("button", name="查询").click()
    for tab in ("todo", "done", "started", "cc"):
        expect(badge(page, tab)).to_have_text("0")
    expect(page.get_by_text("没有符合条件的待办任务")).to_be_visible()
    expect(page.get_by_role("option", name=re.compile("冬笋街"))).to_have_count(0)  # not in its region picker


def _no_sideways_scroll(page) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width <= inner, f"{page.url}: {width}px wide in a {inner}px window"


@pytest.mark.parametrize(("width", "height"), [(375, 812), (1280, 900)])
def test_the_region_picker_cascades_from_township_to_village_by_keyboard_and_on_a_phone(
        browser, live_server, db, width, height):
    from engine.bootstrap import DEMO_PASSWORD

    context = browser.new_context(base_url=live_server, locale="zh-CN", viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        page.goto("/login")
        page.get_by_label("用户名").fill("demo_county")
        page.get_by_label("密码").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_test_id("current-user")).to_be_visible()
        if width < 640:
            page.get_by_text("搜索与筛选").click()  # folded on a phone
        region = page.get_by_label("地区", exact=True)
        expect(region.locator("option")).to_have_count(21)  # 全部 and 蓬溪县's 20 townships, no village
        expect(page.get_by_role("option", name=re.compile("冬笋街"))).to_have_count(0)
        region.select_option(label="宝梵镇")
        village = page.get_by_label("宝梵镇下辖地区")
        expect(village).to_be_visible()
        expect(village.locator("option").first).to_have_text("全部(宝梵镇)")
        region.focus()
        page.keyboard.press("Tab")  # the villages' select comes next in the tab order
        expect(village).to_be_focused()
        village.select_option(label="冬笋街社区居民委员会")
        _no_sideways_scroll(page)
        for box in (region.bounding_box(), village.bounding_box()):
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        page.get_by_role("button", name="查询").click()
        expect(page).to_have_url(re.compile(r"region=510921107001"))
        expect(page.get_by_label("地区", exact=True)).to_have_value("510921107000")
        expect(page.get_by_label("宝梵镇下辖地区")).to_have_value("510921107001")
        page.get_by_label("地区", exact=True).select_option(label="赤城镇")  # another township: new villages
        expect(page.get_by_label("宝梵镇下辖地区")).to_have_count(0)
        expect(page.get_by_label("赤城镇下辖地区")).to_be_visible()
        page.get_by_role("button", name="查询").click()
        expect(page).to_have_url(re.compile(r"region=510921100000"))
        expect(page.locator(".field-error")).to_have_count(0)
    finally:
        context.close()

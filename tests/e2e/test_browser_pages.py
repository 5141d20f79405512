"""Keyset pages in headless Chromium (issue 16): 下一页, 上一页 and 第一页 on the inbox and the registry list,
at desktop and phone width, the pager inside the screen."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

HOUSEHOLDS = ("张德明", "李秀英", "王建国", "刘桂芳", "陈永福")
SHOTS = "/tmp/xiangflow_pages_{}_{}.png"  # looked at by hand; not committed


def fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.mark.parametrize("width, height", [(1366, 768), (375, 812)])
def test_the_inbox_pages_forward_and_back_by_cursor(db, user_page, monkeypatch, width, height):
    monkeypatch.setattr("web.inbox.PER_PAGE", 2)
    for name in HOUSEHOLDS:
        db.start_case(subject_id=db.household(name))
    page = user_page("demo_village")
    page.set_viewport_size({"width": width, "height": height})
    page.reload()
    pager = page.get_by_test_id("pager")
    expect(pager).to_contain_text("第 1 页,共 5 条")
    seen = page.get_by_test_id("task-row").all_inner_texts()
    for number in (2, 3):
        pager.get_by_role("link", name="下一页").click()
        expect(pager).to_contain_text(f"第 {number} 页,共 5 条")
        expect(page).to_have_url(re.compile(r"cursor="))
        seen += page.get_by_test_id("task-row").all_inner_texts()
    assert len(seen) == 5 and len(set(seen)) == 5  # every task once
    expect(pager.get_by_role("link", name="下一页")).to_have_count(0)
    pager.scroll_into_view_if_needed()
    assert fits(page)
    page.screenshot(path=SHOTS.format("inbox", width), full_page=True)
    pager.get_by_role("link", name="上一页").click()
    expect(pager).to_contain_text("第 2 页")
    pager.get_by_role("link", name="上一页").click()
    expect(pager).to_contain_text("第 1 页")
    expect(pager.get_by_role("link", name="上一页")).to_have_count(0)


def test_the_registry_list_pages_and_a_bad_cursor_is_a_chinese_400(db, user_page):
    page = user_page("demo_village")
    page.set_viewport_size({"width": 375, "height": 812})
    page.goto("/registry/?per_page=2")
    pager = page.get_by_test_id("pager")
    first = page.get_by_test_id("registry-row").all_inner_texts()
    pager.get_by_role("link", name="下一页").click()
    expect(pager).to_contain_text("第 2 页")
    assert not set(first) & set(page.get_by_test_id("registry-row").all_inner_texts())
    pager.get_by_role("link", name="下一页").click()
    expect(pager.get_by_test_id("pager-first")).to_be_visible()
    assert fits(page)
    page.screenshot(path=SHOTS.format("registry", 375), full_page=True)
    pager.get_by_test_id("pager-first").click()
    expect(pager).to_contain_text("第 1 页")
    response = page.goto("/registry/?per_page=2&cursor=AAAAAAAA")
    assert response is not None and response.status == 400
    expect(page.locator("body")).to_contain_text("翻页参数无效或已过期")

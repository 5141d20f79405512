"""Phone and desk layout in Debian chromium: at 375 × 812 and 1366 × 768 no page scrolls sideways, the
header keeps its words on one line, tables become labelled cards on the phone, the progress diagram opens
with legible labels, and the inbox search folds away on the phone until it is asked for (open at once when
a filter is set)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from engine.bootstrap import DEMO_PASSWORD

SIZES = [(375, 812), (1366, 768)]


def _no_sideways_scroll(page) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width <= inner, f"{page.url}: {width}px wide in a {inner}px window"


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.db_snapshot("housing_at_township_audit")
def test_pages_fit_the_screen(browser, live_server, db, housing_at_township_audit, width, height):
    case_id = housing_at_township_audit.value
    (task,) = db.open_tasks(case_id)
    context = browser.new_context(base_url=live_server, locale="zh-CN", viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        page.goto("/login")
        _no_sideways_scroll(page)
        page.get_by_label("用户名").fill("demo_township")
        page.get_by_label("密码").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_test_id("current-user")).to_be_visible()
        for path in ("/", f"/cases/{case_id}", f"/tasks/{task.id}", "/notices/"):
            page.goto(path)
            _no_sideways_scroll(page)
            # the header's links are one line each (the old header broke 退出登录 into one character a line)
            heights = page.eval_on_selector_all("header.top nav a, header.top .who button",
                                                "els => els.map(e => e.getBoundingClientRect().height)")
            assert heights and max(heights) < 40, (path, heights)

        page.goto(f"/cases/{case_id}")  # the progress diagram opens legible: labels at least 9 px tall
        expect(page.locator("#diagram[data-rendered=true]")).to_be_attached()
        label_heights = page.eval_on_selector_all(
            "#diagram .djs-shape .djs-label tspan, #diagram .djs-shape text tspan",
            "els => els.map(e => e.getBoundingClientRect()).filter(r => r.width > r.height && r.height > 0)"
            ".map(r => r.height)")  # horizontal labels (lane titles are turned on their side)
        assert label_heights and min(label_heights) >= 9, label_heights[:5]
        box = page.locator("#diagram").bounding_box()
        assert box is not None and box["height"] <= 600 and box["width"] <= width

        page.goto("/")
        search = page.get_by_test_id("search-box")
        name_field = page.get_by_label("姓名")
        if width < 640:
            expect(name_field).to_be_hidden()  # folded: the first screen shows the tasks
            page.get_by_text("搜索与筛选").click()
            expect(name_field).to_be_visible()
            cell = page.get_by_test_id("task-row").first.locator("td").first
            assert cell.get_attribute("data-label") == "步骤"
            assert page.get_by_test_id("task-row").first.evaluate("e => getComputedStyle(e).display") == "block"
        else:
            expect(name_field).to_be_visible()
            assert page.get_by_test_id("task-row").first.evaluate("e => getComputedStyle(e).display") == "table-row"
        page.goto("/?name=张")
        expect(search).to_have_attribute("open", "")
        expect(name_field).to_be_visible()  # a search that is set stays in view, on the phone too
        _no_sideways_scroll(page)
    finally:
        context.close()

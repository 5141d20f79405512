"""批量发起 in headless Chromium: a village cadre chooses the village's households by the registry filters,
leaves one out, starts the 四步法 exit check for the rest as a background job and watches the progress page
fill in (one household with a running case is skipped and named); an admin lists an 无人办理 task."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from engine import demo_data as D
from engine.models import Subject

pytestmark = pytest.mark.e2e
SHOTS = os.environ.get("XF_SCREENSHOTS")  # a directory: save the pages at 1366×768 and 375×812 there


def _household_ids(db) -> list[int]:
    actor = db.actor("demo_village")
    with db.uow() as work:
        return [s.id for s in work.session.scalars(select(Subject).where(Subject.kind == "household",
                                                                         Subject.is_active.is_(True))
                                                   .order_by(Subject.id)) if actor.covers(s.region_code)]


def test_a_village_cadre_batch_starts_exit_checks_and_watches_the_progress(db, user_page):
    ids = _household_ids(db)
    running = db.start_case("demo_village", subject_id=ids[0])
    page = user_page("demo_village")
    page.goto("/cases/new")
    page.get_by_test_id("to-batch-start").click()
    page.get_by_label("流程").select_option("monitoring_exit")
    page.get_by_test_id("batch-preview").click()
    rows = page.get_by_test_id("batch-subject")
    expect(rows).to_have_count(len(ids))
    rows.nth(len(ids) - 1).get_by_role("checkbox").uncheck()  # leave the last household out
    if SHOTS:
        for width, height in ((1366, 768), (375, 812)):
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=f"{SHOTS}/batch-start-{width}.png", full_page=True)
    page.get_by_test_id("batch-go").click()
    expect(page).to_have_url(re.compile(r"/cases/batch-start/\d+$"))
    expect(page.get_by_test_id("start-batch-status")).to_have_text("已完成 100%", timeout=60_000)
    expect(page.get_by_test_id("start-batch-counts")).to_have_text(
        f"共 {len(ids) - 1} 个:已发起 {len(ids) - 2},已跳过 1,未发起 0")
    skipped = page.locator('[data-testid="start-batch-result"][data-outcome="skipped"]')
    expect(skipped).to_have_count(1)
    expect(skipped).to_contain_text(f"编号 {running}")
    expect(page.locator('[data-testid="start-batch-result"][data-outcome="started"]')).to_have_count(len(ids) - 2)
    if SHOTS:
        for width, height in ((1366, 768), (375, 812)):
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=f"{SHOTS}/batch-progress-{width}.png", full_page=True)
    # the started cases are the cadre's: the first result links to its case page
    page.locator('[data-testid="start-batch-result"][data-outcome="started"] a').first.click()
    expect(page.get_by_test_id("case-status")).to_have_text("办理中")


def test_an_admin_sees_an_unstaffed_task_and_assigns_it_from_the_picker(db, user_page):
    admin = user_page("demo_admin")
    with db.uow() as work:
        work.users.update(db.actor("demo_admin"), work.directory.user_by_username("demo_township").id,
                          {"is_active": False})
    case_id = db.start_case("demo_village", subject_id=_household_ids(db)[0])  # to 镇复核: 入户核查, 民主评议, 公示
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    assert db.pass_notice(case_id=case_id) >= 1
    admin.get_by_test_id("nav-unstaffed").click()
    row = admin.get_by_test_id("unstaffed-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("镇复核")
    expect(row).to_contain_text("宝梵镇 · 乡镇乡村振兴办")
    if SHOTS:
        for width, height in ((1366, 768), (375, 812)):
            admin.set_viewport_size({"width": width, "height": height})
            admin.screenshot(path=f"{SHOTS}/unstaffed-{width}.png", full_page=True)
        admin.set_viewport_size({"width": 1280, "height": 900})
    row.get_by_test_id("picker-username").select_option("demo_clerk")
    row.get_by_role("button", name="授予岗位并指派").click()
    expect(admin.locator(".flash")).to_contain_text("已授予宝梵镇办公室(演示)该岗位")
    expect(admin.get_by_test_id("unstaffed-empty")).to_be_visible()
    clerk = user_page("demo_clerk")
    expect(clerk.get_by_test_id("task-row")).to_contain_text(["镇复核"])
    clerk.goto(f"/cases/{case_id}")
    expect(clerk.get_by_test_id("case-status")).to_have_text("办理中")

"""委派 and 加签 in a real browser, on a 危房改造 case waiting at 镇(街道)审核 (demo_township's step).

委派: the township officer delegates to the township office clerk, who fills the form and hands it
back (处理完成并交还); the officer finds it prefilled with the clerk's opinion and approves.
加签 (前加签): the officer adds the clerk as a co-signer; the task leaves the officer's hands until the
clerk agrees, then the officer approves. Headless Chromium against the live app (CSRF on), no sleeps.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from engine.models import TaskStatus

pytestmark = pytest.mark.e2e

AUDIT = {"appraisal_date": "2026-09-07", "appraisal_agency": "蓬溪县住房安全鉴定技术服务组",
         "appraisal_report_no": "JD-2026-0315", "audit_date": "2026-09-15"}


def fill_audit(page: Page) -> None:
    page.locator('input[name="materials_complete"]').check()
    for key, value in AUDIT.items():
        page.locator(f'input[name="{key}"]').fill(value)
    page.locator('input[name="appraisal_grade"][value="D"]').check()


def open_task_from_todo(page: Page, task_id: int) -> None:
    page.goto("/")
    page.locator(f'a[href="/tasks/{task_id}"]').first.click()
    expect(page).to_have_url(re.compile(rf"/tasks/{task_id}$"))


def advanced_past_audit(db, case_id: int) -> None:
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "county_approval"


@pytest.mark.db_snapshot("housing_at_township_audit")
def test_delegate_then_resolve_then_the_owner_approves_in_the_browser(db, housing_at_township_audit, user_page):
    case_id = housing_at_township_audit.value
    (task,) = db.open_tasks(case_id)
    township = user_page("demo_township")
    township.goto(f"/tasks/{task.id}")
    delegate = township.get_by_test_id("delegate-form")
    delegate.get_by_label("委派给").select_option("demo_clerk")  # a picker: names, not usernames
    delegate.get_by_label("委派说明").fill("请核对鉴定材料")
    delegate.get_by_role("button", name="委派").click()
    expect(township).to_have_url(re.compile(rf"/cases/{case_id}$"))
    expect(township.get_by_text("已委派")).to_be_visible()

    clerk = user_page("demo_clerk")
    open_task_from_todo(clerk, task.id)
    expect(clerk.get_by_test_id("delegation-note")).to_contain_text("处理完成并交还")
    form = clerk.get_by_test_id("resolve-form")
    expect(form.locator('button[value="approve"]')).to_have_count(0)  # the delegate cannot approve
    fill_audit(clerk)
    form.get_by_label("处理意见").fill("材料齐全,鉴定为D级,建议通过")
    form.get_by_role("button", name="处理完成并交还").click()
    expect(clerk).to_have_url(re.compile(rf"/cases/{case_id}$"))

    open_task_from_todo(township, task.id)
    expect(township.get_by_test_id("delegate-opinion")).to_contain_text("材料齐全,鉴定为D级,建议通过")
    expect(township.locator('input[name="appraisal_report_no"]')).to_have_value("JD-2026-0315")
    township.get_by_label("审批意见").fill("同意")
    township.get_by_role("button", name="通过", exact=True).click()
    expect(township).to_have_url(re.compile(rf"/cases/{case_id}$"))
    expect(township.get_by_test_id("current-steps")).to_contain_text("县级审批")
    history = township.get_by_test_id("history")
    expect(history).to_contain_text("委派")
    expect(history).to_contain_text("委派处理完成")
    advanced_past_audit(db, case_id)


@pytest.mark.db_snapshot("housing_at_township_audit")
def test_add_a_co_signer_before_oneself_then_approve_in_the_browser(db, housing_at_township_audit, user_page):
    case_id = housing_at_township_audit.value
    (task,) = db.open_tasks(case_id)
    township = user_page("demo_township")
    township.goto(f"/tasks/{task.id}")
    sign = township.get_by_test_id("add-sign")
    sign.get_by_label("加签方式").select_option("before")
    picker = sign.get_by_test_id("picker-sign_to")
    picker.locator("summary").click()
    picker.get_by_label(re.compile("宝梵镇办公室")).check()
    township.get_by_label("审批意见").fill("请办公室先行核对")
    sign.get_by_role("button", name="加签").click()
    expect(township).to_have_url(re.compile(rf"/cases/{case_id}$"))
    expect(township.get_by_test_id(f"waiting-{task.id}")).to_contain_text("宝梵镇办公室(演示)")
    (child,) = db.open_tasks(case_id)
    assert child.parent_task_id == task.id

    clerk = user_page("demo_clerk")
    open_task_from_todo(clerk, child.id)
    expect(clerk.get_by_test_id("co-sign-note")).to_contain_text("前加签")
    clerk.get_by_label("审批意见").fill("已核对,同意")
    clerk.get_by_role("button", name="同意", exact=True).click()
    expect(clerk).to_have_url(re.compile(rf"/cases/{case_id}$"))

    open_task_from_todo(township, task.id)
    expect(township.get_by_test_id("co-signers")).to_contain_text("已核对,同意")
    fill_audit(township)
    township.get_by_label("审批意见").fill("同意")
    township.get_by_role("button", name="通过", exact=True).click()
    expect(township).to_have_url(re.compile(rf"/cases/{case_id}$"))
    expect(township.get_by_test_id("current-steps")).to_contain_text("县级审批")
    expect(township.get_by_test_id("history")).to_contain_text("加签人同意")
    advanced_past_audit(db, case_id)
    with db.uow() as work:
        from engine.models import TaskRow

        assert work.session.get(TaskRow, child.id).status == TaskStatus.completed

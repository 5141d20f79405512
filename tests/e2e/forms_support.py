"""Filling procedure forms on a task page in the browser, shared by the browser tests."""

from __future__ import annotations

from playwright.sync_api import Page

from engine import demo_data as D


def fill_household_check(page: Page, *, skip: str | None = None,
                         opinion: str = "入户核查完毕,四查情况属实。") -> None:
    """Fill 入户核查 with D.HOUSEHOLD_CHECK (leaving ``skip`` empty) and the opinion; the household's
    signature is the caller's step."""
    d = D.HOUSEHOLD_CHECK
    page.get_by_label(d["trigger"], exact=True).check()
    page.locator("#f_pre_assessment_date").fill(d["pre_assessment_date"])
    page.get_by_label("一查:帮扶措施已精准落实").check()
    page.get_by_label("二查:“两不愁三保障”及饮水安全已实现").check()
    if skip != "industry_employment":
        page.get_by_label("三查:家庭产业就业情况").fill(d["industry_employment"])
    page.locator("#f_household_size").fill(str(d["household_size"]))
    page.get_by_label("家庭年人均纯收入(元)").fill(str(d["annual_income_per_capita"]))
    page.locator("#f_income_spending").fill(d["income_spending"])
    page.locator("#f_special_category").select_option(d["special_category"])
    page.locator("#f_check_date").fill(d["check_date"])
    page.get_by_label("核查结果已经监测户签字认可").check()
    page.get_by_label("审批意见").fill(opinion)

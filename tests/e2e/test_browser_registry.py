"""The registry in headless Chromium: a village cadre registers a household with its members, edits it
(history kept), and imports an Excel file — refused with its bad row listed, then stored with the progress bar."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from openpyxl import Workbook
from playwright.sync_api import expect

from engine.registry.service import SubjectSearch
from tests.integration.registry_support import id_number, region_of, wrong_check_digit

pytestmark = pytest.mark.e2e


def test_a_village_cadre_registers_a_household_with_members_and_edits_it(db, user_page):
    page = user_page("demo_village")
    page.get_by_test_id("nav-registry").click()
    expect(page.get_by_test_id("registry-row").first).to_be_visible()
    page.get_by_test_id("register-new").click()
    head, spouse = id_number("51092119850606001"), id_number("51092119860707002")
    page.get_by_label("户主姓名").fill("郑小燕")
    page.get_by_label("户主身份证号").fill(wrong_check_digit(head))
    page.get_by_label("监测对象类别").select_option("突发严重困难户")
    page.get_by_label("联系电话").fill("13912345678")
    page.get_by_label("低保").check()
    page.get_by_label("成员1姓名").fill("郑小燕")
    page.get_by_label("成员1身份证号").fill(head)
    page.get_by_label("成员1与户主关系").select_option("户主")
    page.get_by_label("成员2姓名").fill("何建军")
    page.get_by_label("成员2身份证号").fill(spouse)
    page.get_by_label("成员2与户主关系").select_option("配偶")
    page.get_by_label("成员2健康状况").select_option("患有大病")
    page.get_by_test_id("save-subject").click()
    expect(page.get_by_test_id("error-id_number")).to_have_text("身份证号校验位不正确")
    expect(page.get_by_label("成员2姓名")).to_have_value("何建军")  # what was typed is kept
    page.get_by_label("户主身份证号").fill(head)
    page.get_by_test_id("save-subject").click()
    expect(page.locator("h1")).to_contain_text("郑小燕")
    expect(page.get_by_test_id("member-row")).to_have_count(2)
    expect(page.get_by_test_id("member-row").nth(1)).to_contain_text("患有大病")
    expect(page.get_by_test_id("attr-special_flags")).to_have_text("低保")

    page.get_by_test_id("edit-subject").click()
    page.get_by_label("联系电话").fill("13900000000")
    page.get_by_test_id("save-subject").click()
    expect(page.get_by_test_id("attr-phone")).to_have_text("13900000000")
    expect(page.get_by_test_id("revision-row")).to_have_count(2)
    expect(page.get_by_test_id("revision-row").nth(1)).to_contain_text("联系电话")


def _workbook(region: str, heads: list[str]) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "农户"
    ws.append(["户主姓名", "身份证号", "区划代码", "家庭人口", "监测对象类别"])
    for i, head in enumerate(heads):
        ws.append([f"台账户{i + 1}", head, region, 3, "边缘易致贫户"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_an_excel_file_with_a_bad_row_is_refused_whole_then_the_corrected_file_is_imported(db, user_page, tmp_path):
    region = region_of(db, "demo_village")
    heads = [id_number(f"5109211970031{i:01d}{i:03d}") for i in range(5)]
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(_workbook(region, heads[:3] + [wrong_check_digit(heads[3])] + heads[4:]))
    good = tmp_path / "good.xlsx"
    good.write_bytes(_workbook(region, heads))
    page = user_page("demo_village")
    page.goto("/registry/?kind=household")
    page.get_by_test_id("import-link").click()
    page.get_by_label("Excel 文件(.xlsx)").set_input_files(str(bad))
    page.get_by_test_id("import-check").click()
    expect(page.get_by_test_id("import-status")).to_contain_text("未导入任何数据")
    problem = page.locator("[data-testid=import-problem]")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text("5")  # the sheet's row 5 (header is row 1)
    expect(problem).to_contain_text("身份证号校验位不正确")
    expect(page.get_by_test_id("import-store")).to_be_disabled()

    page.get_by_label("Excel 文件(.xlsx)").set_input_files(str(good))
    page.get_by_test_id("import-check").click()
    expect(page.get_by_test_id("import-status")).to_contain_text("校验通过:共 5 户")
    page.get_by_test_id("import-store").click()
    expect(page.get_by_test_id("import-status")).to_contain_text("已导入 5 条")
    expect(page.locator("#import-progress")).to_have_attribute("value", "100")
    page.goto("/registry/?kind=household&name=台账户")
    expect(page.get_by_test_id("registry-row")).to_have_count(5)


def test_start_identification_for_a_household_registered_from_the_start_page_with_its_assistance_cadre(db, user_page):
    from tests.integration.test_procedure_monitoring_identification import MAIN, RISK_REPORT

    page = user_page("demo_village")
    page.get_by_role("link", name="发起流程").click()
    page.get_by_label("流程").select_option(label="防返贫监测对象识别认定及帮扶(v1)")
    page.get_by_test_id("register-household").click()
    head = id_number("51092119780808003")
    page.get_by_label("户主姓名").fill("马新发")
    page.get_by_label("户主身份证号").fill(head)
    page.get_by_label("监测对象类别").select_option("突发严重困难户")
    page.get_by_label("帮扶责任人").select_option(label="宝梵镇帮扶责任人(演示)")  # a real user, from the picker
    page.get_by_test_id("save-subject").click()
    expect(page.get_by_label("流程")).to_have_value("monitoring_identification")
    expect(page.get_by_label("农户")).to_have_value(re.compile(r"\d+"))
    expect(page.locator("#subject_household option:checked")).to_have_text("马新发(突发严重困难户)")
    page.get_by_role("button", name="发起").click()
    expect(page.get_by_role("status")).to_have_text("流程已发起")
    expect(page.get_by_role("heading", level=1)).to_contain_text("风险发现登记")

    # the identification steps by their holders (engine), up to the 帮扶责任人's first step
    with db.uow() as work:
        subject = work.registry.search(db.actor("demo_village"), SubjectSearch(kind="household", name="马新发")).items[0]
        assert subject.attrs["assistance_cadre"] == "demo_helper"
    case_id = next(c for c in _cases_of(db, subject.id))
    db.complete(case_id, "demo_village", data=RISK_REPORT)
    for spec in ("household_check", "village_review", "township_audit", "county_identification", "system_entry"):
        db.complete(case_id, MAIN[spec][1], data=MAIN[spec][4])
        if spec == "village_review":
            db.clock.advance(timedelta(days=8))
            with db.uow() as work:
                work.cases.fire_due_timers()
    helper = user_page("demo_helper")
    row = helper.get_by_test_id("task-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("制定帮扶计划")
    expect(row).to_contain_text("马新发")


def test_project_library_starts_for_a_project_registered_from_the_start_page(db, user_page):
    page = user_page("demo_village")
    page.goto("/cases/new")
    page.get_by_label("流程").select_option(label="项目库项目申报审批及实施管理(v1)")
    expect(page.get_by_label("项目")).to_be_visible()
    expect(page.get_by_label("农户")).to_be_hidden()
    page.get_by_test_id("register-project").click()
    page.get_by_label("项目名称").fill("村级电商服务站")
    page.get_by_label("项目类型").select_option("产业发展")
    page.get_by_label("预算(元)").fill("260000")
    page.get_by_label("联农带农机制").fill("代销农产品,带动 40 户增收")
    page.get_by_test_id("save-subject").click()
    expect(page.locator("#subject_project option:checked")).to_have_text("村级电商服务站(产业发展)")
    page.get_by_role("button", name="发起").click()
    expect(page.get_by_role("status")).to_have_text("流程已发起")
    page.get_by_role("link", name="发起流程").click()
    page.get_by_label("流程").select_option(label="项目库项目申报审批及实施管理(v1)")
    page.get_by_label("项目").select_option(label="村级电商服务站(产业发展)")
    page.get_by_role("button", name="发起").click()
    expect(page.get_by_test_id("subject-error")).to_contain_text("不能重复发起")  # the duplicate guard


def _cases_of(db, subject_id: int) -> list[int]:
    with db.uow() as work:
        return [c.id for c in work.inbox.subject_cases(subject_id)]

"""The registry in headless Chromium: a village cadre registers a household with its members, edits it
(history kept), and imports an Excel file — refused with its bad row listed, then stored with the progress bar."""

from __future__ import annotations

import io

import pytest
from openpyxl import Workbook
from playwright.sync_api import expect

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

"""台账 export (issue 12 part 6): ``/cases/export.xlsx`` — the cases a user may see, under the inbox's search
fields, as a real workbook with Chinese headers; with a procedure chosen, its form data by label."""

from __future__ import annotations

import io

from openpyxl import load_workbook

from engine import demo_data as D


def _sheet(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    book = load_workbook(io.BytesIO(response.data), read_only=True)
    assert book.sheetnames == ["台账"]
    rows = [list(r) for r in book["台账"].iter_rows(values_only=True)]
    return rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_the_ledger_lists_the_cases_a_village_cadre_may_see_with_chinese_headers(db, client_for):
    case_id = db.start_case("demo_village", subject_id=db.household("张德明"))
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    village = client_for("demo_village")
    headers, rows = _sheet(village.get("/cases/export.xlsx"))
    assert headers[:7] == ["案件编号", "事项", "对象名称", "身份证号", "所在地区", "状态", "当前步骤"]
    by_id = {r["案件编号"]: r for r in rows}
    assert case_id in by_id
    row = by_id[case_id]
    assert row["事项"] == "监测户风险消除退出(四步法)" and row["对象名称"] == "张德明"
    assert row["状态"] == "办理中" and row["当前步骤"] == "民主评议"
    assert row["身份证号"] and "*" not in row["身份证号"]  # the village sees its own households' IDs
    # the other village's cadre sees none of these cases
    _h, other = _sheet(client_for("demo_other_village").get("/cases/export.xlsx"))
    assert case_id not in {r["案件编号"] for r in other}


def test_choosing_a_procedure_adds_its_form_data_by_label_and_filters_narrow_the_rows(db, client_for):
    case_id = db.start_case("demo_village", subject_id=db.household("李秀英"))
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    township = client_for("demo_township")
    headers, rows = _sheet(township.get("/cases/export.xlsx?procedure=monitoring_exit&name=李秀英"))
    assert "家庭年人均纯收入(元)" in headers and "一查:帮扶措施已精准落实" in headers
    (row,) = rows
    assert row["案件编号"] == case_id and row["家庭年人均纯收入(元)"] == 12800
    assert row["一查:帮扶措施已精准落实"] == "是"
    assert "*" in row["身份证号"]  # masked outside the household's village
    _h, none = _sheet(township.get("/cases/export.xlsx?procedure=housing_renovation&name=李秀英"))
    assert none == []


def test_a_bad_filter_is_a_422_in_chinese(db, client_for):
    village = client_for("demo_village")
    response = village.get("/cases/export.xlsx?id_number=123")
    assert response.status_code == 422 and "查询条件有误" in response.get_data(as_text=True)
    assert village.get("/cases/export.xlsx?region=110000000000").status_code == 422
    page = village.get("/?procedure=monitoring_exit").get_data(as_text=True)
    assert 'href="/cases/export.xlsx?procedure=monitoring_exit"' in page

"""Excel import and export of the registry: templates with Chinese headers, every row checked, a file with
any bad row stores nothing (422 with sheet, row, column, message), a good one is stored in one go."""

from __future__ import annotations

import io

from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from engine.models import AuditEvent, Subject
from engine.models.registry import SubjectMember, SubjectRevision
from tests.integration.registry_support import id_number, region_of, wrong_check_digit

HEADERS = ["户主姓名", "身份证号", "区划代码", "家庭人口", "监测对象类别", "联系电话", "特殊标识", "帮扶责任人", "住址"]
MEMBER_HEADERS = ["户主身份证号", "姓名", "身份证号", "与户主关系", "劳动能力", "健康状况", "在校情况"]


def _book(households: list[list], members: list[list] | None = None, headers=HEADERS) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "农户"
    ws.append(headers)
    for row in households:
        ws.append(row)
    if members is not None:
        ms = wb.create_sheet("家庭成员")
        ms.append(MEMBER_HEADERS)
        for row in members:
            ms.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _households(region: str, count: int = 3) -> tuple[list[list], list[list]]:
    rows, members = [], []
    for i in range(count):
        head = id_number(f"510921197501{10 + i:02d}0{i:02d}")
        rows.append([f"导入户{i + 1}", head, region, 2, "脱贫户", "13800000000", "低保" if i == 0 else None, None, None])
        members.append([head, f"导入户{i + 1}", head, "户主", "普通劳动力", "健康", None])
        members.append([head, f"配偶{i + 1}", id_number(f"510921197702{10 + i:02d}1{i:02d}"), "配偶", None, "健康", None])
    return rows, members


def _upload(client, content: bytes, kind: str = "household", dry_run: bool = False):
    data = {"kind": kind, "file": (io.BytesIO(content), "农户.xlsx")}
    if dry_run:
        data["dry_run"] = "1"
    return client.post("/api/v1/subjects/import", data=data, content_type="multipart/form-data")


def _counts(db) -> tuple[int, int, int, int]:
    with db.uow() as work:
        s = work.session
        return (s.scalar(select(func.count(Subject.id))), s.scalar(select(func.count(SubjectMember.id))),
                s.scalar(select(func.count(SubjectRevision.id))),
                s.scalar(select(func.count(AuditEvent.id))))


def test_the_templates_have_the_chinese_headers_and_a_members_sheet(client_for):
    village = client_for("demo_village")
    response = village.get("/api/v1/subjects/template.xlsx?kind=household")
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    wb = load_workbook(io.BytesIO(response.data))
    assert [c.value for c in wb["农户"][1]][:5] == ["户主姓名", "身份证号", "区划代码", "家庭人口", "监测对象类别"]
    assert [c.value for c in wb["家庭成员"][1]] == MEMBER_HEADERS
    project = load_workbook(io.BytesIO(village.get("/api/v1/subjects/template.xlsx?kind=project").data))
    assert [c.value for c in project["项目"][1]][:4] == ["项目名称", "区划代码", "项目类型", "预算(元)"]
    assert village.get("/api/v1/subjects/template.xlsx?kind=person").status_code == 422


def test_a_good_file_is_checked_first_then_stored_with_members_history_and_one_audit_row(db, client_for):
    village = client_for("demo_village")
    rows, members = _households(region_of(db, "demo_village"))
    content = _book(rows, members)
    before = _counts(db)
    checked = _upload(village, content, dry_run=True)
    assert checked.status_code == 200, checked.get_json()
    assert checked.get_json()["count"] == 3 and checked.get_json()["members"] == 6 and not checked.get_json()["stored"]
    assert _counts(db) == before
    stored = _upload(village, content)
    assert stored.status_code == 201, stored.get_json()
    assert stored.get_json()["count"] == 3
    after = _counts(db)
    assert after[:3] == (before[0] + 3, before[1] + 6, before[2] + 3) and after[3] == before[3] + 1
    found = village.get("/api/v1/subjects?name=导入户1").get_json()["subjects"][0]
    got = village.get(f"/api/v1/subjects/{found['id']}").get_json()
    assert got["attrs"] == {"category": "脱贫户", "members": 2, "phone": "13800000000", "special_flags": ["低保"]}
    assert [m["relation"] for m in got["members"]] == ["户主", "配偶"]
    assert got["history"][0]["action"] == "import"


def test_one_bad_row_stores_nothing_and_names_its_row_and_column(db, client_for):
    village = client_for("demo_village")
    rows, members = _households(region_of(db, "demo_village"), count=5)
    rows[2][1] = wrong_check_digit(rows[2][1])  # row 4 of the sheet (the header is row 1)
    members = [m for m in members if m[0] != rows[2][1]]
    before = _counts(db)
    response = _upload(village, _book(rows, members))
    assert response.status_code == 422
    body = response.get_json()
    assert {"sheet": "农户", "row": 4, "column": "身份证号", "message": "身份证号校验位不正确"} in body["problems"]
    assert _counts(db) == before


def test_every_kind_of_bad_row_is_reported_at_once(db, client_for):
    village = client_for("demo_village")
    region = region_of(db, "demo_village")
    rows, members = _households(region, count=2)
    rows.append([rows[0][0], rows[0][1], region, 2, "脱贫户", None, None, None, None])            # row 4: same ID as row 2
    rows.append(["张德明二", "510921196503120011", region, 3, "脱贫户", None, None, None, None])     # row 5: registered
    rows.append(["外村户", id_number("51092119700101301"), region_of(db, "demo_other_village"), 2, "脱贫户",
                 None, None, None, None])                                                           # row 6: not ours
    rows.append(["类别错", id_number("51092119700101302"), region, 2, "富裕户", None, None, None, None])  # row 7
    rows.append(["人口错", id_number("51092119700101303"), region, "很多", "脱贫户", None, None, None, None])  # row 8
    rows.append(["数字身份证", 510921197001013040, region, 2, "脱贫户", None, None, None, None])      # row 9
    members.append(["110101199001010000", "孤儿", None, "子女", None, None, None])                   # no such head
    before = _counts(db)
    response = _upload(village, _book(rows, members))
    assert response.status_code == 422
    where = {(p["sheet"], p["row"], p["column"]) for p in response.get_json()["problems"]}
    assert {("农户", 4, "身份证号"), ("农户", 5, "身份证号"), ("农户", 6, "区划代码"), ("农户", 7, "监测对象类别"),
            ("农户", 8, "家庭人口"), ("农户", 9, "身份证号"), ("家庭成员", 6, "户主身份证号")} <= where
    messages = {p["row"]: p["message"] for p in response.get_json()["problems"] if p["sheet"] == "农户"}
    assert "第 2 行" in messages[4] and "已登记" in messages[5] and "辖区" in messages[6]
    assert "文本格式" in messages[9]
    assert _counts(db) == before


def test_files_that_are_not_workbooks_or_lack_columns_are_422(db, client_for):
    village = client_for("demo_village")
    before = _counts(db)
    assert _upload(village, b"PK\x03\x04 not really a zip").status_code == 422
    assert _upload(village, b"name,id\n").status_code == 422
    missing = _upload(village, _book([["某", id_number("51092119700101301")]], headers=["户主姓名", "身份证号"]))
    assert missing.status_code == 422 and "区划代码" in missing.get_json()["problems"][0]["column"]
    empty = _upload(village, _book([]))
    assert empty.status_code == 422 and "没有数据" in empty.get_json()["message"]
    assert village.post("/api/v1/subjects/import", json={"kind": "household"}).status_code == 422
    no_kind = village.post("/api/v1/subjects/import", data={"file": (io.BytesIO(_book([])), "a.xlsx")},
                           content_type="multipart/form-data")
    assert no_kind.status_code == 422
    assert _counts(db) == before


def test_projects_import_and_a_duplicate_name_in_the_file_is_refused(db, client_for):
    village = client_for("demo_village")
    region = region_of(db, "demo_village")
    wb = Workbook()
    ws = wb.active
    ws.title = "项目"
    ws.append(["项目名称", "区划代码", "项目类型", "预算(元)", "建设地点", "联农带农机制"])
    ws.append(["茶园提升", region, "产业发展", 300000, "三组", "务工带动 20 户"])
    ws.append(["饮水安全巩固", int(region), "基础设施", "150,000", None, None])
    out = io.BytesIO()
    wb.save(out)
    response = _upload(village, out.getvalue(), kind="project")
    assert response.status_code == 201, response.get_json()
    listed = village.get("/api/v1/subjects?kind=project&name=饮水").get_json()["subjects"]
    assert listed[0]["attrs"]["budget_yuan"] == 150000
    ws.append(["茶园提升", region, "产业发展", 1, None, None])
    out = io.BytesIO()
    wb.save(out)
    again = _upload(village, out.getvalue(), kind="project")
    assert again.status_code == 422
    rows = {p["row"] for p in again.get_json()["problems"]}
    assert rows == {2, 3, 4}  # 2 and 3 are registered now; 4 repeats row 2


def test_export_lists_the_jurisdictions_households_with_members_and_masks_ids_outside_the_village(db, client_for):
    village = client_for("demo_village")
    rows, members = _households(region_of(db, "demo_village"), count=2)
    assert _upload(village, _book(rows, members)).status_code == 201
    response = village.get("/api/v1/subjects/export.xlsx?kind=household")
    assert response.status_code == 200
    wb = load_workbook(io.BytesIO(response.data))
    names = [r[0] for r in wb["农户"].iter_rows(min_row=2, values_only=True)]
    assert "导入户1" in names and "张德明" in names and "赵大山" not in names
    exported = {r[0]: r for r in wb["农户"].iter_rows(min_row=2, values_only=True)}
    assert exported["导入户1"][1] == rows[0][1]
    assert len([r for r in wb["家庭成员"].iter_rows(min_row=2, values_only=True)]) == 4
    township = load_workbook(io.BytesIO(client_for("demo_township").get(
        "/api/v1/subjects/export.xlsx?kind=household&name=导入户1").data))
    (row,) = list(township["农户"].iter_rows(min_row=2, values_only=True))
    assert row[0] == "导入户1" and row[1] != rows[0][1] and "*" in row[1]
    assert village.get("/api/v1/subjects/export.xlsx").status_code == 422

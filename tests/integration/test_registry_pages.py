"""The registry pages (农户与项目): list/search, register with members, edit with history, deactivate —
through HTML forms with their CSRF token, as a browser posts them."""

from __future__ import annotations

from sqlalchemy import func, select

from engine.models import Subject
from tests.integration.registry_support import id_number, region_of, wrong_check_digit


def _form(csrf: str, region: str, head: str, **extra) -> dict:
    data = {"csrf_token": csrf, "kind": "household", "name": "吴春花", "id_number": head, "region_code": region,
            "attr_category": "突发严重困难户", "attr_phone": "13811112222", "attr_special_flags": ["低保"],
            "member_name_0": "吴春花", "member_id_number_0": head, "member_relation_0": "户主",
            "member_labour_ability_0": "普通劳动力", "member_health_0": "健康", "member_schooling_0": "",
            "member_name_1": "", "member_id_number_1": "", "member_relation_1": "", "member_labour_ability_1": "",
            "member_health_1": "", "member_schooling_1": ""}
    data.update(extra)
    return data


def test_a_village_cadre_registers_a_household_on_the_page_and_sees_it_listed(db, client_for, csrf_token):
    village = client_for("demo_village")
    page = village.get("/registry/?kind=household").get_data(as_text=True)
    assert "农户与项目登记" in page and "张德明" in page and "赵大山" not in page
    head = id_number("51092119900505002")
    token = csrf_token(village, "/registry/new?kind=household")
    response = village.post("/registry/new", data=_form(token, region_of(db, "demo_village"), head))
    assert response.status_code == 302, response.get_data(as_text=True)
    detail = village.get(response.headers["Location"]).get_data(as_text=True)
    assert "吴春花" in detail and head in detail and "突发严重困难户" in detail and "低保" in detail
    assert "登记" in detail  # the first revision
    listed = village.get("/registry/?kind=household&name=春花").get_data(as_text=True)
    assert "吴春花" in listed and "共 1 条" in listed


def test_a_bad_check_digit_on_the_page_is_shown_by_its_field_and_stores_nothing(db, client_for, csrf_token):
    village = client_for("demo_village")
    with db.uow() as work:
        before = work.session.scalar(select(func.count(Subject.id)))
    head = wrong_check_digit(id_number("51092119900505002"))
    token = csrf_token(village, "/registry/new?kind=household")
    response = village.post("/registry/new", data=_form(token, region_of(db, "demo_village"), head,
                                                        member_id_number_0=""))
    assert response.status_code == 422
    assert "身份证号校验位不正确" in response.get_data(as_text=True)
    with db.uow() as work:
        assert work.session.scalar(select(func.count(Subject.id))) == before


def test_editing_on_the_page_keeps_history_and_deactivating_hides_it(db, client_for, csrf_token):
    village = client_for("demo_village")
    subject_id = db.household("李秀英")
    token = csrf_token(village, f"/registry/{subject_id}/edit")
    form = {"csrf_token": token, "kind": "household", "revision": "1", "name": "李秀英",
            "id_number": "510921197208230028", "region_code": region_of(db, "demo_village"),
            "attr_category": "脱贫户", "attr_members": "3", "member_name_0": ""}
    response = village.post(f"/registry/{subject_id}/edit", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)
    detail = village.get(f"/registry/{subject_id}").get_data(as_text=True)
    assert "脱贫户" in detail and "第 2 版" in detail and "监测对象类别" in detail
    stale = village.post(f"/registry/{subject_id}/edit", data={**form, "attr_category": "边缘易致贫户"})
    assert stale.status_code == 409  # revision 1 is no longer current
    token = csrf_token(village, f"/registry/{subject_id}")
    assert village.post(f"/registry/{subject_id}/active", data={"csrf_token": token, "active": "0"}).status_code == 302
    assert "李秀英" not in village.get("/registry/?kind=household").get_data(as_text=True)
    assert "已停用" in village.get(f"/registry/{subject_id}").get_data(as_text=True)


def test_a_reader_sees_no_edit_button_and_the_edit_page_is_403(db, client_for):
    county = client_for("demo_county")
    subject_id = db.household("张德明")
    page = county.get(f"/registry/{subject_id}").get_data(as_text=True)
    assert "张德明" in page and 'data-testid="edit-subject"' not in page
    assert county.get(f"/registry/{subject_id}/edit").status_code == 403
    assert client_for("demo_other_village").get(f"/registry/{subject_id}").status_code == 404


def test_the_import_page_offers_the_template_and_the_list_links_import_and_export(db, client_for):
    village = client_for("demo_village")
    page = village.get("/registry/import?kind=household").get_data(as_text=True)
    assert "下载农户导入模板" in page and "/api/v1/subjects/template.xlsx?kind=household" in page
    assert "任何一行有错,整份文件都不导入" in page
    listing = village.get("/registry/?kind=project").get_data(as_text=True)
    assert "/registry/import?kind=project" in listing and "/api/v1/subjects/export.xlsx?" in listing

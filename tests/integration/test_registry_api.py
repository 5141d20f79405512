"""The registry API: POST/GET /api/v1/subjects, GET/PATCH /api/v1/subjects/{id} — checks, duplicates,
jurisdiction, edit history, deactivation; on the real database (SQLite or PostgreSQL)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from engine.models import AuditEvent, Subject
from engine.models.registry import SubjectMember, SubjectRevision
from tests.integration.registry_support import household, id_number, region_of, wrong_check_digit


def _counts(db) -> tuple[int, int, int]:
    with db.uow() as work:
        s = work.session
        return (s.scalar(select(func.count(Subject.id))), s.scalar(select(func.count(SubjectMember.id))),
                s.scalar(select(func.count(SubjectRevision.id))))


def test_a_village_cadre_registers_a_household_with_members_and_reads_it_back(db, client_for):
    village = client_for("demo_village")
    payload = household(region_of(db, "demo_village"))
    response = village.post("/api/v1/subjects", json=payload)
    assert response.status_code == 201, response.get_json()
    subject_id = response.get_json()["id"]
    got = village.get(f"/api/v1/subjects/{subject_id}").get_json()
    assert got["name"] == "孙小梅" and got["id_number"] == payload["id_number"]  # own village: in full
    assert got["attrs"] == {"category": "边缘易致贫户", "phone": "13800001234", "members": 2}
    assert [(m["name"], m["relation"], m["health"]) for m in got["members"]] == [
        ("孙小梅", "户主", "健康"), ("钱大勇", "配偶", "长期慢性病")]
    assert [(h["revision"], h["action"], h["user"]) for h in got["history"]] == [(1, "create", "demo_village")]
    with db.uow() as work:
        audit = work.session.scalars(select(AuditEvent).where(AuditEvent.action == "subject_create")).all()
        assert [(a.data_diff["subject_id"], a.user.username) for a in audit] == [(subject_id, "demo_village")]


def test_a_wrong_check_digit_is_422_with_errors_id_number_and_stores_nothing(db, client_for):
    village = client_for("demo_village")
    payload = household(region_of(db, "demo_village"))
    payload["id_number"] = wrong_check_digit(payload["id_number"])
    payload["members"] = []
    before = _counts(db)
    response = village.post("/api/v1/subjects", json=payload)
    assert response.status_code == 422
    assert response.get_json()["errors"]["id_number"] == "身份证号校验位不正确"
    assert _counts(db) == before


def test_a_members_bad_id_and_a_second_head_are_reported_by_field(db, client_for):
    payload = household(region_of(db, "demo_village"))
    payload["members"][1]["id_number"] = "51092119820230001X"  # 2 月 30 日
    payload["members"][1]["relation"] = "户主"
    response = client_for("demo_village").post("/api/v1/subjects", json=payload)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert errors["members[1].id_number"] == "身份证号中的出生日期无效"
    assert errors["members"] == "一户只能有一位户主"


def test_a_duplicate_id_number_is_409_naming_the_existing_record(db, client_for):
    village = client_for("demo_village")
    existing = db.household("张德明")
    payload = household(region_of(db, "demo_village"), name="冒名者")
    payload["id_number"] = "510921196503120011"  # 张德明's
    payload["members"] = []
    before = _counts(db)
    response = village.post("/api/v1/subjects", json=payload)
    assert response.status_code == 409
    body = response.get_json()
    assert body["existing"] == {"id": existing}
    assert "张德明" in body["message"] and f"编号 {existing}" in body["message"]
    assert "id_number" in body["errors"]
    assert _counts(db) == before


def test_a_person_already_a_member_elsewhere_is_409(db, client_for):
    village = client_for("demo_village")
    first = household(region_of(db, "demo_village"), serial=1)
    assert village.post("/api/v1/subjects", json=first).status_code == 201
    second = household(region_of(db, "demo_village"), serial=2, name="周某")
    second["members"][1] = dict(first["members"][1])  # the same spouse in two households
    response = village.post("/api/v1/subjects", json=second)
    assert response.status_code == 409
    assert "members[1].id_number" in response.get_json()["errors"]


def test_registering_is_region_scoped_village_inside_its_village_township_inside_its_township(db, client_for):
    own_village, other_village = region_of(db, "demo_village"), region_of(db, "demo_other_village")
    assert client_for("demo_village").post("/api/v1/subjects", json=household(other_village)).status_code == 403
    assert client_for("demo_township").post("/api/v1/subjects", json=household(other_village, serial=3)
                                            ).status_code == 403
    assert client_for("demo_township").post("/api/v1/subjects", json=household(own_village, serial=4)
                                            ).status_code == 201
    # a county leader reads the county's registry but registers nothing (not a registrar role)
    assert client_for("demo_county").post("/api/v1/subjects", json=household(own_village, serial=5)
                                          ).status_code == 403


def test_a_household_must_be_registered_in_a_village_and_a_region_must_exist(db, client_for):
    township = client_for("demo_township")
    response = township.post("/api/v1/subjects", json=household("510921107000"))
    assert response.status_code == 422 and response.get_json()["errors"]["region_code"] == "农户应登记在村(社区)"
    response = township.post("/api/v1/subjects", json=household("510921107999"))
    assert response.status_code == 422 and response.get_json()["errors"]["region_code"] == "区划代码不存在"


def test_search_filters_by_name_id_number_and_kind_inside_the_jurisdiction(db, client_for):
    village = client_for("demo_village")
    payload = household(region_of(db, "demo_village"))
    village.post("/api/v1/subjects", json=payload)
    names = [s["name"] for s in village.get("/api/v1/subjects?kind=household&name=小").get_json()["subjects"]]
    assert names == ["孙小梅"]
    by_member = village.get(f"/api/v1/subjects?id_number={payload['members'][1]['id_number']}").get_json()
    assert [s["name"] for s in by_member["subjects"]] == ["孙小梅"] and by_member["total"] == 1
    projects = village.get("/api/v1/subjects?kind=project").get_json()["subjects"]
    assert {p["kind"] for p in projects} == {"project"} and len(projects) == 2
    # 赵大山 lives in 赤城镇: never listed for 宝梵镇's village
    assert village.get("/api/v1/subjects?name=赵大山").get_json()["total"] == 0
    assert client_for("demo_other_village").get("/api/v1/subjects?name=孙小梅").get_json()["total"] == 0
    # the like pattern is escaped: % matches a literal percent sign only
    assert village.get("/api/v1/subjects?name=%25").get_json()["total"] == 0


def test_bad_search_parameters_are_422(db, client_for):
    village = client_for("demo_village")
    for query in ("per_page=1000", "per_page=0", "per_page=x", "kind=person", "region=51", "active=maybe"):
        assert village.get(f"/api/v1/subjects?{query}").status_code == 422, query


def test_patch_keeps_the_edit_history_and_refuses_a_stale_revision(db, client_for):
    village = client_for("demo_village")
    subject_id = village.post("/api/v1/subjects", json=household(region_of(db, "demo_village"))).get_json()["id"]
    child = id_number("51092120150303001")
    response = village.patch(f"/api/v1/subjects/{subject_id}", json={
        "revision": 1, "attrs": {"phone": "13900005678", "special_flags": ["残疾"]},
        "members": [*village.get(f"/api/v1/subjects/{subject_id}").get_json()["members"],
                    {"name": "钱小宝", "id_number": child, "relation": "子女", "schooling": "小学"}]})
    assert response.status_code == 200, response.get_json()
    got = response.get_json()
    assert got["revision"] == 2 and got["attrs"]["phone"] == "13900005678" and len(got["members"]) == 3
    assert got["attrs"]["special_flags"] == ["残疾"]
    second = got["history"][1]
    assert second["action"] == "update" and second["changes"]["attrs.phone"] == ["13800001234", "13900005678"]
    assert "members" in second["changes"] and "name" not in second["changes"]
    stale = village.patch(f"/api/v1/subjects/{subject_id}", json={"revision": 1, "name": "改名"})
    assert stale.status_code == 409
    assert village.get(f"/api/v1/subjects/{subject_id}").get_json()["name"] == "孙小梅"


def test_deactivating_hides_the_subject_from_the_default_list_and_keeps_it(db, client_for):
    village = client_for("demo_village")
    subject_id = db.household("周玉兰")
    response = village.patch(f"/api/v1/subjects/{subject_id}", json={"is_active": False})
    assert response.status_code == 200 and response.get_json()["is_active"] is False
    assert response.get_json()["history"][-1]["action"] == "deactivate"
    assert village.get("/api/v1/subjects?name=周玉兰").get_json()["total"] == 0
    assert village.get("/api/v1/subjects?name=周玉兰&active=all").get_json()["total"] == 1
    assert village.get("/api/v1/subjects?name=周玉兰&active=0").get_json()["subjects"][0]["id"] == subject_id
    assert village.patch(f"/api/v1/subjects/{subject_id}", json={"is_active": True}).get_json()["is_active"]


def test_editing_needs_a_registrar_role_covering_the_subject(db, client_for):
    subject_id = db.household("张德明")
    assert client_for("demo_county").patch(f"/api/v1/subjects/{subject_id}", json={"name": "改"}).status_code == 403
    assert client_for("demo_other_village").patch(f"/api/v1/subjects/{subject_id}", json={"name": "改"}
                                                  ).status_code == 404
    moved = client_for("demo_village").patch(f"/api/v1/subjects/{subject_id}",
                                             json={"region_code": region_of(db, "demo_other_village")})
    assert moved.status_code == 403
    township = client_for("demo_township").patch(f"/api/v1/subjects/{subject_id}", json={"attrs": {"phone": "13700000000"}})
    assert township.status_code == 200
    assert township.get_json()["id_number"] != "510921196503120011"  # masked outside the village


def test_a_project_is_registered_with_its_fields_and_a_same_named_one_is_409(db, client_for):
    village = client_for("demo_village")
    project = {"kind": "project", "region_code": region_of(db, "demo_village"), "name": "村集体光伏电站",
               "attrs": {"project_type": "产业发展", "budget_yuan": 1200000, "place": "二组", "content": "建设 200 kW 光伏",
                         "funds_source": "衔接资金", "farmer_linkage": "收益用于公益岗位", "department": "县农业农村局"}}
    response = village.post("/api/v1/subjects", json=project)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["attrs"]["farmer_linkage"] == "收益用于公益岗位"
    again = village.post("/api/v1/subjects", json=project)
    assert again.status_code == 409 and again.get_json()["existing"] == {"id": response.get_json()["id"]}
    with_id = village.post("/api/v1/subjects", json={**project, "name": "另一个", "id_number": "510921196503120011"})
    assert with_id.status_code == 422 and "id_number" in with_id.get_json()["errors"]
    bad = village.post("/api/v1/subjects", json={**project, "name": "三", "attrs": {"project_type": "炒股", "budget_yuan": -1}})
    assert set(bad.get_json()["errors"]) == {"attrs.project_type", "attrs.budget_yuan"}


def test_hostile_or_malformed_input_gets_a_4xx_and_changes_nothing(db, client_for):
    village = client_for("demo_village")
    before = _counts(db)
    region = region_of(db, "demo_village")
    cases = [
        [1, 2, 3],
        {**household(region), "name": "\ud800"},
        {**household(region), "name": "a\x00b"},
        {**household(region), "attrs": "x"},
        {**household(region), "attrs": {"category": "边缘易致贫户", "unknown": 1}},
        {**household(region), "members": {"a": 1}},
        {**household(region), "attrs": {"category": "边缘易致贫户", "members": 10**30}},
        {**household(region), "attrs": {"category": "边缘易致贫户", "assistance_cadre": "demo_village"}},
        {"kind": "person"},
    ]
    for payload in cases:  # as raw JSON text: a lone surrogate travels escaped, as a client would send it
        response = village.post("/api/v1/subjects", data=json.dumps(payload), content_type="application/json")
        assert 400 <= response.status_code < 500, (payload, response.status_code)
    assert village.get(f"/api/v1/subjects/{2**40}").status_code == 404
    assert village.patch(f"/api/v1/subjects/{2**40}", json={"name": "x"}).status_code == 404
    subject_id = db.household("张德明")
    assert village.patch(f"/api/v1/subjects/{subject_id}", json={"kind": "project"}).status_code == 422
    assert village.patch(f"/api/v1/subjects/{subject_id}", json={"revision": "1"}).status_code == 422
    assert village.patch(f"/api/v1/subjects/{subject_id}", json={"is_active": "no"}).status_code == 422
    assert _counts(db) == before


def test_a_region_outside_the_jurisdiction_is_refused_by_name_not_listed_empty(db, client_for):
    from engine.bootstrap import DEMO_COUNTY, DEMO_TOWNSHIP, OTHER_TOWNSHIP

    township = client_for("demo_township")
    inside = township.get(f"/api/v1/subjects?region={DEMO_TOWNSHIP}")
    assert inside.status_code == 200 and inside.get_json()["total"] > 0
    for region in (OTHER_TOWNSHIP, DEMO_COUNTY):  # a neighbour, and the county above the township
        api = township.get(f"/api/v1/subjects?region={region}")
        assert api.status_code == 422, region
        assert "本辖区" in json.dumps(api.get_json(), ensure_ascii=False)
        page = township.get(f"/registry/?region={region}")
        assert page.status_code == 422 and "只能选择本辖区内的地区" in page.get_data(as_text=True)
    # the county's officer covers both townships
    assert client_for("demo_county").get(f"/api/v1/subjects?region={OTHER_TOWNSHIP}").status_code == 200

"""Studio scope: a procedure made in the studio belongs to the county of the admin who made it; only
admins covering that county change it and only cases inside it run on it. Shipped procedures are
changed by the system admin only; a county admin copies one into a new county procedure.

蓬溪县 (county A, demo users) against 旬邑县 (county B, users made here).
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from engine.bootstrap import DEMO_PASSWORD
from engine.core.errors import ForbiddenError
from engine.models import AuditEvent, CaseStatus, Procedure, ProcedureDraft, ProcedureVersion, Region, Subject
from tests.integration.studio_support import (
    EDU_SAMPLE,
    admin,
    deploy,
    draft_with,
    edu_files,
    new_code,
    studio,
    sysadmin,
    user_id,
)
from tests.integration.test_studio_zip import multipart

COUNTY_A = "510921000000"  # 蓬溪县
COUNTY_B = "610429000000"  # 旬邑县


@pytest.fixture
def county_b(db):
    """旬邑县's admin (b_admin) and township officer (b_township), and a household in one of its villages."""
    with db.uow() as work:
        township = work.session.scalar(select(Region.code).where(Region.parent_code == COUNTY_B).order_by(Region.code))
        village = work.session.scalar(select(Region.code).where(Region.parent_code == township).order_by(Region.code))
        work.directory.create_user("b_admin", "旬邑县管理员", DEMO_PASSWORD, [("admin", COUNTY_B)])
        work.directory.create_user("b_township", "旬邑县某镇乡村振兴办", DEMO_PASSWORD, [("township_officer", township)])
        work.directory.create_user("b_village", "旬邑县某村村干部", DEMO_PASSWORD, [("village_cadre", village)])
        household = Subject(kind="household", region_code=village, name="马向阳", id_number="610429198203040016",
                            attrs={"members": 3, "category": "脱贫不稳定户"})
        work.session.add(household)
        work.session.flush()
        return household.id


def snapshot(db, code: str) -> tuple:
    """What a refused action must leave untouched: the procedure's versions and owner, the drafts."""
    with db.uow() as work:
        procedure = work.session.scalar(select(Procedure).where(Procedure.code == code))
        versions = [(v.id, v.content_hash) for v in procedure.versions] if procedure else []
        drafts = [(d.id, d.status, d.lock_version, d.owner_region_code) for d in work.session.scalars(
            select(ProcedureDraft).order_by(ProcedureDraft.id))]
        return (procedure.owner_region_code if procedure else None), versions, drafts


def audit_rows(db, action: str) -> list[AuditEvent]:
    with db.uow() as work:
        return list(work.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def start_edu(db, username: str, subject_id: int, code: str) -> int:
    return db.start_case(username, procedure=code, subject_id=subject_id)


def test_a_county_procedure_is_changed_only_by_its_county_and_started_only_inside_it(db, county_b):
    b_admin = db.actor("b_admin")
    code = new_code()
    draft_id = draft_with(db, edu_files(code))
    with db.uow() as work:  # the new-code draft belongs to county A already: B neither sees nor opens it
        assert draft_id not in [d.id for d in studio(work).drafts(b_admin)]
        with pytest.raises(ForbiddenError, match="蓬溪县"):
            studio(work).get_draft(b_admin, draft_id)
    v1_id, _n, _c = deploy(db, draft_id)
    with db.uow() as work:
        assert work.session.scalar(select(Procedure.owner_region_code).where(Procedure.code == code)) == COUNTY_A
    (deployed,) = [e for e in audit_rows(db, "studio_deployed") if e.data_diff["draft_id"] == draft_id]
    assert deployed.user_id == user_id(db, "demo_admin") and deployed.data_diff["owner_region_code"] == COUNTY_A

    # county A's users start cases on it, county B's users cannot
    a_case = start_edu(db, "demo_township", db.household(username="demo_village"), code)
    with db.uow() as work:
        assert code in [v.procedure.code for v in work.definitions.available_to(db.actor("demo_township"))]
        assert code not in [v.procedure.code for v in work.definitions.available_to(db.actor("b_township"))]
    with pytest.raises(ForbiddenError, match="蓬溪县制定的流程"):
        start_edu(db, "b_township", county_b, code)
    with db.uow() as work:
        assert work.session.scalar(select(func.count()).select_from(Subject).where(Subject.id == county_b)) == 1
        assert not work.inbox.started(db.actor("b_township"))

    # A makes v2 and keeps an open draft; B can do nothing with either, and nothing changes
    with db.uow() as work:
        service = studio(work)
        draft = service.open_version(admin(db), v1_id)
        service.save_draft(admin(db), draft.id, edu_files(code, name="教育资助(修订)"), draft.lock_version)
        v2_draft = draft.id
    v2_id, _n, _c = deploy(db, v2_draft)
    with db.uow() as work:
        service = studio(work)
        open_draft = service.open_version(admin(db), v2_id)
        open_draft_id, lock = open_draft.id, open_draft.lock_version
        _name, exported = service.export_version(admin(db), v2_id)
    before = snapshot(db, code)
    refusals = [
        lambda s: s.save_draft(b_admin, open_draft_id, edu_files(code, name="旬邑改过"), lock),
        lambda s: s.deploy_draft(b_admin, open_draft_id),
        lambda s: s.validate_draft(b_admin, open_draft_id),
        lambda s: s.dry_run(b_admin, open_draft_id, {"data": EDU_SAMPLE}),
        lambda s: s.discard_draft(b_admin, open_draft_id),
        lambda s: s.export_draft(b_admin, open_draft_id),
        lambda s: s.export_version(b_admin, v2_id),
        lambda s: s.open_version(b_admin, v2_id),
        lambda s: s.copy_version(b_admin, v2_id, new_code("copy"), "抄一份"),
        lambda s: s.migration_preview(b_admin, v1_id, v2_id),
        lambda s: s.migrate_cases(b_admin, v1_id, v2_id, [a_case], "旬邑县迁移"),
        lambda s: s.import_zip(b_admin, exported),
    ]
    for index, refused in enumerate(refusals):
        with pytest.raises(ForbiddenError, match="蓬溪县"), db.uow() as work:
            refused(studio(work))
        assert snapshot(db, code) == before, index
    assert db.case(a_case).procedure_version_id == v1_id
    with db.uow() as work:
        listed = [s.procedure.code for s in studio(work).overview(b_admin)]
    assert code not in listed and "monitoring_exit" in listed

    # the system admin covers every region: changes it too
    with db.uow() as work:
        checks = studio(work).migration_preview(sysadmin(db), v1_id, v2_id)
        assert [c.case_id for c in checks] == [a_case]
        studio(work).save_draft(sysadmin(db), open_draft_id, edu_files(code, name="教育资助(系统)"), lock)
    with db.uow() as work:
        version, created = studio(work).deploy_draft(sysadmin(db), open_draft_id)
        assert (version.version, created, version.procedure.owner_region_code) == (3, True, COUNTY_A)


def test_a_county_admin_copies_a_shipped_procedure_but_only_the_system_admin_changes_it(db, county_b):
    with db.uow() as work:
        shipped = work.definitions.latest("housing_renovation")
        shipped_id, shipped_version = shipped.id, shipped.version
        _name, shipped_zip = studio(work).export_version(sysadmin(db), shipped_id)
        sys_draft_id = studio(work).open_version(sysadmin(db), shipped_id).id
    before = snapshot(db, "housing_renovation")
    for refused in (lambda s: s.open_version(admin(db), shipped_id),
                    lambda s: s.export_version(admin(db), shipped_id),
                    lambda s: s.import_zip(admin(db), shipped_zip),
                    lambda s: s.get_draft(admin(db), sys_draft_id),
                    lambda s: s.deploy_draft(admin(db), sys_draft_id)):
        with pytest.raises(ForbiddenError, match="系统内置流程.*复制为新流程"), db.uow() as work:
            refused(studio(work))
        assert snapshot(db, "housing_renovation") == before

    # the county admin's copy: a new procedure of 蓬溪县 with the shipped diagram, forms and decisions
    code = new_code("housing")
    with db.uow() as work:
        service = studio(work)
        draft = service.copy_version(admin(db), shipped_id, code, "蓬溪县危房改造")
        assert draft.owner_region_code == COUNTY_A and json.loads(draft.files["procedure.json"])["code"] == code
        assert service.validate_draft(admin(db), draft.id) == []
        copy_id = draft.id
    deploy(db, copy_id)
    with db.uow() as work:
        assert work.session.scalar(select(Procedure.owner_region_code).where(Procedure.code == code)) == COUNTY_A
    (copied,) = [e for e in audit_rows(db, "studio_copied") if e.data_diff["draft_id"] == copy_id]
    assert copied.user_id == user_id(db, "demo_admin")
    assert (copied.data_diff["from"], copied.data_diff["owner_region_code"]) == ("housing_renovation", COUNTY_A)
    case_id = db.start_case("demo_village", procedure=code)
    assert db.case(case_id).status == CaseStatus.running and db.open_tasks(case_id)
    with pytest.raises(ForbiddenError):
        db.start_case("b_village", procedure=code, subject_id=county_b)
    # the shipped procedure still serves every county
    assert db.case(db.start_case("b_village", procedure="housing_renovation", subject_id=county_b)).status \
        == CaseStatus.running

    # the system admin deploys a new version of the shipped procedure; it stays system-wide
    with db.uow() as work:
        service = studio(work)
        files = dict(service.get_draft(sysadmin(db), sys_draft_id).files)
        manifest = json.loads(files["procedure.json"])
        manifest["description"] = "系统管理员修订"
        files["procedure.json"] = json.dumps(manifest, ensure_ascii=False)
        service.save_draft(sysadmin(db), sys_draft_id, files, None)
    with db.uow() as work:
        version, created = studio(work).deploy_draft(sysadmin(db), sys_draft_id)
        assert (version.version, created) == (shipped_version + 1, True)
        assert version.procedure.owner_region_code is None
    (deployed,) = [e for e in audit_rows(db, "studio_deployed") if e.data_diff["draft_id"] == sys_draft_id]
    assert deployed.user_id == user_id(db, "demo_sysadmin") and deployed.data_diff["owner_region_code"] is None


def test_the_system_admin_covers_every_province_and_chooses_the_owner_of_a_new_procedure(db):
    with db.uow() as work:
        service = studio(work)
        provinces = set(work.session.scalars(select(Region.code).where(Region.parent_code.is_(None))))
        assert {g.region_code for g in sysadmin(db).admin_grants} == provinces and len(provinces) == 4
        choices = service.owner_choices(sysadmin(db))
        assert choices[0] == ("", "全省/系统") and {c for c, _n in choices[1:]} == provinces
        assert service.owner_choices(admin(db)) == [(COUNTY_A, "蓬溪县")]
        system_wide = service.create_draft(sysadmin(db), new_code(), "系统流程")
        sichuan = service.create_draft(sysadmin(db), new_code(), "四川流程", owner_region_code="510000000000")
        assert (system_wide.owner_region_code, sichuan.owner_region_code) == (None, "510000000000")
        # a Sichuan draft is inside 蓬溪县's admin's reach? No: the province is wider than the county
        with pytest.raises(ForbiddenError):
            service.get_draft(admin(db), sichuan.id)
        from engine.core.errors import ValidationError

        with pytest.raises(ValidationError) as refused:
            service.create_draft(admin(db), new_code(), "越权", owner_region_code="")
        assert "owner_region_code" in refused.value.errors


def test_forged_requests_from_another_county_get_403_and_change_nothing(db, county_b, client_for):
    code = new_code()
    draft_id = draft_with(db, edu_files(code))
    v1_id, _n, _c = deploy(db, draft_id)
    a_client = client_for("demo_admin")
    listing = a_client.get("/studio/").get_data(as_text=True)
    row = listing.split(f'data-procedure="{code}"')[1].split("</tr>")[0]
    assert 'data-testid="procedure-owner">蓬溪县<' in row and "打开为草稿" in row and "复制为新流程" in row
    shipped_row = listing.split('data-procedure="housing_renovation"')[1].split("</tr>")[0]
    assert "全省/系统" in shipped_row and "复制为新流程" in shipped_row
    assert "打开为草稿" not in shipped_row and "export.zip" not in shipped_row
    a_case = start_edu(db, "demo_township", db.household(username="demo_village"), code)
    with db.uow() as work:
        service = studio(work)
        revised = service.open_version(admin(db), v1_id)
        service.save_draft(admin(db), revised.id, edu_files(code, name="教育资助(修订)"), revised.lock_version)
        revised_id = revised.id
    v2_id, _n, _c = deploy(db, revised_id)
    with db.uow() as work:
        open_draft = studio(work).open_version(admin(db), v1_id)
        open_draft_id, lock = open_draft.id, open_draft.lock_version
        _name, exported = studio(work).export_version(admin(db), v1_id)

    b = client_for("b_admin")
    page = b.get("/studio/").get_data(as_text=True)
    assert f'data-procedure="{code}"' not in page and f"/studio/drafts/{open_draft_id}" not in page
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    before = snapshot(db, code)
    headers = {"X-CSRFToken": token}
    responses = {
        "editor": b.get(f"/studio/drafts/{open_draft_id}"),
        "draft": b.get(f"/studio/api/drafts/{open_draft_id}"),
        "save": b.post(f"/studio/api/drafts/{open_draft_id}", headers=headers,
                       json={"files": edu_files(code, name="旬邑改过"), "lock_version": lock}),
        "deploy": b.post(f"/studio/api/drafts/{open_draft_id}/deploy", headers=headers, json={}),
        "export": b.get(f"/studio/versions/{v1_id}/export.zip"),
        "open": b.post(f"/studio/versions/{v1_id}/open", data={"csrf_token": token}),
        "preview": b.get(f"/studio/versions/{v1_id}/migrate?to={v2_id}"),
        "migrate": b.post(f"/studio/versions/{v1_id}/migrate", data={"csrf_token": token, "to": v2_id,
                                                                    "case_id": str(a_case), "reason": "伪造"}),
        "import": b.post("/studio/import", data=multipart({"csrf_token": token}, "file", "a.zip", exported)[0],
                         content_type=multipart({}, "file", "a.zip", b"")[1]),
    }
    for what, response in responses.items():
        assert response.status_code == 403, what
        assert "蓬溪县" in response.get_data(as_text=True), what
    assert responses["save"].get_json()["message"] == f"草稿「教育资助(修订)」({code})属于蓬溪县,您没有修改它的权限"
    assert snapshot(db, code) == before
    assert db.case(a_case).procedure_version_id == v1_id
    refused = {e.action for e in audit_rows(db, "studio_save_refused") + audit_rows(db, "studio_deploy_refused")
               + audit_rows(db, "studio_import_refused") + audit_rows(db, "studio_migrate_refused")
               + audit_rows(db, "studio_export_refused") if e.user_id == user_id(db, "b_admin")}
    assert refused == {"studio_save_refused", "studio_deploy_refused", "studio_import_refused",
                       "studio_migrate_refused", "studio_export_refused"}

    # the start page and the API offer the procedure in county A only
    assert code in client_for("demo_township").get("/cases/new").get_data(as_text=True)
    assert code not in client_for("b_township").get("/cases/new").get_data(as_text=True)
    api_codes = [p["code"] for p in client_for("b_township").get("/api/v1/procedures").get_json()["procedures"]]
    assert code not in api_codes and "housing_renovation" in api_codes


def test_the_county_admin_copies_a_shipped_procedure_through_the_page(db, client_for):
    a_client = client_for("demo_admin")
    with db.uow() as work:
        shipped_id = work.definitions.latest("monitoring_exit").id
        versions_before = work.session.scalar(select(func.count(ProcedureVersion.id)))
    page = a_client.get("/studio/").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    taken = a_client.post(f"/studio/versions/{shipped_id}/copy",
                          data={"csrf_token": token, "code": "housing_renovation", "name": "x"})
    assert taken.status_code == 422 and "已有此代码" in taken.get_data(as_text=True)
    code = new_code("exit")
    copied = a_client.post(f"/studio/versions/{shipped_id}/copy",
                           data={"csrf_token": token, "code": code, "name": "蓬溪县四步法退出"})
    assert copied.status_code == 302
    draft_id = int(copied.headers["Location"].rsplit("/", 1)[1])
    draft = a_client.get(f"/studio/api/drafts/{draft_id}").get_json()
    assert draft["code"] == code and "template/notices.json" in draft["files"]
    with db.uow() as work:
        assert work.session.get(ProcedureDraft, draft_id).owner_region_code == COUNTY_A
        assert work.session.scalar(select(func.count(ProcedureVersion.id))) == versions_before


def test_a_procedure_may_link_only_to_procedures_serving_its_own_regions(db, county_b):
    """startsProcedure to another county's procedure would fail at run time: the draft is refused instead."""
    county_code = new_code()
    deploy(db, draft_with(db, edu_files(county_code)))  # owned by county A
    linking = edu_files(new_code("link"))
    (bpmn_key,) = [k for k in linking if k.startswith("bpmn/")]
    link = f'<spiffworkflow:property name="startsProcedure" value="{county_code}" />'
    linking[bpmn_key] = linking[bpmn_key].replace('<spiffworkflow:property name="formKey"',
                                                  link + '<spiffworkflow:property name="formKey"', 1)
    assert link in linking[bpmn_key]
    with db.uow() as work:
        service = studio(work)
        assert county_code in service.linkable_procedures(COUNTY_A)
        assert "monitoring_exit" in service.linkable_procedures(COUNTY_B)
        assert county_code not in service.linkable_procedures(COUNTY_B)
        assert county_code not in service.linkable_procedures(None)  # a system-wide procedure runs everywhere
        assert not [p for p in service.validate_files(linking, COUNTY_A) if "其他地区" in p.message]
        for owner in (COUNTY_B, None):
            refused = [p for p in service.validate_files(linking, owner) if "其他地区" in p.message]
            assert len(refused) == 1 and county_code in refused[0].message and refused[0].element_id

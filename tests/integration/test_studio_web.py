"""The studio's pages and JSON endpoints: admins only (refusals audited), CSRF on every write, every
action in the audit log, each shipped procedure opens and validates, deploy and migrate through HTTP."""

from __future__ import annotations

import re

from sqlalchemy import select

from engine.models import AuditEvent, Procedure, ProcedureDraft
from tests.integration.studio_support import EDU_SAMPLE, edu_files, new_code, user_id

TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"|name="csrf_token" value="([^"]+)"')


def token(client, path="/studio/") -> str:
    match = TOKEN.search(client.get(path).get_data(as_text=True))
    return match.group(1) or match.group(2)


def actions(db, username="demo_admin") -> list[str]:
    with db.uow() as work:
        return list(work.session.scalars(select(AuditEvent.action).where(
            AuditEvent.user_id == user_id(db, username), AuditEvent.case_id.is_(None)).order_by(AuditEvent.id)))


def test_only_admins_get_in_and_refusals_are_audited(db, client, client_for):
    assert client.get("/studio/").status_code == 302
    assert client.get("/studio/api/drafts/1").get_json()["message"] == "请先登录"
    township = client_for("demo_township")
    page = township.get("/studio/")
    assert page.status_code == 403 and "只有管理员" in page.get_data(as_text=True)
    api = township.post("/studio/api/drafts/1/deploy", json={})
    assert api.status_code in (400, 403)  # CSRF first, then the admin check
    assert township.get("/studio/api/drafts/1").status_code == 403
    assert township.get("/studio/api/drafts/1").get_json()["message"] == "只有管理员可以使用流程设计"
    assert "流程设计" not in township.get("/").get_data(as_text=True)
    assert actions(db, "demo_township").count("studio_forbidden") >= 3


def test_overview_lists_versions_with_running_cases(db, client_for):
    case_id = db.start_case()  # a 四步法 exit case on monitoring_exit v1
    admin = client_for("demo_admin")
    assert 'data-testid="nav-studio"' in admin.get("/").get_data(as_text=True)
    body = admin.get("/studio/").get_data(as_text=True)
    row = re.search(r'data-procedure="monitoring_exit" data-version="1">(.*?)</tr>', body, re.S).group(1)
    assert "在用" in row and re.search(r'data-testid="running-count">1<', row)
    assert case_id


def test_new_draft_save_validate_deploy_through_http(db, client_for):
    admin = client_for("demo_admin")
    code = new_code()
    csrf = token(admin)
    refused = admin.post("/studio/drafts", data={"csrf_token": csrf, "code": "Bad Code", "name": ""})
    assert refused.status_code == 422 and "流程代码只能是" in refused.get_data(as_text=True)
    existing = admin.post("/studio/drafts", data={"csrf_token": csrf, "code": "monitoring_exit", "name": "x"})
    assert existing.status_code == 422 and "已有此代码" in existing.get_data(as_text=True)
    created = admin.post("/studio/drafts", data={"csrf_token": csrf, "code": code, "name": "教育资助"})
    assert created.status_code == 302
    draft_id = int(created.headers["Location"].rsplit("/", 1)[1])
    page = admin.get(f"/studio/drafts/{draft_id}")
    assert page.status_code == 200 and "dist/studio.js" in page.get_data(as_text=True)
    csrf = token(admin, f"/studio/drafts/{draft_id}")
    draft = admin.get(f"/studio/api/drafts/{draft_id}").get_json()
    assert sorted(draft["files"]) == [f"bpmn/{code}.bpmn", "procedure.json"]

    empty = admin.post(f"/studio/api/drafts/{draft_id}/validate", headers={"X-CSRFToken": csrf}, json={}).get_json()
    assert not empty["ok"] and empty["problems"][0]["element_id"] == code and "空" in empty["problems"][0]["message"]

    url = f"/studio/api/drafts/{draft_id}"
    assert admin.post(url, json={"files": edu_files(code), "lock_version": draft["lock_version"]}).status_code == 400
    saved = admin.post(url, headers={"X-CSRFToken": csrf}, json={"files": edu_files(code),
                                                                 "lock_version": draft["lock_version"]})
    assert saved.status_code == 200 and saved.get_json()["lock_version"] == draft["lock_version"] + 1
    stale = admin.post(url, headers={"X-CSRFToken": csrf}, json={"files": edu_files(code),
                                                                 "lock_version": draft["lock_version"]})
    assert stale.status_code == 409

    deployed = admin.post(f"{url}/deploy", headers={"X-CSRFToken": csrf}, json={})
    assert deployed.status_code == 200, deployed.get_data(as_text=True)
    assert deployed.get_json()["version"] == 1 and deployed.get_json()["created"] is True
    again = admin.post(f"{url}/deploy", headers={"X-CSRFToken": csrf}, json={}).get_json()
    assert again["created"] is False and "未生成新版本" in again["message"]

    # a new case of the deployed procedure runs like any other
    case_id = db.start_case("demo_township", procedure=code, subject_id=db.household(username="demo_village"))
    (row,) = db.open_tasks(case_id)
    assert (row.title, row.role_code) == ("学校摸底", "township_officer")
    db.complete(case_id, "demo_township", data=EDU_SAMPLE)

    broken = edu_files(code)
    broken[f"bpmn/{code}.bpmn"] = broken[f"bpmn/{code}.bpmn"].replace("(village_cadre)", "(no_role)")
    lock = admin.get(url).get_json()["lock_version"]
    admin.post(url, headers={"X-CSRFToken": csrf}, json={"files": broken, "lock_version": lock})
    refused = admin.post(f"{url}/deploy", headers={"X-CSRFToken": csrf}, json={})
    assert refused.status_code == 422
    # the lane and the user task it holds (deploy and the studio run one set of checks: deploy names the task)
    assert [p["element_id"] for p in refused.get_json()["problems"]] == ["Lane_village", "student_application"]

    zipped = admin.get(f"/studio/drafts/{draft_id}/export.zip")
    assert zipped.status_code == 200 and zipped.mimetype == "application/zip" and zipped.data[:2] == b"PK"
    logged = actions(db)
    for action in ("studio_draft_created", "studio_validated", "studio_draft_saved", "studio_deployed",
                   "studio_deploy_refused", "studio_exported", "studio_save_refused"):
        assert action in logged, action


def test_every_shipped_procedure_opens_in_the_editor_and_validates(db, client_for):
    admin = client_for("demo_sysadmin")  # shipped procedures are changed by the system admin only
    csrf = token(admin)
    with db.uow() as work:
        shipped = [(v.id, v.procedure.code) for v in work.definitions.list_latest()
                   if v.procedure.owner_region_code is None]
    assert {"monitoring_exit", "housing_renovation"} <= {code for _v, code in shipped}
    for version_id, code in shipped:
        opened = admin.post(f"/studio/versions/{version_id}/open", data={"csrf_token": csrf})
        assert opened.status_code == 302, code
        draft_id = int(opened.headers["Location"].rsplit("/", 1)[1])
        files = admin.get(f"/studio/api/drafts/{draft_id}").get_json()["files"]
        assert any(k.startswith("bpmn/") for k in files) and any(k.startswith("form/") for k in files)
        result = admin.post(f"/studio/api/drafts/{draft_id}/validate", headers={"X-CSRFToken": csrf}, json={})
        assert result.get_json() == {"ok": True, "problems": []}, code
        assert admin.get(f"/studio/versions/{version_id}/export.zip").status_code == 200


def test_migration_pages(db, client_for):
    from tests.integration.studio_support import admin as admin_actor
    from tests.integration.studio_support import deploy, draft_with, studio

    code = new_code()
    v1, _n, _c = deploy(db, draft_with(db, edu_files(code)))
    case_id = db.start_case("demo_township", procedure=code, subject_id=db.household(username="demo_village"))
    with db.uow() as work:
        service = studio(work)
        draft = service.open_version(admin_actor(db), v1)
        service.save_draft(admin_actor(db), draft.id, edu_files(code, name="教育资助(修订)"), draft.lock_version)
        draft_id = draft.id
    v2, _n, _c = deploy(db, draft_id)
    admin = client_for("demo_admin")
    listing = admin.get("/studio/").get_data(as_text=True)
    assert f"/studio/versions/{v1}/migrate?to={v2}" in listing.replace("&amp;", "&")
    preview = admin.get(f"/studio/versions/{v1}/migrate?to={v2}").get_data(as_text=True)
    assert f'data-case="{case_id}" data-movable="yes"' in preview
    csrf = token(admin, f"/studio/versions/{v1}/migrate?to={v2}")
    moved = admin.post(f"/studio/versions/{v1}/migrate", data={"csrf_token": csrf, "to": v2, "case_id": case_id,
                                                              "reason": "名称修订"}, follow_redirects=True)
    assert "已迁移 1 个案件" in moved.get_data(as_text=True)
    assert db.case(case_id).procedure_version_id == v2
    case_page = client_for("demo_township").get(f"/cases/{case_id}").get_data(as_text=True)
    assert "版本迁移 v1 → v2" in case_page and "名称修订" in case_page
    with db.uow() as work:
        assert work.session.scalar(select(Procedure).where(Procedure.code == code)) is not None
        assert work.session.get(ProcedureDraft, draft_id).status == "deployed"

"""审批人为空: a task whose role nobody holds at its scope is 无人办理 — shown so on the case page and in
我发起的, its region's admins are told and list it, and granting the role (by user admin or 指派 on the list)
releases it to the new holder, who is told; deploying warns of steps that would have nobody."""

from __future__ import annotations

from sqlalchemy import select

from engine.models import Notification, Region, TaskRow, User


def _user_id(db, username: str) -> int:
    with db.uow() as work:
        return work.session.scalar(select(User.id).where(User.username == username))


def _notes(db, username: str, kind: str) -> list[Notification]:
    with db.uow() as work:
        return list(work.session.scalars(select(Notification).where(
            Notification.user_id == _user_id(db, username), Notification.kind == kind).order_by(Notification.id)))


def _unstaffed_exit_case(db, exit_case, client_for) -> tuple[int, TaskRow]:
    """An exit case waiting at 镇复核 while 宝梵镇 has no active 乡镇乡村振兴办 (demo_township deactivated)."""
    admin = client_for("demo_admin")
    response = admin.patch(f"/api/v1/users/{_user_id(db, 'demo_township')}", json={"is_active": False})
    assert response.status_code == 200, response.get_json()
    case_id = exit_case(2)
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "township_recheck"
    return case_id, row


def test_a_task_nobody_holds_is_shown_as_unstaffed_and_its_admins_are_told(db, exit_case, client_for):
    case_id, row = _unstaffed_exit_case(db, exit_case, client_for)
    with db.uow() as work:
        assert work.access.unstaffed_ids([work.session.get(TaskRow, row.id)]) == {row.id}
    # the county admin and the system admin above are told, nobody else
    for username in ("demo_admin", "demo_sysadmin"):
        (note,) = [n for n in _notes(db, username, "unstaffed") if n.task_id == row.id]
        assert note.title == "无人办理:镇复核" and "乡镇乡村振兴办" in note.body and "宝梵镇" in note.body
    assert not _notes(db, "demo_village", "unstaffed")
    # the starter sees 无人办理 on the case page and in 我发起的
    village = client_for("demo_village")
    page = village.get(f"/cases/{case_id}").get_data(as_text=True)
    assert f'data-testid="unstaffed-{row.id}"' in page and "已通知管理员" in page
    started = village.get("/?view=started").get_data(as_text=True)
    assert started.count('data-testid="unstaffed-badge"') == 1
    # the admin's list names the step, the case and the missing post; a village cadre may not open it
    listing = client_for("demo_admin").get("/admin/unstaffed")
    text = listing.get_data(as_text=True)
    assert listing.status_code == 200 and "镇复核" in text and "宝梵镇 · 乡镇乡村振兴办" in text
    assert text.count('data-testid="unstaffed-row"') == 1
    assert client_for("demo_other_township").get("/admin/unstaffed").status_code == 403


def test_granting_the_role_releases_the_task_to_the_new_holder(db, exit_case, client_for, login):
    case_id, row = _unstaffed_exit_case(db, exit_case, client_for)
    admin = client_for("demo_admin")
    created = admin.post("/api/v1/users", json={
        "username": "wang_township", "display_name": "王镇干", "password": "Zhen2026ganbu",
        "grants": [{"role": "township_officer", "region_code": row.scope_code}]})
    assert created.status_code == 201, created.get_json()
    (note,) = _notes(db, "wang_township", "task")
    assert note.task_id == row.id and "原无人办理" in note.title
    with db.uow() as work:
        assert work.access.unstaffed_ids([work.session.get(TaskRow, row.id)]) == set()
    assert "当前没有无人办理的任务" in admin.get("/admin/unstaffed").get_data(as_text=True)
    # the new holder sees it in 待办 and completes it
    new = admin.application.test_client()
    login(new, "wang_township", "Zhen2026ganbu")
    todo = new.get("/api/v1/tasks").get_json()
    assert [t["id"] for t in todo["tasks"]] == [row.id]


def test_an_admin_assigns_an_unstaffed_task_from_the_list(db, exit_case, client_for, csrf_token):
    case_id, row = _unstaffed_exit_case(db, exit_case, client_for)
    admin = client_for("demo_admin")
    page = admin.get("/admin/unstaffed").get_data(as_text=True)
    # the picker offers the people whose jurisdiction contains the case (AccessPolicy.candidates), by name
    assert "蓬溪县乡村振兴局(演示)" in page and "赤城镇" not in page.split("unstaffed-row", 1)[1]
    token = csrf_token(admin, "/admin/unstaffed")
    refused = admin.post(f"/admin/unstaffed/{row.id}/assign", data={"csrf_token": token,
                                                                    "username": "demo_other_township"})
    assert refused.status_code == 302
    assert "只能指派给" in admin.get("/admin/unstaffed").get_data(as_text=True)
    done = admin.post(f"/admin/unstaffed/{row.id}/assign", data={"csrf_token": token, "username": "demo_clerk"})
    assert done.status_code == 302
    assert "已授予宝梵镇办公室(演示)该岗位" in admin.get("/admin/unstaffed").get_data(as_text=True)
    (note,) = [n for n in _notes(db, "demo_clerk", "task") if n.task_id == row.id]
    assert "原无人办理" in note.title
    clerk = client_for("demo_clerk")
    assert [t["id"] for t in clerk.get("/api/v1/tasks").get_json()["tasks"]] == [row.id]
    # a second assignment of a released task is refused
    again = admin.post(f"/admin/unstaffed/{row.id}/assign", data={"csrf_token": token, "username": "demo_dept"})
    assert again.status_code == 302
    assert "已有人办理" in admin.get("/admin/unstaffed").get_data(as_text=True)


def test_reactivating_the_holder_releases_the_task(db, exit_case, client_for):
    case_id, row = _unstaffed_exit_case(db, exit_case, client_for)
    admin = client_for("demo_admin")
    assert admin.patch(f"/api/v1/users/{_user_id(db, 'demo_township')}", json={"is_active": True}).status_code == 200
    assert [n.task_id for n in _notes(db, "demo_township", "task") if "原无人办理" in n.title] == [row.id]


def test_deploy_warns_which_steps_would_have_nobody_in_which_regions(db, client_for):
    admin = client_for("demo_admin")
    assert admin.patch(f"/api/v1/users/{_user_id(db, 'demo_township')}", json={"is_active": False}).status_code == 200
    with db.uow() as work:
        warnings = work.staffing.deploy_warnings(work.definitions.latest("monitoring_exit"))
    assert any("「镇复核」" in w and "宝梵镇" in w and "乡镇乡村振兴办" in w for w in warnings), warnings
    assert not any("赤城镇" in w and "镇复核" in w for w in warnings)  # 赤城镇 has its officer
    assert all("无人办理" in w for w in warnings)
    assert admin.patch(f"/api/v1/users/{_user_id(db, 'demo_township')}", json={"is_active": True}).status_code == 200
    with db.uow() as work:
        assert not any("镇复核" in w for w in work.staffing.deploy_warnings(work.definitions.latest("monitoring_exit")))


def test_the_api_lists_unstaffed_tasks_for_admins_and_assigns_one(db, exit_case, client_for):
    case_id, row = _unstaffed_exit_case(db, exit_case, client_for)
    admin = client_for("demo_admin")
    listed = admin.get("/api/v1/tasks/unstaffed").get_json()["tasks"]
    assert [t["id"] for t in listed] == [row.id] and listed[0]["scope_name"] == "宝梵镇"
    assert "demo_clerk" in {c["username"] for c in listed[0]["candidates"]}
    assert client_for("demo_village").get("/api/v1/tasks/unstaffed").status_code == 403
    bad = admin.post(f"/api/v1/tasks/{row.id}/assign", json={"username": "demo_other_township"})
    assert bad.status_code == 422 and "username" in bad.get_json()["errors"]
    assert admin.post(f"/api/v1/tasks/{row.id}/assign", json={}).status_code == 422
    done = admin.post(f"/api/v1/tasks/{row.id}/assign", json={"username": "demo_clerk"})
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["granted"] == [{"role": "township_officer", "region_code": row.scope_code}]
    assert admin.get("/api/v1/tasks/unstaffed").get_json()["tasks"] == []
    assert admin.post(f"/api/v1/tasks/{row.id}/assign", json={"username": "demo_dept"}).status_code == 404


def _helper_warnings(work) -> list[str]:
    return [w for w in work.staffing.deploy_warnings(work.definitions.latest("monitoring_identification"))
            if "制定帮扶计划" in w and "「帮扶责任人」" in w]


def test_deploy_warns_of_the_assistance_cadre_steps_when_the_village_has_no_helper(db, client_for):
    with db.uow() as work:
        village = work.session.get(Region, db.actor("demo_village").grants[0].region_code).name
        other = work.session.get(Region, db.actor("demo_other_village").grants[0].region_code).name
        (before,) = _helper_warnings(work)  # the other village has a cadre but no 帮扶责任人
        assert other in before and village not in before
    admin = client_for("demo_admin")
    assert admin.patch(f"/api/v1/users/{_user_id(db, 'demo_helper')}", json={"is_active": False}).status_code == 200
    with db.uow() as work:
        (after,) = _helper_warnings(work)
        assert other in after and village in after



def test_the_start_warning_names_each_open_step_nobody_can_take(db, exit_case, client_for):
    """Start warns (issue 12 part 4): what the start page flashes after a start (StaffingService.start_warnings):
    every open step of the case that is 无人办理. The shipped procedures open their first step in the starter's own
    lane, so here the case is made to wait at an unstaffed 镇复核 and the same service is asked."""
    case_id, row = _unstaffed_exit_case(db, exit_case, client_for)
    with db.uow() as work:
        assert work.staffing.start_warnings(case_id) == [
            "注意:步骤「镇复核」目前无人办理(该地区没有在岗的办理人员),已通知管理员安排人员"]
        staffed = db.start_case("demo_village")
        assert work.staffing.start_warnings(staffed) == []


def test_a_start_with_staffed_steps_warns_of_nothing(db, client_for, csrf_token):
    village = client_for("demo_village")
    household = db.free_household("demo_village", "monitoring_exit")
    page = village.post("/cases/new", data={"csrf_token": csrf_token(village, "/cases/new"),
                                            "procedure": "monitoring_exit", "subject_id": household},
                        follow_redirects=True).get_data(as_text=True)
    assert "流程已发起" in page and "目前无人办理" not in page and "flash-warning" not in page

"""Users, roles and grants administered through POST/GET/PATCH /api/v1/users and the grant routes: a county
admin inside the county, the system admin everywhere, the password policy, audit rows."""

from __future__ import annotations

from sqlalchemy import select

from engine.models import AuditEvent, Region, RegionLevel, User
from tests.integration.registry_support import region_of

PASSWORD = "Bfz2026worker"


def _outside_county(db) -> str:
    with db.uow() as work:
        return work.session.scalar(select(Region.code).where(Region.level == RegionLevel.village,
                                                             ~Region.code.startswith("510921")).order_by(Region.code))


def _new_user(region: str, username: str = "bf_cadre01", role: str = "village_cadre", **extra) -> dict:
    return {"username": username, "display_name": "宝梵镇新村干部", "password": PASSWORD,
            "grants": [{"role": role, "region_code": region}], **extra}


def test_a_county_admin_creates_a_user_who_can_log_in_and_the_creation_is_audited(db, client, client_for, login):
    admin = client_for("demo_admin")
    response = admin.post("/api/v1/users", json=_new_user(region_of(db, "demo_village")))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["username"] == "bf_cadre01" and [g["role"] for g in body["grants"]] == ["village_cadre"]
    login(client, "bf_cadre01", PASSWORD)
    assert client.get("/api/v1/subjects?name=张德明").get_json()["total"] == 1  # sees the village
    with db.uow() as work:
        (event,) = work.session.scalars(select(AuditEvent).where(AuditEvent.action == "user_create")).all()
        assert event.user.username == "demo_admin" and event.data_diff["target"] == "bf_cadre01"


def test_a_grant_outside_the_admins_county_is_403_and_creates_nothing(db, client_for):
    admin = client_for("demo_admin")
    response = admin.post("/api/v1/users", json=_new_user(_outside_county(db)))
    assert response.status_code == 403
    with db.uow() as work:
        assert work.session.scalar(select(User).where(User.username == "bf_cadre01")) is None
    # the system admin holds every province: the same grant is fine
    assert client_for("demo_sysadmin").post("/api/v1/users", json=_new_user(_outside_county(db))).status_code == 201


def test_the_password_policy_and_the_username_rules_are_enforced(db, client_for):
    admin = client_for("demo_admin")
    region = region_of(db, "demo_village")
    for password, message in (("short1", "密码长度应为 10 到 128 位"), ("onlyletterslong", "密码须同时包含字母和数字"),
                              ("bf_cadre01Xyz9", "密码不能包含用户名"), ("demo12345", "密码长度应为 10 到 128 位"),
                              ("Password123", "密码过于简单")):
        response = admin.post("/api/v1/users", json={**_new_user(region), "password": password})
        assert response.status_code == 422 and response.get_json()["errors"]["password"] == message, password
    for username in ("Ab", "有中文", "9start", "a" * 65):
        assert admin.post("/api/v1/users", json=_new_user(region, username=username)).status_code == 422
    assert admin.post("/api/v1/users", json=_new_user(region, username="demo_village")).status_code == 409


def test_a_grant_at_the_wrong_level_or_an_unknown_role_is_422(db, client_for):
    admin = client_for("demo_admin")
    township = "510921107000"
    wrong_level = admin.post("/api/v1/users", json=_new_user(township))
    assert wrong_level.status_code == 422 and "grants[0].region_code" in wrong_level.get_json()["errors"]
    assert admin.post("/api/v1/users", json=_new_user(township, role="pope")).status_code == 422
    assert admin.post("/api/v1/users", json={**_new_user(township), "grants": "all"}).status_code == 422
    assert admin.post("/api/v1/users", json={**_new_user(township), "grants": [["x"]]}).status_code == 422


def test_only_admins_manage_users(db, client_for):
    village = client_for("demo_village")
    assert village.post("/api/v1/users", json=_new_user(region_of(db, "demo_village"))).status_code == 403
    assert village.get("/api/v1/users").status_code == 403


def test_a_county_admin_resets_a_password_and_deactivates_a_user_inside_the_county_only(db, client, client_for, login):
    admin = client_for("demo_admin")
    listed = {u["username"] for u in admin.get("/api/v1/users").get_json()["users"]}
    assert {"demo_village", "demo_township", "demo_admin"} <= listed and "demo_sysadmin" not in listed
    with db.uow() as work:
        ids = {u.username: u.id for u in work.session.scalars(select(User))}
    assert admin.get(f"/api/v1/users/{ids['demo_sysadmin']}").status_code == 404
    assert admin.patch(f"/api/v1/users/{ids['demo_sysadmin']}", json={"password": PASSWORD}).status_code == 404
    weak = admin.patch(f"/api/v1/users/{ids['demo_village']}", json={"password": "123"})
    assert weak.status_code == 422 and "password" in weak.get_json()["errors"]
    assert admin.patch(f"/api/v1/users/{ids['demo_village']}", json={"password": PASSWORD}).status_code == 200
    login(client, "demo_village", PASSWORD)
    assert admin.patch(f"/api/v1/users/{ids['demo_village']}", json={"is_active": False}).get_json()["is_active"] is False
    refused = client.application.test_client().post("/api/v1/session",
                                                    json={"username": "demo_village", "password": PASSWORD})
    assert refused.status_code in (401, 403)
    assert admin.patch(f"/api/v1/users/{ids['demo_admin']}", json={"is_active": False}).status_code == 403
    assert admin.patch(f"/api/v1/users/{ids['demo_admin']}", json={"username": "x"}).status_code == 422
    with db.uow() as work:
        actions = [e.action for e in work.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert actions[-2:] == ["user_password_reset", "user_deactivate"]


def test_grants_are_added_and_revoked_inside_the_scope_and_the_last_own_admin_grant_stays(db, client_for):
    admin = client_for("demo_admin")
    with db.uow() as work:
        ids = {u.username: u.id for u in work.session.scalars(select(User))}
    village = region_of(db, "demo_village")
    added = admin.post(f"/api/v1/users/{ids['demo_village']}/grants",
                       json={"grants": [{"role": "assistance_cadre", "region_code": village}]})
    assert added.status_code == 201
    grants = {g["role"]: g["id"] for g in added.get_json()["grants"]}
    assert set(grants) == {"village_cadre", "assistance_cadre"}
    outside = admin.post(f"/api/v1/users/{ids['demo_village']}/grants",
                         json={"grants": [{"role": "village_cadre", "region_code": _outside_county(db)}]})
    assert outside.status_code == 403
    revoked = admin.delete(f"/api/v1/users/{ids['demo_village']}/grants/{grants['assistance_cadre']}", json={})
    assert [g["role"] for g in revoked.get_json()["grants"]] == ["village_cadre"]
    (own,) = admin.get(f"/api/v1/users/{ids['demo_admin']}").get_json()["grants"]
    assert admin.delete(f"/api/v1/users/{ids['demo_admin']}/grants/{own['id']}", json={}).status_code == 403
    assert admin.delete(f"/api/v1/users/{ids['demo_village']}/grants/{2**40}", json={}).status_code == 404


def test_the_users_page_creates_a_user_and_grants_a_role(db, client_for, csrf_token):
    admin = client_for("demo_admin")
    token = csrf_token(admin, "/admin/users/")
    form = {"csrf_token": token, "username": "bf_helper", "display_name": "帮扶干部王", "password": PASSWORD,
            "role": "assistance_cadre", "region_code": region_of(db, "demo_village")}
    response = admin.post("/admin/users/", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "帮扶干部王" in page and "assistance_cadre" in page
    weak = admin.post("/admin/users/", data={**form, "username": "bf_other", "password": "abc"})
    assert weak.status_code == 422 and "密码长度" in weak.get_data(as_text=True)
    assert client_for("demo_village").get("/admin/users/").status_code == 403


def test_the_first_admin_of_an_empty_county_is_made_on_the_command_line(app, client, login):
    runner = app.test_cli_runner()
    args = ["users", "create", "px_admin", "蓬溪县管理员", "--grant", "admin@510921000000", "--password", PASSWORD]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    login(client, "px_admin", PASSWORD)
    assert client.get("/api/v1/users").status_code == 200
    again = runner.invoke(args=args)
    assert again.exit_code != 0 and "已被使用" in again.output
    weak = runner.invoke(args=["users", "create", "px_b", "乙", "--grant", "admin@510921000000", "--password", "123"])
    assert weak.exit_code != 0 and "密码长度" in weak.output
    level = runner.invoke(args=["users", "create", "px_c", "丙", "--grant", "admin@510921107000", "--password", PASSWORD])
    assert level.exit_code != 0 and "授权无效" in level.output

"""Forged and unauthenticated requests: the API wants JSON from this origin, HTML forms want the
CSRF token, and nobody gets anything before logging in."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from engine import demo_data as D


def _form(data: dict) -> dict:
    """Form data as a browser posts it: checkboxes as "true", everything else as text."""
    return {k: ("true" if v else "") if isinstance(v, bool) else str(v) for k, v in data.items()}


def test_csrf_protection_is_on_in_the_app_under_test(app):
    assert app.config.get("WTF_CSRF_ENABLED", True) is True


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost.evil.example", "null",
                                    "https://localhost"])
def test_an_api_post_from_a_foreign_origin_is_a_403_and_changes_nothing(
        db, client_for, exit_case, snapshot, origin):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    before = snapshot()
    completing = village.post(f"/api/v1/tasks/{row.id}/complete", headers={"Origin": origin},
                              json={"action": "approve", "opinion": "同意", "data": D.HOUSEHOLD_CHECK})
    starting = village.post("/api/v1/cases", headers={"Origin": origin},
                            json={"procedure": "monitoring_exit", "subject": {"id": db.household("张德明")}})
    assert (completing.status_code, starting.status_code) == (403, 403)
    assert completing.get_json()["message"] == "不接受跨站请求"
    assert snapshot() == before


def test_an_api_post_from_this_origin_is_accepted(db, client_for, exit_case):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    db.sign_if_asked(row.id, "demo_village")
    done = client_for("demo_village").post(f"/api/v1/tasks/{row.id}/complete", headers={"Origin": "http://localhost"},
                                           json={"action": "approve", "opinion": "同意", "data": D.HOUSEHOLD_CHECK})
    assert done.status_code == 200


def test_a_login_post_from_a_foreign_origin_is_a_403_and_logs_nobody_in(client):
    refused = client.post("/api/v1/session", headers={"Origin": "https://evil.example"},
                          json={"username": "demo_village", "password": "demo12345"})
    assert refused.status_code == 403
    assert client.get("/api/v1/tasks").status_code == 401


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"])
def test_an_api_post_with_a_non_json_body_is_a_415_and_changes_nothing(
        db, client_for, exit_case, snapshot, content_type):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    before = snapshot()
    fields = {"action": "approve", "opinion": "同意", **_form(D.HOUSEHOLD_CHECK)}
    if content_type == "text/plain":
        refused = client_for("demo_village").post(f"/api/v1/tasks/{row.id}/complete", data='{"action": "approve"}',
                                                  content_type=content_type)
    else:
        refused = client_for("demo_village").post(f"/api/v1/tasks/{row.id}/complete", data=fields,
                                                  content_type=content_type)
    assert refused.status_code == 415
    assert "JSON" in refused.get_json()["message"]
    assert snapshot() == before


@pytest.mark.parametrize("token", [None, "", "forged-token"], ids=["no-token", "empty-token", "wrong-token"])
def test_an_html_task_form_posted_without_a_valid_csrf_token_is_a_400_and_changes_nothing(
        db, client_for, exit_case, snapshot, token):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    before = snapshot()
    fields = {"action": "approve", "opinion": "同意", **_form(D.HOUSEHOLD_CHECK)}
    if token is not None:
        fields["csrf_token"] = token
    refused = village.post(f"/tasks/{row.id}", data=fields)
    assert refused.status_code == 400
    assert "页面已过期或请求来源无效" in refused.get_data(as_text=True)
    assert snapshot() == before
    assert [t.id for t in db.open_tasks(case_id)] == [row.id]


def test_the_same_html_task_form_with_the_pages_csrf_token_goes_through(db, client_for, exit_case, csrf_token):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    token = csrf_token(village, f"/tasks/{row.id}")
    db.sign_if_asked(row.id, "demo_village")
    done = village.post(f"/tasks/{row.id}", data={"csrf_token": token, "action": "approve", "opinion": "同意",
                                                  **_form(D.HOUSEHOLD_CHECK)})
    assert done.status_code == 302
    assert done.headers["Location"] == f"/cases/{case_id}"
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["village_review"]


def test_a_csrf_token_from_another_session_is_refused(db, app, client_for, exit_case, csrf_token, login, snapshot):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    attacker = app.test_client()
    login(attacker, "demo_other_village")
    foreign_token = csrf_token(attacker, "/")
    before = snapshot()
    refused = client_for("demo_village").post(f"/tasks/{row.id}", data={
        "csrf_token": foreign_token, "action": "approve", "opinion": "同意", **_form(D.HOUSEHOLD_CHECK)})
    assert refused.status_code == 400
    assert snapshot() == before


def test_starting_a_case_from_the_html_form_without_a_csrf_token_is_a_400_and_creates_nothing(
        db, client_for, snapshot):
    before = snapshot()
    refused = client_for("demo_village").post("/cases/new", data={"procedure": "monitoring_exit",
                                                                  "subject_id": str(db.household("张德明"))})
    assert refused.status_code == 400
    assert snapshot() == before


def test_logging_out_without_a_csrf_token_is_a_400_and_keeps_the_session(client_for, csrf_token):
    village = client_for("demo_village")
    assert village.post("/logout").status_code == 400
    assert village.get("/api/v1/tasks").status_code == 200
    token = csrf_token(village, "/")
    out = village.post("/logout", data={"csrf_token": token})
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert village.get("/api/v1/tasks").status_code == 401


def test_logging_out_through_the_api_ends_the_session(client_for):
    village = client_for("demo_village")
    assert village.delete("/api/v1/session", json={}).status_code == 200
    assert village.get("/api/v1/tasks").status_code == 401


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/tasks"), ("GET", "/api/v1/tasks?view=done"), ("GET", "/api/v1/tasks/1"),
    ("POST", "/api/v1/tasks/1/complete"), ("POST", "/api/v1/cases"), ("GET", "/api/v1/cases/1"),
    ("GET", "/api/v1/procedures"), ("GET", "/api/v1/subjects"), ("DELETE", "/api/v1/session"),
])
def test_the_api_without_a_session_is_a_401(db, client, exit_case, snapshot, method, path):
    exit_case(0)
    before = snapshot()
    response = client.open(path, method=method, json={"action": "approve", "opinion": "x", "data": {}}
                           if method != "GET" else None)
    assert response.status_code == 401
    assert response.get_json() == {"error": "请先登录", "message": "请先登录"}
    assert snapshot() == before


def test_the_openapi_document_needs_no_session(client):
    assert client.get("/api/v1/openapi.json").status_code == 200


@pytest.mark.parametrize("path", ["/", "/?view=done", "/cases/1", "/tasks/1", "/cases/new"])
def test_html_pages_without_a_session_redirect_to_the_login_page(db, client, exit_case, path):
    exit_case(0)
    response = client.get(path)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert "next=" in location.query


def test_an_html_form_post_without_a_session_or_token_is_refused_and_changes_nothing(
        db, client, exit_case, snapshot):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    before = snapshot()
    response = client.post(f"/tasks/{row.id}", data={"action": "approve", **_form(D.HOUSEHOLD_CHECK)})
    # CSRF runs before login_required: a token-less post is refused outright
    assert response.status_code == 400
    assert snapshot() == before

"""Logging in: wrong passwords, the rate limit, demo users in production, production config."""

from __future__ import annotations

import time

import pytest

from web import create_app
from web.config import ConfigError

GOOD = "demo12345"


def _api_login(client, username: str, password: str):
    return client.post("/api/v1/session", json={"username": username, "password": password})


def _html_login(client, csrf_token, username: str, password: str, next_url: str | None = None):
    token = csrf_token(client, "/login")
    return client.post("/login", query_string={"next": next_url} if next_url else None,
                       data={"csrf_token": token, "username": username, "password": password})


def _logged_in(client) -> bool:
    return client.get("/api/v1/tasks").status_code == 200


def test_the_api_login_returns_the_user_and_their_roles(client):
    response = _api_login(client, "demo_township", GOOD)
    assert response.status_code == 200
    assert response.get_json() == {"username": "demo_township", "display_name": "宝梵镇乡村振兴办(演示)",
                                   "roles": ["township_officer"]}
    assert _logged_in(client)


@pytest.mark.parametrize("username, password", [("demo_village", "wrong-password"), ("no_such_user", GOOD),
                                                ("demo_village", ""), ("", "")],
                         ids=["wrong-password", "unknown-user", "empty-password", "empty-both"])
def test_a_wrong_api_login_is_a_401_with_one_message_for_every_cause(client, username, password):
    response = _api_login(client, username, password)
    assert response.status_code == 401
    assert response.get_json() == {"error": "请先登录", "message": "用户名或密码错误"}
    assert not _logged_in(client)


def test_a_wrong_html_login_is_a_401_page_that_keeps_the_username(client, csrf_token):
    page = _html_login(client, csrf_token, "demo_village", "wrong-password")
    assert page.status_code == 401
    html = page.get_data(as_text=True)
    assert "用户名或密码错误" in html
    assert 'name="username" value="demo_village"' in html
    assert not _logged_in(client)


def test_an_html_login_goes_to_the_next_page_on_this_site(client, csrf_token):
    page = _html_login(client, csrf_token, "demo_village", GOOD, next_url="/?view=done")
    assert page.status_code == 302
    assert page.headers["Location"] == "/?view=done"
    assert _logged_in(client)


@pytest.mark.parametrize("next_url", [
    "//evil.example/", "https://evil.example/", "/\\evil.example", "/\t/evil.example", "/\n/evil.example",
    "/\r\n/evil.example", "/ /evil.example", "evil.example",
], ids=["protocol-relative", "absolute", "backslash", "tab", "newline", "crlf", "space", "relative"])
def test_an_html_login_never_redirects_to_another_site_and_falls_back_to_the_inbox(client, csrf_token, next_url):
    page = _html_login(client, csrf_token, "demo_village", GOOD, next_url=next_url)
    assert page.status_code == 302
    assert page.headers["Location"] == "/"
    assert _logged_in(client)


@pytest.mark.parametrize("via", ["api", "html"])
def test_after_five_failures_the_next_login_is_a_429_even_with_the_right_password(client, csrf_token, via):
    for _ in range(5):
        assert _api_login(client, "demo_village", "wrong-password").status_code == 401
    if via == "api":
        blocked = _api_login(client, "demo_village", GOOD)
        assert blocked.status_code == 429
        assert blocked.get_json()["message"] == "登录失败次数过多,请稍后再试"
    else:
        blocked = _html_login(client, csrf_token, "demo_village", GOOD)
        assert blocked.status_code == 429
        assert "登录失败次数过多" in blocked.get_data(as_text=True)
    assert not _logged_in(client)


def test_four_failures_still_allow_the_right_password_and_success_clears_the_count(client):
    for _ in range(4):
        assert _api_login(client, "demo_village", "wrong-password").status_code == 401
    assert _api_login(client, "demo_village", GOOD).status_code == 200
    # the username's count was cleared by the success: four more failures are allowed, the fifth locks it
    for _ in range(4):
        assert _api_login(client, "demo_village", "wrong-password").status_code == 401
    assert _api_login(client, "demo_village", GOOD).status_code == 200
    for _ in range(5):
        assert _api_login(client, "demo_village", "wrong-password").status_code == 401
    assert _api_login(client, "demo_village", GOOD).status_code == 429


def test_failures_from_one_address_block_other_usernames_only_at_the_address_limit(client):
    # issue 15: five failures from a shared office address no longer lock everyone behind it out
    limit = client.application.config["XIANGFLOW_LOGIN_ADDR_MAX_FAILURES"]
    for i in range(limit - 1):
        assert _api_login(client, f"a{i}", "guess").status_code == 401
    assert _api_login(client, "demo_township", GOOD).status_code == 200
    for i in range(limit):  # the success forgave some; a flood of guesses still closes the address
        _api_login(client, f"b{i}", "guess")
    assert _api_login(client, "demo_county", GOOD).status_code == 429


def test_the_lockout_ends_when_the_window_has_passed(client, monkeypatch):
    for _ in range(5):
        _api_login(client, "demo_village", "wrong-password")
    assert _api_login(client, "demo_village", GOOD).status_code == 429
    window = client.application.config["XIANGFLOW_LOGIN_WINDOW_SECONDS"]
    real = time.monotonic
    monkeypatch.setattr("web.ratelimit.time.monotonic", lambda: real() + window + 1)
    assert _api_login(client, "demo_village", GOOD).status_code == 200


def test_demo_users_are_refused_when_the_app_refuses_demo_users(app_factory, csrf_token):
    refusing = app_factory(XIANGFLOW_REFUSE_DEMO=True)
    api = refusing.test_client()
    refused = _api_login(api, "demo_village", GOOD)
    assert refused.status_code == 401
    assert refused.get_json()["message"] == "用户名或密码错误"
    assert not _logged_in(api)
    html = refusing.test_client()
    page = _html_login(html, csrf_token, "demo_county", GOOD)
    assert page.status_code == 401
    assert not _logged_in(html)


def test_a_demo_users_existing_session_stops_working_when_the_app_refuses_demo_users(app_factory):
    permissive = app_factory(SECRET_KEY="shared-test-key")
    refusing = app_factory(SECRET_KEY="shared-test-key", XIANGFLOW_REFUSE_DEMO=True)
    alike = app_factory(SECRET_KEY="shared-test-key")
    first = permissive.test_client()
    assert _api_login(first, "demo_village", GOOD).status_code == 200
    cookie = first.get_cookie("session")
    assert cookie is not None
    for application, status in ((alike, 200), (refusing, 401)):
        other = application.test_client()
        other.set_cookie("session", cookie.value)
        assert other.get("/api/v1/tasks").status_code == status


def test_a_real_user_logs_in_when_the_app_refuses_demo_users(db, app_factory):
    with db.uow() as work:
        work.directory.create_user("wang_clerk", "王文员", "a-long-real-password", [("office_clerk", "510921107000")])
    client = app_factory(XIANGFLOW_REFUSE_DEMO=True).test_client()
    assert _api_login(client, "wang_clerk", "a-long-real-password").status_code == 200
    assert _logged_in(client)


def test_production_without_a_secret_key_refuses_to_start(db, monkeypatch):
    monkeypatch.setenv("XIANGFLOW_ENV", "production")
    monkeypatch.delenv("XIANGFLOW_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="XIANGFLOW_SECRET_KEY"):
        create_app({"XIANGFLOW_DATABASE_URL": db.url, "XIANGFLOW_SCHEDULER": False, "XIANGFLOW_CLOCK": db.clock})


def test_production_with_a_secret_key_starts_refusing_demo_users_with_secure_cookies(db, monkeypatch):
    monkeypatch.setenv("XIANGFLOW_ENV", "production")
    monkeypatch.setenv("XIANGFLOW_SECRET_KEY", "a-production-secret-for-the-test")
    app = create_app({"XIANGFLOW_DATABASE_URL": db.url, "XIANGFLOW_SCHEDULER": False, "XIANGFLOW_CLOCK": db.clock})
    try:
        assert app.config["SECRET_KEY"] == "a-production-secret-for-the-test"
        assert app.config["XIANGFLOW_REFUSE_DEMO"] is True
        assert app.config["SESSION_COOKIE_SECURE"] is True
        client = app.test_client()
        refused = client.post("/api/v1/session", json={"username": "demo_admin", "password": GOOD},
                              base_url="https://localhost")
        assert refused.status_code == 401
    finally:
        app.extensions["xiangflow"].engine.dispose()

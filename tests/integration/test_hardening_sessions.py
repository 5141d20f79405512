"""Issue 15: security headers on every response, sessions that end (logout, password change, deactivation,
idle and absolute timeouts), login throttling that does not lock an office out. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.bootstrap import DEMO_PASSWORD

TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates"


@pytest.mark.parametrize("path", ["/login", "/api/v1/openapi.json", "/static/app.css", "/no-such-page",
                                  "/api/v1/tasks", "/verify"])
def test_every_response_carries_the_security_headers(client, path):
    response = client.get(path)
    response.close()
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # XIANGFLOW_HSTS is off outside production
    assert "Server" not in response.headers


def test_hsts_is_sent_when_the_production_setting_says_so(app_factory):
    response = app_factory(XIANGFLOW_HSTS=True).test_client().get("/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_no_template_holds_an_inline_script_or_event_handler():
    """What the CSP's script-src 'self' needs: scripts come from files, data islands are JSON."""
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text(encoding="utf-8")
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or 'type="application/json"' in tag, (template.name, tag)
        assert not re.search(r"\son[a-z]+=", text), template.name
        assert "javascript:" not in text, template.name


def test_the_wsgi_server_sends_no_werkzeug_banner():
    import wsgi

    assert wsgi._Handler.version_string(None) == "XiangFlow"


def _login(client, username: str = "demo_village") -> None:
    response = client.post("/api/v1/session", json={"username": username, "password": DEMO_PASSWORD})
    assert response.status_code == 200


def _replay(app, cookie: str):
    """A fresh client that only has the saved session cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other


def test_a_session_cookie_saved_before_an_api_logout_no_longer_works(app, client):
    _login(client)
    saved = client.get_cookie("session").value
    assert _replay(app, saved).get("/api/v1/tasks").status_code == 200
    assert client.delete("/api/v1/session", json={}).status_code == 200
    replayed = _replay(app, saved)
    assert replayed.get("/api/v1/tasks").status_code == 401
    page = replayed.get("/")
    assert page.status_code == 302 and "/login" in page.headers["Location"]


def test_a_session_cookie_saved_before_an_html_logout_no_longer_works(app, client, csrf_token):
    _login(client)
    saved = client.get_cookie("session").value
    token = csrf_token(client, "/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert _replay(app, saved).get("/api/v1/tasks").status_code == 401
    assert _replay(app, saved).get("/").status_code == 302


def test_a_password_change_and_a_deactivation_end_the_users_sessions(db, app, client):
    _login(client, "demo_township")
    assert client.get("/api/v1/tasks").status_code == 200
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "password", "demo_township"], input="new-pass-123\nnew-pass-123\n")
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/tasks").status_code == 401
    assert client.post("/api/v1/session", json={"username": "demo_township", "password": DEMO_PASSWORD}
                       ).status_code == 401
    assert client.post("/api/v1/session", json={"username": "demo_township", "password": "new-pass-123"}
                       ).status_code == 200
    assert client.get("/api/v1/tasks").status_code == 200
    result = runner.invoke(args=["users", "deactivate", "demo_township"])
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/tasks").status_code == 401


def test_logging_out_ends_only_that_users_sessions(app, client_for):
    village, township = client_for("demo_village"), client_for("demo_township")
    assert village.delete("/api/v1/session", json={}).status_code == 200
    assert village.get("/api/v1/tasks").status_code == 401
    assert township.get("/api/v1/tasks").status_code == 200


def test_an_idle_session_and_a_too_old_session_end(app, client, monkeypatch):
    import web.services

    real = web.services.time.time
    _login(client)
    idle = app.config["XIANGFLOW_SESSION_IDLE_MINUTES"] * 60
    monkeypatch.setattr(web.services.time, "time", lambda: real() + idle - 30)
    assert client.get("/api/v1/tasks").status_code == 200
    monkeypatch.setattr(web.services.time, "time", lambda: real() + 2 * idle + 60)
    assert client.get("/api/v1/tasks").status_code == 401

    monkeypatch.setattr(web.services.time, "time", real)
    _login(client)
    max_age = app.config["XIANGFLOW_SESSION_MAX_HOURS"] * 3600
    step = idle - 120
    for n in range(1, max_age // step + 1):  # active all along: each request within the idle limit
        monkeypatch.setattr(web.services.time, "time", lambda n=n: real() + n * step)
        assert client.get("/api/v1/tasks").status_code == 200
    monkeypatch.setattr(web.services.time, "time", lambda: real() + max_age + 10)
    assert client.get("/api/v1/tasks").status_code == 401


def test_a_session_without_the_epoch_is_refused(app, client):
    """A cookie signed with the key but made before session epochs existed (no xf_epoch) is not a login."""
    _login(client)
    with client.session_transaction() as sess:
        sess.pop("xf_epoch")
    assert client.get("/api/v1/tasks").status_code == 401


def test_five_failures_of_one_user_lock_that_user_only(client):
    for _ in range(5):
        assert client.post("/api/v1/session", json={"username": "demo_village", "password": "bad"}).status_code == 401
    assert client.post("/api/v1/session", json={"username": "demo_village", "password": DEMO_PASSWORD}
                       ).status_code == 429
    # colleagues behind the same office address still log in
    assert client.post("/api/v1/session", json={"username": "demo_township", "password": DEMO_PASSWORD}
                       ).status_code == 200

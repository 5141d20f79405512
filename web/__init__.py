"""XiangFlow web application: create_app wires configuration, extensions, blueprints, CLI."""

from __future__ import annotations

from typing import cast

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

from engine.core.db import make_engine, make_read_session_factory, make_session_factory
from web import edge
from web.config import load_config
from web.extensions import csrf, login_manager
from web.ratelimit import LoginLimiter
from web.services import AppState, load_login_user


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=False)
    app.config.update(load_config(config))
    cast(DefaultJSONProvider, app.json).ensure_ascii = False  # the API speaks Chinese as UTF-8, not \uXXXX escapes

    bind_state(app)

    edge.init_app(app)  # bounded <int:…> ids and the input check, before anything else reads the request
    login_manager.init_app(app)
    login_manager.user_loader(load_login_user)
    csrf.init_app(app)

    from web import admin, api, auth, cases, errors, filters, inbox, notifications, reports

    app.register_blueprint(auth.bp)
    app.register_blueprint(inbox.bp)
    app.register_blueprint(cases.bp)
    from web import batch
    app.register_blueprint(batch.bp)  # 批量审批 of a step that allows it
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(notifications.bp)
    from web import health
    app.register_blueprint(health.bp)  # /healthz: database reachable → 200, else 503 (no login)
    from web import studio
    app.register_blueprint(studio.bp)  # procedure studio (流程设计), admins only
    from web import registry
    app.register_blueprint(registry.bp)  # 农户与项目: the subject registry's pages
    from web import batch_start
    batch_start.init_app(app)  # 批量发起: one procedure for many subjects, a background job with progress
    from web import users
    app.register_blueprint(users.bp)  # 用户与授权: admins manage users and grants in their scope
    notifications.register(app)
    from web import notices
    notices.init_app(app)  # signed notices: staff pages, public /verify, batch runner, `flask notices` CLI
    csrf.exempt(api.bp)  # the API refuses non-JSON bodies and foreign origins instead (see web/api.py)
    errors.register(app)
    filters.register(app)
    app.after_request(security_headers)

    from web import cli

    cli.register(app)
    if app.config["XIANGFLOW_SCHEDULER"]:
        from web.scheduler import start_on_first_request

        start_on_first_request(app)  # serving processes only; CLI commands never start it
    return app


def bind_state(app: Flask) -> None:
    """The app's state made from its config: the database engine and session factory, the login limiter and
    the background runners (notice batches, start batches). create_app calls it once; the tests call it again to
    serve each test's database with one app (building the URL map and templates once, not per test)."""
    from web.batch_start import StartBatchRunner
    from web.notices import BatchRunner

    engine = make_engine(app.config["XIANGFLOW_DATABASE_URL"])
    app.extensions["xiangflow"] = AppState(engine=engine, factory=make_session_factory(engine),
                                           reader=make_read_session_factory(engine))
    app.extensions["xiangflow_login_limiter"] = LoginLimiter(
        app.config["XIANGFLOW_LOGIN_MAX_FAILURES"], app.config["XIANGFLOW_LOGIN_WINDOW_SECONDS"],
        app.config["XIANGFLOW_LOGIN_ADDR_MAX_FAILURES"])
    app.extensions["xiangflow_notice_batches"] = BatchRunner()
    app.extensions["xiangflow_start_batches"] = StartBatchRunner()


# Scripts only from this origin (web/templates hold no inline script; JSON data islands are
# type="application/json"); bpmn-js, form-js and the templates set inline styles, hence 'unsafe-inline'
# for styles only. Images may be data:/blob: (the signature pad, bpmn-js icons).
CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def security_headers(response: Response) -> Response:
    """Security headers on every response; HSTS when XIANGFLOW_HSTS is on (production)."""
    from flask import current_app

    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if current_app.config["XIANGFLOW_HSTS"]:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    headers.pop("Server", None)
    return response

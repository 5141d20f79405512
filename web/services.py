"""The web layer's door to the engine: units of work, the clock, the current actor."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import current_app, has_request_context, request, session
from flask_login import UserMixin, current_user

from engine.access.assignment import Actor
from engine.core.clock import SystemClock
from engine.notices.context import PUBLIC_URL_ENV
from engine.runtime.notify import SmtpSettings
from engine.uow import UnitOfWork


@dataclass
class AppState:
    # what engine.core.db's make_engine / make_session_factory return (web/ does not import SQLAlchemy)
    engine: Any
    factory: Any
    reader: Any  # make_read_session_factory: sessions that only SELECT, in autocommit (read_work)


def state() -> AppState:
    return current_app.extensions["xiangflow"]


def clock():
    return current_app.config.get("XIANGFLOW_CLOCK") or SystemClock()


def work() -> UnitOfWork:
    """A unit of work: ``with work() as w: w.cases.complete_task(...)`` commits on success."""
    return _unit(state().factory)


def read_work() -> UnitOfWork:
    """A unit of work that only reads, without a transaction of its own (``make_read_session_factory``): for
    the few SELECTs every request makes outside its view — the logged-in user, the unread count."""
    return _unit(state().reader)


def _unit(factory) -> UnitOfWork:
    return UnitOfWork(factory, clock(), Path(current_app.config["XIANGFLOW_STORAGE_DIR"]), base_url=public_base_url())


def public_base_url() -> str | None:
    """The address notices' QR codes point to: the setting, the environment, else the request's host."""
    url = current_app.config.get("XIANGFLOW_PUBLIC_URL") or os.environ.get(PUBLIC_URL_ENV) or (
        request.host_url if has_request_context() else None)
    return url.rstrip("/") if url else None


class LoginUser(UserMixin):
    def __init__(self, actor: Actor):
        self.actor = actor
        self.id = str(actor.user_id)
        self.username = actor.username
        self.display_name = actor.display_name


SESSION_EPOCH, SESSION_LOGIN_AT, SESSION_SEEN_AT = "xf_epoch", "xf_login_at", "xf_seen_at"


def start_session(epoch: int) -> None:
    """Mark the session as a login of this epoch, now (called by login before flask-login's login_user)."""
    session.clear()
    now = time.time()
    session.update({SESSION_EPOCH: epoch, SESSION_LOGIN_AT: now, SESSION_SEEN_AT: now})


def _session_alive(epoch: int) -> bool:
    """The session carries the user's current epoch and is neither idle nor too old; note this request."""
    cfg = current_app.config
    now = time.time()  # real time, not the business clock (tests move that by days)
    login_at, seen_at = session.get(SESSION_LOGIN_AT), session.get(SESSION_SEEN_AT)
    if session.get(SESSION_EPOCH) != epoch or not isinstance(login_at, float) or not isinstance(seen_at, float):
        return False
    if now - seen_at > cfg["XIANGFLOW_SESSION_IDLE_MINUTES"] * 60 or \
            now - login_at > cfg["XIANGFLOW_SESSION_MAX_HOURS"] * 3600:
        return False
    if now - seen_at > 60:  # rewrite the cookie at most once a minute
        session[SESSION_SEEN_AT] = now
    return True


def load_login_user(user_id: str) -> LoginUser | None:
    if not user_id.isdigit() or len(user_id) > 10:
        return None
    with read_work() as w:
        user = w.directory.get_user(int(user_id))
        if user is None or not user.is_active:
            return None
        if user.is_demo and current_app.config["XIANGFLOW_REFUSE_DEMO"]:
            return None
        if not _session_alive(user.session_epoch):
            session.clear()
            return None
        return LoginUser(w.directory.actor(user))


def actor() -> Actor:
    return current_user.actor


def client_addr() -> str | None:
    return request.remote_addr


def smtp_settings() -> SmtpSettings | None:
    cfg = current_app.config
    if not cfg["XIANGFLOW_SMTP_HOST"]:
        return None
    return SmtpSettings(cfg["XIANGFLOW_SMTP_HOST"], cfg["XIANGFLOW_SMTP_PORT"], cfg["XIANGFLOW_SMTP_SENDER"],
                        cfg["XIANGFLOW_SMTP_USERNAME"], cfg["XIANGFLOW_SMTP_PASSWORD"], cfg["XIANGFLOW_SMTP_TLS"])


def due_soon() -> timedelta:
    return timedelta(hours=current_app.config["XIANGFLOW_DUE_SOON_HOURS"])

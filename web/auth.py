"""Login and logout (HTML); the API's session endpoint shares login_with_password."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from web.services import LoginUser, client_addr, start_session, work

bp = Blueprint("auth", __name__)


class LoginRefused(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def login_with_password(username: str, password: str) -> LoginUser:
    """Check credentials under the rate limit and log the user in.

    :raises LoginRefused: wrong credentials (401) or too many failures (429).
    """
    limiter = current_app.extensions["xiangflow_login_limiter"]
    addr = client_addr() or "-"
    username = (username or "").strip()[:64]
    if limiter.blocked(addr, username):
        raise LoginRefused("登录失败次数过多,请稍后再试", 429)
    with work() as w:
        user = w.directory.authenticate(username, password or "",
                                        refuse_demo=current_app.config["XIANGFLOW_REFUSE_DEMO"])
        if user is None:
            limiter.failed(addr, username)
            raise LoginRefused("用户名或密码错误", 401)
        login_user_obj = LoginUser(w.directory.actor(user))
        epoch = user.session_epoch
    limiter.succeeded(addr, username)
    start_session(epoch)
    login_user(login_user_obj)
    return login_user_obj


def end_session() -> None:
    """Log out and end the user's sessions server-side: a cookie saved before no longer works."""
    if current_user.is_authenticated:
        with work() as w:
            w.directory.end_sessions(current_user.actor.user_id)
    logout_user()


def safe_next(target: str) -> str | None:
    """A same-site path to go back to after login, or None (no open redirects)."""
    if not target or any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        try:
            login_with_password(request.form.get("username", ""), request.form.get("password", ""))
        except LoginRefused as exc:
            flash(str(exc), "error")
            return render_template("login.html", username=request.form.get("username", "")), exc.status
        return redirect(safe_next(request.args.get("next", "")) or url_for("inbox.index"))
    return render_template("login.html", username="")


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    end_session()
    flash("已退出登录", "info")
    return redirect(url_for("auth.login"))

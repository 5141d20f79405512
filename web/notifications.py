"""In-app notifications: the list, mark all read, and the unread count shown in the header."""

from __future__ import annotations

from flask import Blueprint, Flask, redirect, render_template, url_for
from flask_login import current_user, login_required

from web.services import actor, read_work, work

bp = Blueprint("notifications", __name__, url_prefix="/notifications")


@bp.route("/")
@login_required
def index():
    with work() as w:
        return render_template("notifications.html", items=w.notifications.recent(actor().user_id))


@bp.route("/read", methods=["POST"])
@login_required
def read_all():
    with work() as w:
        w.notifications.mark_all_read(actor().user_id)
    return redirect(url_for("notifications.index"))


def register(app: Flask) -> None:
    @app.context_processor
    def unread():
        if not current_user.is_authenticated:
            return {"unread_count": 0}
        with read_work() as w:
            return {"unread_count": w.notifications.unread_count(actor().user_id)}

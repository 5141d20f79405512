"""Admin pages: timer incidents (retry, skip), 无人办理 tasks (指派), working-day calendar overrides."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from engine.core.errors import ForbiddenError, NotFoundError, ValidationError
from web.services import actor, client_addr, work

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/incidents")
@login_required
def incidents():
    with work() as w:
        return render_template("admin/incidents.html", incidents=w.admin.incidents(actor()))


@bp.route("/incidents/<int:timer_id>/retry", methods=["POST"])
@login_required
def retry(timer_id: int):
    with work() as w:
        w.admin.retry_incident(actor(), timer_id)
    flash("已重新排队", "success")
    return redirect(url_for("admin.incidents"))


@bp.route("/incidents/<int:timer_id>/skip", methods=["POST"])
@login_required
def skip(timer_id: int):
    try:
        with work() as w:
            w.admin.skip_incident(actor(), timer_id, request.form.get("reason", ""))
    except ValidationError as exc:
        flash(";".join(exc.errors.values()), "error")
        return redirect(url_for("admin.incidents"))
    flash("已跳过该定时器", "success")
    return redirect(url_for("admin.incidents"))


@bp.route("/unstaffed")
@login_required
def unstaffed():
    me = actor()
    with work() as w:
        items = w.staffing.unstaffed(me)
        choices = {item.row.id: w.staffing.people_for(me, item.row) for item in items}
        return render_template("admin/unstaffed.html", items=items, choices=choices)


@bp.route("/unstaffed/<int:task_id>/assign", methods=["POST"])
@login_required
def assign_unstaffed(task_id: int):
    me = actor()
    try:
        with work() as w:
            user, grants = w.staffing.assignment_grant(me, task_id, request.form.get("username", ""))
            w.users.grant(me, user.id, grants, client_addr=client_addr())
            name = user.display_name
    except (ValidationError, NotFoundError, ForbiddenError) as exc:
        flash(";".join(getattr(exc, "errors", {}).values()) or str(exc), "error")
        return redirect(url_for("admin.unstaffed"))
    flash(f"已授予{name}该岗位,任务已进入其待办", "success")
    return redirect(url_for("admin.unstaffed"))


@bp.route("/calendar", methods=["GET", "POST"])
@login_required
def calendar():
    me = actor()
    if request.method == "POST":
        try:
            day = date.fromisoformat(request.form.get("day", ""))
        except ValueError:
            flash("日期格式应为 YYYY-MM-DD", "error")
            return redirect(url_for("admin.calendar"))
        with work() as w:
            w.admin.set_override(me, day, request.form.get("kind") == "workday", request.form.get("note", ""))
        flash("已保存", "success")
        return redirect(url_for("admin.calendar"))
    with work() as w:
        w.admin.require_admin(me)
        return render_template("admin/calendar.html", overrides=w.admin.overrides(),
                               warnings=w.admin.calendar_warnings())


@bp.route("/calendar/<day>/delete", methods=["POST"])
@login_required
def delete_override(day: str):
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        flash("日期格式应为 YYYY-MM-DD", "error")
        return redirect(url_for("admin.calendar"))
    with work() as w:
        w.admin.delete_override(actor(), parsed)
    flash("已删除", "success")
    return redirect(url_for("admin.calendar"))

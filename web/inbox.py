"""Task inbox (待办, 已办, 我发起的) and starting a case."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from engine.errors import ValidationError
from engine.queries import VIEWS
from web.services import actor, client_addr, clock, due_soon, work

bp = Blueprint("inbox", __name__)


@bp.route("/")
@login_required
def index():
    view = request.args.get("view", "todo")
    if view not in VIEWS:
        view = "todo"
    due = request.args.get("due") if request.args.get("due") in ("soon", "overdue") else None
    me = actor()
    with work() as w:
        counts = w.inbox.counts(me)
        if view == "todo":
            items = w.inbox.todo(me, due=due, now=clock().now(), soon=due_soon())
        else:
            items = {"done": w.inbox.done, "started": w.inbox.started, "cc": w.inbox.cc}[view](me)
        return render_template("inbox.html", view=view, counts=counts, items=items, due=due,
                               soon_limit=clock().now() + due_soon())


def _start_page(errors: dict, status: int = 200):
    me = actor()
    with work() as w:
        return render_template("start.html", procedures=w.definitions.available_to(me),
                               subjects=w.directory.subjects_for(me, "household"), errors=errors), status


@bp.route("/cases/new", methods=["GET", "POST"])
@login_required
def start():
    if request.method == "GET":
        return _start_page({})
    me = actor()
    try:
        subject_id = int(request.form.get("subject_id", "0"))
    except ValueError:
        subject_id = 0
    try:
        with work() as w:
            case = w.cases.start_case(request.form.get("procedure", ""), subject_id, me, client_addr=client_addr())
            case_id = case.id
            first_id = next((t.id for t in w.inbox.case_tasks(case_id)
                             if t.status.value == "open" and me.holds(t.role_code, t.scope_code)), None)
    except ValidationError as exc:
        return _start_page(exc.errors, 422)
    flash("流程已发起", "success")
    if first_id:
        return redirect(url_for("cases.task", task_id=first_id))
    return redirect(url_for("cases.show", case_id=case_id))

"""Task inbox (待办, 已办, 我发起的) and starting a case."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from engine.core.errors import ValidationError
from engine.models import CaseStatus
from engine.queries.inbox import PER_PAGE, VIEWS, InboxSearch
from web.edge import page_arg
from web.services import actor, client_addr, clock, due_soon, work

bp = Blueprint("inbox", __name__)


@bp.route("/")
@login_required
def index():
    view = request.args.get("view", "todo")
    if view not in VIEWS:
        view = "todo"
    page = page_arg()
    me = actor()
    now, soon = clock().now(), due_soon()
    with work() as w:
        errors, status = {}, 200
        try:
            search = w.inbox.parse_search(request.args, me)
        except ValidationError as exc:
            errors, status, search = exc.errors, 422, None
        counts = w.inbox.counts(me, search, now, soon) if search else dict.fromkeys(VIEWS, 0)
        items = w.inbox.page(view, me, search, page, PER_PAGE, now, soon) if search else []
        return render_template("inbox.html", view=view, counts=counts, items=items, page=page, per_page=PER_PAGE,
                               search=search or InboxSearch(), params=(search.params() if search else {}),
                               form=request.args, errors=errors, due=search.due if search else None,
                               regions=w.inbox.search_regions(me), procedures=w.definitions.list_latest(),
                               statuses=list(CaseStatus), soon_limit=now + soon,
                               progress=w.inbox.instance_progress(items) if view in ("todo", "done") else {},
                               batchable=w.batch.eligible(items, me) if view == "todo" else set()), status


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
                             if t.status.value == "open" and w.access.is_own_todo(t, me)), None)
    except ValidationError as exc:
        return _start_page(exc.errors, 422)
    flash("流程已发起", "success")
    if first_id:
        return redirect(url_for("cases.task", task_id=first_id))
    return redirect(url_for("cases.show", case_id=case_id))

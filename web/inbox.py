"""Task inbox (待办, 已办, 我发起的) and starting a case."""

from __future__ import annotations

import io

from flask import Blueprint, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_login import login_required

from engine.core.errors import ValidationError
from engine.models import CaseStatus
from engine.procedures.expressions import CHINA_TZ
from engine.queries.inbox import KEY_KINDS, PER_PAGE, VIEWS, InboxSearch
from engine.queries.paging import COUNT_CAP, Page
from engine.registry.service import SubjectSearch
from engine.registry.starts import DuplicateCaseError
from web.edge import cursor_arg, cursor_token, list_scope
from web.services import actor, client_addr, clock, due_soon, work

bp = Blueprint("inbox", __name__)


@bp.route("/")
@login_required
def index():
    view = request.args.get("view", "todo")
    if view not in VIEWS:
        view = "todo"
    me = actor()
    now, soon = clock().now(), due_soon()
    with work() as w:
        errors, status = {}, 200
        try:
            search = w.inbox.parse_search(request.args, me)
        except ValidationError as exc:
            errors, status, search = exc.errors, 422, None
        scope = list_scope(f"inbox:{view}", search.params()) if search else ""
        after = cursor_arg(scope, KEY_KINDS[view]) if search else None
        counts = w.inbox.counts(me, search, now, soon) if search else dict.fromkeys(VIEWS, 0)
        page = w.inbox.page(view, me, search, after, PER_PAGE, now, soon) if search else Page([])
        items = page.items
        return render_template("inbox.html", view=view, counts=counts, items=items, page=page,
                               next_cursor=cursor_token(page.next, scope), prev_cursor=cursor_token(page.prev, scope),
                               count_cap=COUNT_CAP,
                               search=search or InboxSearch(), params=(search.params() if search else {}),
                               form=request.args, errors=errors, due=search.due if search else None,
                               region_picker_levels=w.inbox.region_picker(me, search.region if search else ""),
                               procedures=w.inbox.procedure_choices(),
                               statuses=list(CaseStatus), soon_limit=now + soon,
                               progress=w.inbox.instance_progress(items) if view in ("todo", "done") else {},
                               batchable=w.batch.eligible(items, me) if view == "todo" else set(),
                               unstaffed=w.staffing.case_unstaffed(items) if view in ("started", "cc") else set()), status


@bp.route("/regions/<code>/children")
@login_required
def region_children(code: str):
    """The regions directly inside code, for the inbox's region picker: [] outside the user's jurisdiction."""
    with work() as w:
        found = w.inbox.region_children(actor(), code)
        return jsonify({"regions": [{"code": r.code, "name": r.name} for r in found]})


@bp.route("/cases/export.xlsx")
@login_required
def export_ledger():
    """台账: the cases the user may see under the inbox's search fields, as an Excel workbook."""
    me = actor()
    with work() as w:
        search = w.inbox.parse_search(request.args, me)  # ValidationError: 422 naming the field
        data = w.ledger.workbook(me, search)
    name = f"台账-{clock().now().astimezone(CHINA_TZ).strftime('%Y%m%d')}.xlsx"
    return send_file(io.BytesIO(data), mimetype=XLSX, as_attachment=True, download_name=name)


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
START_CHOICES = 1000  # subjects listed per kind on the start page; a name filter narrows a larger registry


def _start_page(errors: dict, status: int = 200, chosen: dict | None = None):
    me = actor()
    chosen = chosen or request.args
    with work() as w:
        procedures = w.definitions.available_to(me)
        kinds = {v.procedure.code: w.definitions.manifest(v).get("subject_kind", "household") for v in procedures}
        procedure = chosen.get("procedure") if chosen.get("procedure") in kinds else None
        subject_id = str(chosen.get("subject_id", ""))
        if procedure is None and subject_id.isdigit():  # 为其发起流程 from the registry: a procedure of its kind
            kind = w.registry.get(int(subject_id), me).kind
            procedure = next((code for code, k in kinds.items() if k == kind), None)
        subjects = {kind: w.registry.search(me, SubjectSearch(kind=kind, name=(chosen.get("q") or "").strip()[:60]
                                                              or None, per_page=START_CHOICES), count=False).items
                    for kind in ("household", "project")}
        return render_template("start.html", procedures=procedures, kinds=kinds, subjects=subjects,
                               procedure=procedure, kind=kinds.get(procedure or "", "household"),
                               subject_id=subject_id, q=chosen.get("q", ""),
                               errors=errors), status


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
            case = w.starts.start(request.form.get("procedure", ""), subject_id, me, client_addr=client_addr())
            case_id = case.id
            first_id = next((t.id for t in w.inbox.case_tasks(case_id)
                             if t.status.value == "open" and w.access.is_own_todo(t, me)), None)
            warnings = w.staffing.start_warnings(case_id)
    except ValidationError as exc:
        return _start_page(exc.errors, 422, request.form)
    except DuplicateCaseError as exc:  # the duplicate guard: this subject's case of the procedure is running
        return _start_page(exc.errors, 409, request.form)
    flash("流程已发起", "success")
    for warning in warnings:
        flash(warning, "warning")
    if first_id:
        return redirect(url_for("cases.task", task_id=first_id))
    return redirect(url_for("cases.show", case_id=case_id))

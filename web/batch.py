"""批量审批 pages: the inbox's selected tasks of one step, approved with one opinion (each its own completion)."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from engine.core.errors import ValidationError
from web.cases import form_values
from web.services import actor, client_addr, work

bp = Blueprint("batch", __name__)


def _task_ids(values) -> list[int]:
    ids = []
    for raw in values.getlist("task_ids"):
        if not raw.isdigit() or len(raw) > 12:
            raise ValidationError("任务编号无效", {"task_ids": "任务编号无效"})
        ids.append(int(raw))
    return ids


def _page(task_ids: list[int], errors: dict | None = None, submitted: dict | None = None, status: int = 200):
    me = actor()
    with work() as w:
        rows = w.batch.selection(task_ids, me)
        schema, _data = w.cases.task_form(rows[0])
        return render_template("batch.html", rows=rows, schema=schema, data=submitted or {}, errors=errors or {},
                               opinion=(submitted or {}).get("_opinion", "")), status


@bp.route("/inbox/batch")
@login_required
def show():
    """The selection: the tasks, the step's form once, one opinion."""
    try:
        return _page(_task_ids(request.args))
    except ValidationError as exc:
        return render_template("batch.html", rows=[], schema=None, data={}, errors=exc.errors, opinion=""), 422


@bp.route("/inbox/batch", methods=["POST"])
@login_required
def approve():
    """Approve each selected task; the result page lists every task with 已通过 or why it was not."""
    try:
        task_ids = _task_ids(request.form)
    except ValidationError as exc:
        return render_template("batch.html", rows=[], schema=None, data={}, errors=exc.errors, opinion=""), 422
    opinion = request.form.get("opinion", "")
    data = {k: v for k, v in form_values(request.form).items() if k != "task_ids"}
    try:
        with work() as w:
            outcomes = w.batch.approve(task_ids, actor(), opinion, data, client_addr=client_addr())
    except ValidationError as exc:
        return _page(task_ids, exc.errors, {**data, "_opinion": opinion}, 422)
    return render_template("batch_result.html", outcomes=outcomes,
                           done=sum(o.ok for o in outcomes), failed=sum(not o.ok for o in outcomes))

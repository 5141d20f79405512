"""JSON API of 审批人为空: the admin's list of 无人办理 tasks and 指派 (grant the task's post to a person).

The routes hang on the API blueprint (``web/api.py`` imports this module), sharing its guard and errors.
"""

from __future__ import annotations

from flask import jsonify

from engine.core.errors import ValidationError
from web.api import body, bp
from web.services import actor, client_addr, work


@bp.route("/tasks/unstaffed")
def unstaffed_tasks():
    me = actor()
    with work() as w:
        items = w.staffing.unstaffed(me)  # ForbiddenError (403) for a non-admin
        return jsonify({"tasks": [{
            "id": item.row.id, "title": item.row.title, "case_id": item.row.case_id, "case_title": item.row.case.title,
            "role": item.row.role_code, "role_name": item.role_name, "scope_code": item.row.scope_code,
            "scope_name": item.scope_name, "created_at": item.row.created_at.isoformat(),
            "candidates": [{"username": c.username, "label": c.label} for c in w.staffing.people_for(me, item.row)],
        } for item in items]})


@bp.route("/tasks/<int:task_id>/assign", methods=["POST"])
def assign_unstaffed(task_id: int):
    username = body().get("username")
    if not isinstance(username, str) or not username:
        raise ValidationError("请选择人员", {"username": "请给出要指派的用户名"})
    me = actor()
    with work() as w:
        user, grants = w.staffing.assignment_grant(me, task_id, username)
        w.users.grant(me, user.id, grants, client_addr=client_addr())
        out = {"task_id": task_id, "username": user.username, "granted": grants}
    return jsonify(out), 200

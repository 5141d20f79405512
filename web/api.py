"""JSON API v1 (documented in web/static/openapi.json, served at /api/v1/openapi.json).

Authentication is the session cookie from ``POST /api/v1/session``. The API is exempt from
the HTML forms' CSRF token; instead every state-changing request must have a JSON body
(a cross-site form cannot send one without a CORS preflight, which this app never grants)
and, when the browser sends an Origin header, it must be this host.
"""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, jsonify, request
from flask_login import current_user

from engine.core.errors import ValidationError
from engine.models import Case, TaskRow
from engine.procedures.step_rules import opinion_required
from engine.queries.inbox import KEY_KINDS, PER_PAGE, VIEWS, merged_data
from web.auth import LoginRefused, end_session, login_with_password
from web.edge import cursor_arg, cursor_token, int_arg, list_scope
from web.errors import error_response
from web.services import actor, client_addr, clock, due_soon, work

bp = Blueprint("api", __name__, url_prefix="/api/v1")
OPENAPI_PATH = Path(__file__).parent / "static" / "openapi.json"
MULTIPART_ENDPOINTS = {"api.upload_attachment", "api.import_subjects"}  # file uploads; every other write is JSON


@bp.before_request
def guard():
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        multipart_ok = request.endpoint in MULTIPART_ENDPOINTS and request.mimetype == "multipart/form-data"
        if not request.is_json and not multipart_ok:
            return error_response(415, "请求体必须是 JSON (Content-Type: application/json)")
        origin = request.headers.get("Origin")
        if origin and origin.rstrip("/") != request.host_url.rstrip("/"):
            return error_response(403, "不接受跨站请求")
    if request.endpoint not in ("api.session", "api.openapi") and not current_user.is_authenticated:
        return error_response(401, "请先登录")
    return None


def body() -> dict:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ValidationError("请求体必须是 JSON 对象", {"_": "请求体必须是 JSON 对象"})
    return payload


def task_json(row: TaskRow, brief: bool = True, countersign: dict | None = None) -> dict:
    out = {
        "id": row.id,
        "case_id": row.case_id,
        "step": row.title,
        "step_id": row.spec_name,
        "role": row.role_code,
        "region": row.region_code,
        "status": row.status.value,
        "created_at": row.created_at.isoformat(),
        "due_at": row.due_at.isoformat() if row.due_at else None,
        "case_title": row.case.title,
        "procedure": row.case.version.procedure.code,
        "assignee": row.assignee.username if row.assignee else None,
        "delegation": row.delegation,
        "parent_task_id": row.parent_task_id,
        "sign_position": row.sign_position,
        "countersign": countersign,  # 会签/或签: mode, label, signer, done, total (None for other steps)
    }
    if row.status.value != "open":
        out.update(completed_at=row.completed_at.isoformat() if row.completed_at else None,
                   completed_by=row.completed_by.username if row.completed_by else None,
                   action=row.action, opinion=row.opinion)
    return out


def case_json(case: Case, tasks: list[TaskRow], history) -> dict:
    return {
        "id": case.id,
        "title": case.title,
        "procedure": case.version.procedure.code,
        "procedure_version": case.version.version,
        "status": case.status.value,
        "outcome_reason": case.outcome_reason,
        "region": case.region_code,
        "subject": {"id": case.subject.id, "kind": case.subject.kind, "name": case.subject.name},
        "created_at": case.created_at.isoformat(),
        "finished_at": case.finished_at.isoformat() if case.finished_at else None,
        "current_steps": [{"task_id": t.id, "step": t.title, "step_id": t.spec_name, "role": t.role_code}
                          for t in tasks if t.status.value == "open"],
        "data": merged_data(tasks),
        "history": [
            {"at": e.created_at.isoformat(), "user": e.user.username if e.user else None, "action": e.action,
             "step": e.step, "opinion": e.opinion}
            for e in history
        ],
    }


@bp.route("/openapi.json")
def openapi():
    return jsonify(json.loads(OPENAPI_PATH.read_text(encoding="utf-8")))


@bp.route("/session", methods=["POST"])
def session():
    payload = body()
    try:
        user = login_with_password(str(payload.get("username", "")), str(payload.get("password", "")))
    except LoginRefused as exc:
        return error_response(exc.status, str(exc))
    return jsonify({"username": user.username, "display_name": user.display_name,
                    "roles": sorted(user.actor.role_codes)})


@bp.route("/session", methods=["DELETE"])
def delete_session():
    end_session()
    return jsonify({"ok": True})


@bp.route("/tasks")
def tasks():
    view = request.args.get("view", "todo")
    if view not in VIEWS:
        raise ValidationError("view 无效", {"view": f"只能是 {', '.join(VIEWS)}"})
    per_page = int_arg("per_page", PER_PAGE, 1, 200)
    me = actor()
    now, soon = clock().now(), due_soon()
    with work() as w:
        search = w.inbox.parse_search(request.args, me)
        scope = list_scope(f"api-tasks:{view}:{per_page}", search.params())
        page = w.inbox.page(view, me, search, cursor_arg(scope, KEY_KINDS[view]), per_page, now, soon)
        out = {"view": view, "filters": search.params(), "counts": w.inbox.counts(me, search, now, soon),
               "page": page.number, "per_page": per_page, "next_cursor": cursor_token(page.next, scope),
               "prev_cursor": cursor_token(page.prev, scope)}
        items = page.items
        if view in ("started", "cc"):
            out["cases"] = [{"id": c.id, "title": c.title, "status": c.status.value,
                             "procedure": c.version.procedure.code} for c in items]
        else:
            progress = w.inbox.instance_progress(items)
            out["tasks"] = [task_json(r, countersign=progress.get(r.id)) for r in items]
        return jsonify(out)


@bp.route("/tasks/<int:task_id>")
def task(task_id: int):
    me = actor()
    with work() as w:
        row = w.access.task_of(task_id, me)
        schema, data = w.cases.task_form(row)
        out = task_json(row, countersign=w.inbox.instance_progress([row]).get(row.id))
        out.update(form=schema, data=data, bounds=w.cases.form_bounds(row, schema),
                   date_limits=w.cases.form_dates(row, schema),
                   actions=w.access.allowed_actions(row, me),
                   operations=sorted(w.access.task_operations(row, me)),
                   return_targets=[{"step_id": k, "step": v} for k, v in w.cases.return_targets(row)],
                   opinion_required=opinion_required(w.cases.step_properties(row)),
                   attachment_kinds=w.operations.accepted_kinds(row),
                   may_attach=w.access.acts_on(row, me),
                   # the case at a glance, as the task page shows it: the steps before this one, in words
                   earlier_steps=[s.as_dict() for s in w.overview.steps(
                       row.case, w.inbox.case_tasks(row.case_id), me.may_see_full_id(row.case.subject.region_code),
                       before=row)],
                   case_files=[attachment_json(a) for a in w.overview.case_files(row.case)])
        rule = w.signatures.rule_for(row)
        if rule is not None:
            latest = w.signatures.latest(row.id)
            out["signature"] = {"mode": rule.mode, "label": rule.label,
                                "latest": attachment_json(latest) if latest else None}
        return jsonify(out)


@bp.route("/tasks/batch-approve", methods=["POST"])
def batch_approve():
    """批量审批: approve several tasks of a step that allows it with one opinion; one result per task."""
    payload = body()
    ids, data = payload.get("task_ids"), payload.get("data", {})
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**31
                                            for i in ids):
        raise ValidationError("task_ids 必须是任务编号的数组", {"task_ids": "task_ids 必须是任务编号(正整数)的数组"})
    if not isinstance(data, dict):
        raise ValidationError("data 必须是对象", {"data": "data 必须是对象"})
    opinion = payload.get("opinion")
    if opinion is not None and not isinstance(opinion, str):
        raise ValidationError("opinion 必须是文本", {"opinion": "opinion 必须是文本"})
    with work() as w:
        outcomes = w.batch.approve(ids, actor(), opinion, data, client_addr=client_addr())
    return jsonify({"results": [o.as_dict() for o in outcomes], "approved": sum(o.ok for o in outcomes),
                    "failed": sum(not o.ok for o in outcomes)})


@bp.route("/tasks/<int:task_id>/complete", methods=["POST"])
def complete(task_id: int):
    payload = body()
    data = payload.get("data", {})
    if not isinstance(data, dict):
        raise ValidationError("data 必须是对象", {"data": "data 必须是对象"})
    with work() as w:
        case = w.cases.complete_task(task_id, actor(), str(payload.get("action", "")),
                                     payload.get("opinion") if isinstance(payload.get("opinion"), str) else None,
                                     data, client_addr=client_addr(),
                                     return_to=payload.get("return_to") if isinstance(payload.get("return_to"), str) else None)
        case_id = case.id
    with work() as w:
        case = w.access.visible_case(case_id, actor())
        return jsonify(case_json(case, w.inbox.case_tasks(case_id), w.inbox.case_history(case_id)))


@bp.route("/cases", methods=["POST"])
def start_case():
    payload = body()
    subject = payload.get("subject") or {}
    if not isinstance(subject, dict) or not isinstance(subject.get("id"), int):
        raise ValidationError("subject 无效", {"subject": "需要 {\"id\": 对象编号}"})
    data = payload.get("data") or {}
    if not isinstance(data, dict):
        raise ValidationError("data 必须是对象", {"data": "data 必须是对象"})
    me = actor()
    with work() as w:
        case = w.starts.start(str(payload.get("procedure", "")), subject["id"], me, data=data,
                                  client_addr=client_addr())
        if payload.get("region") and payload["region"] != case.region_code:
            raise ValidationError("region 与对象所在地区不符", {"region": "region 与对象所在地区不符"})
        case_id = case.id
    with work() as w:
        case = w.access.visible_case(case_id, me)
        return jsonify(case_json(case, w.inbox.case_tasks(case_id), w.inbox.case_history(case_id))), 201


@bp.route("/cases/<int:case_id>")
def get_case(case_id: int):
    me = actor()
    with work() as w:
        case = w.access.visible_case(case_id, me)
        return jsonify(case_json(case, w.inbox.case_tasks(case_id), w.inbox.case_history(case_id)))


@bp.route("/procedures")
def procedures():
    with work() as w:
        return jsonify({"procedures": [
            {"code": v.procedure.code, "name": v.procedure.name, "version": v.version,
             "content_hash": v.content_hash, "deployed_at": v.deployed_at.isoformat()}
            for v in w.definitions.available_to(actor())]})


def _ok(case_id: int):
    with work() as w:
        case = w.access.visible_case(case_id, actor())
        return jsonify(case_json(case, w.inbox.case_tasks(case_id), w.inbox.case_history(case_id)))


def _text(payload: dict, key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) else None


def _usernames(payload: dict) -> list[str]:
    names = payload.get("to")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValidationError("to 必须是用户名列表", {"to": "to 必须是用户名列表"})
    return names


def _data(payload: dict) -> dict:
    data = payload.get("data", {})
    if not isinstance(data, dict):
        raise ValidationError("data 必须是对象", {"data": "data 必须是对象"})
    return data


def _task_ok(task_id: int, operation):
    """Run ``operation(w)`` on a task, then answer its case as the actor may still see it (the task may be
    someone else's now: 转办, 委派, 加签)."""
    with work() as w:
        operation(w)
        case_id = w.access.task_in_visible_case(task_id, actor()).case_id
    return _ok(case_id)


@bp.route("/tasks/<int:task_id>/claim", methods=["POST"])
def claim(task_id: int):
    body()
    with work() as w:
        w.operations.claim(task_id, actor())
        case_id = w.access.task_of(task_id, actor()).case_id
    return _ok(case_id)


@bp.route("/tasks/<int:task_id>/unclaim", methods=["POST"])
def unclaim(task_id: int):
    body()
    with work() as w:
        w.operations.unclaim(task_id, actor())
        case_id = w.access.task_of(task_id, actor()).case_id
    return _ok(case_id)


@bp.route("/tasks/<int:task_id>/transfer", methods=["POST"])
def transfer(task_id: int):
    payload = body()
    return _task_ok(task_id, lambda w: w.operations.transfer(task_id, actor(), _text(payload, "to") or "",
                                                             _text(payload, "opinion")))


@bp.route("/tasks/<int:task_id>/urge", methods=["POST"])
def urge(task_id: int):
    payload = body()
    with work() as w:
        told = w.operations.urge(task_id, actor(), _text(payload, "opinion"))
    return jsonify({"notified": told})


@bp.route("/cases/<int:case_id>/cc", methods=["POST"])
def cc(case_id: int):
    payload = body()
    names = _usernames(payload)
    with work() as w:
        added = w.operations.cc(case_id, actor(), names, _text(payload, "opinion"))
    return jsonify({"added": added})


@bp.route("/cases/<int:case_id>/withdraw", methods=["POST"])
def withdraw(case_id: int):
    payload = body()
    with work() as w:
        w.cases.withdraw(case_id, actor(), _text(payload, "opinion"), client_addr=client_addr())
    return _ok(case_id)


def attachment_json(a) -> dict:
    return {"id": a.id, "file_name": a.file_name, "content_type": a.content_type, "size_bytes": a.size_bytes,
            "sha256": a.sha256, "kind": a.kind, "task_id": a.task_id, "uploaded_by": a.uploaded_by.username,
            "created_at": a.created_at.isoformat()}


@bp.route("/cases/<int:case_id>/attachments", methods=["GET"])
def list_attachments(case_id: int):
    with work() as w:
        w.access.visible_case(case_id, actor())
        return jsonify({"attachments": [attachment_json(a) for a in w.operations.attachments(case_id)]})


@bp.route("/cases/<int:case_id>/attachments", methods=["POST"])
def upload_attachment(case_id: int):
    upload = request.files.get("file")
    if upload is None:
        raise ValidationError("缺少文件", {"file": "请以 multipart/form-data 的 file 字段上传"})
    with work() as w:
        if request.form.get("kind") == "signature":  # a handwritten signature on one of the case's open tasks
            task_id = request.form.get("task_id", "")
            if not task_id.isdigit():
                raise ValidationError("缺少任务", {"task_id": "签字必须指明所属任务 task_id"})
            attachment = w.signatures.add_signature(int(task_id), actor(), upload.read(), case_id=case_id)
        else:  # to an open task of the case (a kind its step accepts), or case-level by the starter
            task_id = request.form.get("task_id", "").strip()
            if task_id and not task_id.isdigit():
                raise ValidationError("任务不属于本案", {"task_id": "task_id 必须是本案任务的编号"})
            attachment = w.operations.add_attachment(case_id, actor(), upload.filename or "", upload.read(),
                                                     upload.mimetype or "", task_id=int(task_id) if task_id else None,
                                                     kind=request.form.get("kind"))
        return jsonify(attachment_json(attachment)), 201


# ------------------------------------------------------------------ 委派 / 加签
@bp.route("/tasks/<int:task_id>/delegate", methods=["POST"])
def delegate(task_id: int):
    payload = body()
    return _task_ok(task_id, lambda w: w.operations.delegate(task_id, actor(), _text(payload, "to") or "",
                                                             _text(payload, "opinion")))


@bp.route("/tasks/<int:task_id>/resolve", methods=["POST"])
def resolve(task_id: int):
    payload = body()
    data = _data(payload)
    return _task_ok(task_id, lambda w: w.operations.resolve(task_id, actor(), _text(payload, "opinion"), data))


@bp.route("/tasks/<int:task_id>/add-sign", methods=["POST"])
def add_sign(task_id: int):
    payload = body()
    names, data = _usernames(payload), _data(payload)
    return _task_ok(task_id, lambda w: w.operations.add_sign(
        task_id, actor(), names, _text(payload, "position") or "", _text(payload, "opinion"), data))


from web import api_notices, api_registry, api_staffing  # noqa: E402,F401  (their routes, on this blueprint)

"""JSON API of the subject registry (households, projects): register, search, read, edit, import, export.

The routes hang on the API blueprint (``web/api.py`` imports this module once), so they share its
guard (JSON bodies, same-origin, logged in) and its error handling.
"""

from __future__ import annotations

from flask import current_app, jsonify, request

from engine.core.errors import ValidationError
from engine.procedures.forms import mask_id
from engine.queries.paging import COUNT_CAP
from engine.registry.excel import ImportRefusedError
from engine.registry.service import KEY_KINDS, DuplicateSubjectError, SubjectSearch
from web.api import body, bp
from web.edge import cursor_arg, cursor_token, list_scope
from web.errors import error_response
from web.services import actor, client_addr, work


def _masked(value, show: bool):
    return value if show or not value else mask_id(value)


def subject_json(subject, members, me, history=None) -> dict:
    show = me.may_see_full_id(subject.region_code)
    out = {
        "id": subject.id,
        "kind": subject.kind,
        "region_code": subject.region_code,
        "region": subject.region_code,
        "name": subject.name,
        "id_number": _masked(subject.id_number, show),
        "attrs": subject.attrs or {},
        "is_active": subject.is_active,
        "revision": subject.revision,
    }
    if members is not None:
        out["members"] = [{"name": m.name, "id_number": _masked(m.id_number, show), "relation": m.relation,
                           "labour_ability": m.labour_ability, "health": m.health, "schooling": m.schooling}
                          for m in members]
    if history is not None:
        out["history"] = [{"revision": r.revision, "action": r.action, "at": r.changed_at.isoformat(),
                           "user": r.changed_by.username,
                           "changes": {k: (v if show or not _has_id(k) else ["***", "***"]) for k, v in r.changes.items()}}
                          for r in history]
    return out


def _has_id(field: str) -> bool:
    return field in ("id_number", "members")


def _duplicate(exc: DuplicateSubjectError):
    response, status = error_response(409, str(exc), exc.errors)
    payload = response.get_json()
    payload["existing"] = {"id": exc.existing_id}
    return jsonify(payload), status


@bp.route("/subjects", methods=["POST"])
def create_subject():
    payload = body()
    me = actor()
    try:
        with work() as w:
            subject = w.registry.create(me, payload, client_addr=client_addr())
            out = subject_json(subject, w.registry.members(subject.id), me)
    except DuplicateSubjectError as exc:
        return _duplicate(exc)
    return jsonify(out), 201


@bp.route("/subjects")
def subjects():
    me = actor()
    search = SubjectSearch.parse(request.args)
    scope = list_scope("api-subjects", {**search.params(), "per_page": search.per_page})
    after = cursor_arg(scope, KEY_KINDS)
    with work() as w:
        page = w.registry.search(me, search, after)
        return jsonify({"subjects": [subject_json(s, None, me) for s in page.items], "total": page.total,
                        "total_capped": (page.total or 0) > COUNT_CAP, "page": page.number,
                        "per_page": search.per_page, "next_cursor": cursor_token(page.next, scope),
                        "prev_cursor": cursor_token(page.prev, scope), "filters": search.params()})


@bp.route("/subjects/<int:subject_id>")
def get_subject(subject_id: int):
    me = actor()
    with work() as w:
        subject = w.registry.get(subject_id, me)
        return jsonify(subject_json(subject, w.registry.members(subject_id), me, w.registry.history(subject_id)))


@bp.route("/subjects/<int:subject_id>", methods=["PATCH"])
def patch_subject(subject_id: int):
    payload = body()
    expected = payload.pop("revision", None)
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
        raise ValidationError("revision 应为整数", {"revision": "revision 应为整数"})
    me = actor()
    try:
        with work() as w:
            subject = w.registry.update(subject_id, me, payload, client_addr=client_addr(),
                                        expected_revision=expected)
            out = subject_json(subject, w.registry.members(subject_id), me, w.registry.history(subject_id))
    except DuplicateSubjectError as exc:
        return _duplicate(exc)
    return jsonify(out)


# ------------------------------------------------------------------ Excel
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _kind_arg(value: str | None) -> str:
    if value not in ("household", "project"):
        raise ValidationError("kind 只能是 household 或 project", {"kind": "kind 只能是 household 或 project"})
    return value


def _xlsx(content: bytes, filename: str):
    from urllib.parse import quote

    response = current_app.response_class(content, mimetype=XLSX)
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    return response


@bp.route("/subjects/template.xlsx")
def subjects_template():
    kind = _kind_arg(request.args.get("kind"))
    with work() as w:
        content = w.registry_excel.template(kind)
    return _xlsx(content, f"{'农户' if kind == 'household' else '项目'}导入模板.xlsx")


@bp.route("/subjects/export.xlsx")
def export_subjects():
    kind = _kind_arg(request.args.get("kind"))
    search = SubjectSearch.parse({**request.args.to_dict(), "kind": kind, "page": "1"})
    with work() as w:
        content = w.registry_excel.export(actor(), search)
    return _xlsx(content, f"{'农户' if kind == 'household' else '项目'}台账.xlsx")


@bp.route("/subjects/import", methods=["POST"])
def import_subjects():
    upload = request.files.get("file")
    if upload is None:
        raise ValidationError("缺少文件", {"file": "请以 multipart/form-data 的 file 字段上传 .xlsx 文件"})
    kind = _kind_arg(request.form.get("kind"))
    dry_run = request.form.get("dry_run") in ("1", "true")
    try:
        with work() as w:
            result = w.registry_excel.import_file(actor(), kind, upload.read(), store=not dry_run,
                                                           client_addr=client_addr())
    except ImportRefusedError as exc:
        response, status = error_response(422, str(exc), exc.errors)
        payload = response.get_json()
        payload.update(problems=[p.as_dict() for p in exc.problems], total_problems=exc.total)
        return jsonify(payload), status
    out = {"kind": kind, "count": result.count, "members": result.member_count, "stored": result.stored,
           "preview": result.preview}
    return jsonify(out), 200 if dry_run else 201


# ------------------------------------------------------------------ users, roles, grants (admins)
def user_json(user) -> dict:
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "is_active": user.is_active,
            "grants": [{"id": g.id, "role": g.role_code, "region_code": g.region_code} for g in user.grants]}


@bp.route("/users", methods=["POST"])
def create_user():
    payload = body()
    with work() as w:
        out = user_json(w.users.create(actor(), payload, client_addr=client_addr()))
    return jsonify(out), 201


@bp.route("/users")
def users():
    name = request.args.get("name")
    with work() as w:
        return jsonify({"users": [user_json(u) for u in w.users.list(actor(), name if isinstance(name, str) else None)]})


@bp.route("/users/<int:user_id>")
def get_user(user_id: int):
    with work() as w:
        return jsonify(user_json(w.users.get(actor(), user_id)))


@bp.route("/users/<int:user_id>", methods=["PATCH"])
def patch_user(user_id: int):
    payload = body()
    with work() as w:
        return jsonify(user_json(w.users.update(actor(), user_id, payload, client_addr=client_addr())))


@bp.route("/users/<int:user_id>/grants", methods=["POST"])
def add_grants(user_id: int):
    payload = body()
    with work() as w:
        w.users.grant(actor(), user_id, payload.get("grants"), client_addr=client_addr())
        return jsonify(user_json(w.users.get(actor(), user_id))), 201


@bp.route("/users/<int:user_id>/grants/<int:grant_id>", methods=["DELETE"])
def revoke_grant(user_id: int, grant_id: int):
    with work() as w:
        w.users.revoke(actor(), user_id, grant_id, client_addr=client_addr())
        return jsonify(user_json(w.users.get(actor(), user_id)))


# ------------------------------------------------------------------ batch start (定期预判)
@bp.route("/cases/batch", methods=["POST"])
def start_batch():
    payload = body()
    ids = payload.get("subject_ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**31
                                            for i in ids):
        raise ValidationError("subject_ids 应为对象编号列表", {"subject_ids": "subject_ids 应为对象编号列表"})
    procedure = payload.get("procedure")
    with work() as w:
        started, skipped = w.starts.start_many(procedure if isinstance(procedure, str) else "", ids, actor(),
                                               client_addr=client_addr())
    return jsonify({"started": [{"subject_id": s, "case_id": c} for s, c in started],
                    "skipped": [{"subject_id": s, "running_case_id": c, "reason": r} for s, c, r in skipped]}), 201

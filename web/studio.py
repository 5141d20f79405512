"""Procedure studio (流程设计): admins model, validate, dry-run, deploy, share and migrate procedures.

Pages: ``/studio/`` (procedures, versions, running cases per version, drafts, new, import),
``/studio/drafts/<id>`` (the editor: bpmn-js modeler in Chinese with the XiangFlow properties
panel and bpmnlint, form-js editor, dmn-js; bundle ``static/dist/studio.js``), migration preview.
The editor talks to ``/studio/api/...`` with JSON; those requests carry the page's CSRF token in
the ``X-CSRFToken`` header. Views only call ``engine.studio.service`` and render.

Only admins get in (``Actor.is_admin``); which procedures and drafts an admin may change is the
engine's rule (``may_change_procedure``): a forbidden action is not offered on the pages and a forged
request gets 403. A refused visit, every action and every refusal is recorded in the audit log
(case_id NULL unless the action concerns a case).
"""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from engine.core.errors import DefinitionError, ValidationError, XiangFlowError
from engine.models import CaseStatus
from engine.procedures.checks.rules import editor_vocabulary
from engine.studio.service import MAX_ZIP_BYTES, DraftProblems
from engine.studio.simple.model import MAX_MODEL_BYTES
from web.errors import STATUS, error_response
from web.services import actor, client_addr, work

bp = Blueprint("studio", __name__, url_prefix="/studio")


def _is_api() -> bool:
    return request.path.startswith("/studio/api/")


def _record(action: str, message: str, detail: dict | None = None) -> None:
    """Record a refused studio action in its own unit of work (the refused one rolled back)."""
    me = actor()
    with work() as w:
        w.studio.audit(me, action, request.path[:200], detail, opinion=message[:2000], client_addr=client_addr())


@bp.before_request
def guard():
    if not current_user.is_authenticated:
        if _is_api():
            return _error(401, "请先登录")
        return current_app.login_manager.unauthorized()
    if not actor().is_admin:
        _record("studio_forbidden", "非管理员访问流程设计")
        return _error(403, "只有管理员可以使用流程设计")
    return None


def _error(status: int, message: str, problems: list | None = None, errors: dict | None = None):
    if _is_api():
        body: dict[str, object] = {"error": message, "message": message}
        if problems is not None:
            body["problems"] = problems
        if errors:
            body["errors"] = errors
        return jsonify(body), status
    shown = errors or {(p.get("where") or p.get("file") or "")[:200]: p["message"] for p in problems or []}
    return error_response(status, message, shown)


def _problems_of(exc: XiangFlowError) -> list[dict]:
    if isinstance(exc, DraftProblems):
        return [p.as_dict() for p in exc.details]
    if isinstance(exc, DefinitionError):
        return [{"element_id": None, "element_name": None, "file": where, "message": reason, "where": where}
                for where, reason in exc.problems]
    return []


@bp.errorhandler(XiangFlowError)
def studio_error(exc: XiangFlowError):
    status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 422)
    return _error(status, str(exc) if not isinstance(exc, DefinitionError) else exc.args[0],
                  _problems_of(exc) or None, getattr(exc, "errors", None))


def _refusing(action: str):
    """Decorator: a refused action is recorded (``studio_<action>_refused``) and re-raised."""
    def wrap(view):
        def inner(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except XiangFlowError as exc:
                _record(f"studio_{action}_refused", str(exc), {"problems": _problems_of(exc)[:50]})
                raise
        inner.__name__ = view.__name__
        return inner
    return wrap


# ----------------------------------------------------------------------------- pages
def _index(errors: dict, form: dict, copy_for: int | None = None, status: int = 200):
    with work() as w:
        service = w.studio
        return render_template("studio/index.html", summaries=service.overview(actor()), errors=errors, form=form,
                               owners=service.owner_choices(actor()), copy_for=copy_for), status


def _owner_field() -> str | None:
    """The chosen owner region of a new procedure; absent means the admin's default."""
    return request.form.get("owner_region_code") if "owner_region_code" in request.form else None


@bp.route("/")
def index():
    return _index({}, {})


@bp.route("/drafts", methods=["POST"])
def create_draft():
    form = {k: request.form.get(k, "") for k in ("code", "name", "subject_kind", "owner_region_code")}
    try:
        with work() as w:
            draft = w.studio.create_draft(actor(), form["code"], form["name"], form["subject_kind"] or "household",
                                           client_addr=client_addr(), owner_region_code=_owner_field())
            draft_id = draft.id
    except ValidationError as exc:
        return _index(exc.errors, form, status=422)
    flash("已新建流程草稿", "success")
    return redirect(url_for("studio.editor", draft_id=draft_id))


@bp.route("/versions/<int:version_id>/copy", methods=["POST"])
@_refusing("copy")
def copy_version(version_id: int):
    form = {k: request.form.get(k, "") for k in ("code", "name", "owner_region_code")}
    try:
        with work() as w:
            draft_id = w.studio.copy_version(actor(), version_id, form["code"], form["name"],
                                              client_addr=client_addr(), owner_region_code=_owner_field()).id
    except ValidationError as exc:
        return _index({f"copy_{k}": v for k, v in exc.errors.items()}, form, copy_for=version_id, status=422)
    flash("已复制为新流程的草稿", "success")
    return redirect(url_for("studio.editor", draft_id=draft_id))


@bp.route("/versions/<int:version_id>/open", methods=["POST"])
@_refusing("open")
def open_version(version_id: int):
    with work() as w:
        draft_id = w.studio.open_version(actor(), version_id, client_addr=client_addr()).id
    flash("已从该版本创建草稿", "success")
    return redirect(url_for("studio.editor", draft_id=draft_id))


@bp.route("/drafts/<int:draft_id>")
@_refusing("open")
def editor(draft_id: int):
    with work() as w:
        service = w.studio
        draft = service.get_draft(actor(), draft_id)
        config = {
            "draftId": draft.id,
            "code": draft.code,
            "urls": {
                "draft": url_for("studio.api_draft", draft_id=draft.id),
                "validate": url_for("studio.api_validate", draft_id=draft.id),
                "deploy": url_for("studio.api_deploy", draft_id=draft.id),
                "dryRun": url_for("studio.api_dry_run", draft_id=draft.id),
                "simple": url_for("studio.api_simple_get", draft_id=draft.id),
                "simpleVocabulary": url_for("studio.api_simple_vocabulary"),
                "index": url_for("studio.index"),
            },
            "roles": [{"code": r.code, "name": r.name, "level": r.level.value} for r in service.roles()],
            "procedures": sorted(service.linkable_procedures(service.draft_owner(draft))),
            **editor_vocabulary(),  # step property names and labels, actions, statuses: the engine's, not a copy
        }
        return render_template("studio/editor.html", draft=draft, config=config, statuses=CaseStatus)


@bp.route("/drafts/<int:draft_id>/discard", methods=["POST"])
@_refusing("discard")
def discard(draft_id: int):
    with work() as w:
        w.studio.discard_draft(actor(), draft_id, client_addr=client_addr())
    flash("草稿已删除", "success")
    return redirect(url_for("studio.index"))


def _zip_response(name: str, data: bytes) -> Response:
    return Response(data, mimetype="application/zip",
                    headers={"Content-Disposition": f"attachment; filename=\"{name}\""})


@bp.route("/drafts/<int:draft_id>/export.zip")
@_refusing("export")
def export_draft(draft_id: int):
    with work() as w:
        name, data = w.studio.export_draft(actor(), draft_id, client_addr=client_addr())
    return _zip_response(name, data)


@bp.route("/versions/<int:version_id>/export.zip")
@_refusing("export")
def export_version(version_id: int):
    with work() as w:
        name, data = w.studio.export_version(actor(), version_id, client_addr=client_addr())
    return _zip_response(name, data)


@bp.route("/import", methods=["POST"])
@_refusing("import")
def import_zip():
    upload = request.files.get("file")
    if upload is None:
        raise DefinitionError("请选择要导入的 zip 文件", [("file", "没有上传文件")])
    try:
        data = upload.stream.read(MAX_ZIP_BYTES + 1)
    finally:
        upload.close()
    with work() as w:
        draft, problems = w.studio.import_zip(actor(), data, client_addr=client_addr(),
                                               owner_region_code=_owner_field())
        draft_id = draft.id
    flash(f"已导入为草稿;校验发现 {len(problems)} 个问题" if problems else "已导入为草稿,校验通过",
          "error" if problems else "success")
    return redirect(url_for("studio.editor", draft_id=draft_id))


@bp.route("/versions/<int:version_id>/migrate", methods=["GET", "POST"])
@_refusing("migrate")
def migrate(version_id: int):
    try:
        target = int(request.values.get("to", "0"))
    except ValueError:
        target = 0
    me = actor()
    if request.method == "POST":
        case_ids = [int(v) for v in request.form.getlist("case_id") if v.isdigit()]
        with work() as w:
            results = w.studio.migrate_cases(me, version_id, target, case_ids, request.form.get("reason", ""),
                                              client_addr=client_addr())
        moved = [r for r in results if r.moved]
        flash(f"已迁移 {len(moved)} 个案件" + (f",{len(results) - len(moved)} 个无法迁移" if len(moved) < len(results)
                                                else ""), "success" if moved else "error")
        return redirect(url_for("studio.migrate", version_id=version_id, to=target))
    with work() as w:
        service = w.studio
        old, new = service.version(me, version_id), service.version(me, target) if target else None
        checks = service.migration_preview(me, version_id, target) if new else []
        return render_template("studio/migrate.html", old=old, new=new, checks=checks,
                               others=[v for v in old.procedure.versions if v.id != old.id])


# ----------------------------------------------------------------------------- JSON for the editor
def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("请求体必须是 JSON 对象", {"body": "请求体必须是 JSON 对象"})
    return body


@bp.route("/api/drafts/<int:draft_id>", methods=["GET"])
@_refusing("open")
def api_draft(draft_id: int):
    with work() as w:
        draft = w.studio.get_draft(actor(), draft_id)
        return jsonify({"id": draft.id, "code": draft.code, "name": draft.name, "status": draft.status,
                        "lock_version": draft.lock_version, "files": draft.files})


@bp.route("/api/drafts/<int:draft_id>", methods=["POST"])
@_refusing("save")
def api_save(draft_id: int):
    body = _json_body()
    lock = body.get("lock_version")
    with work() as w:
        draft = w.studio.save_draft(actor(), draft_id, body.get("files"), lock if isinstance(lock, int) else None,
                                     client_addr=client_addr())
        return jsonify({"lock_version": draft.lock_version, "name": draft.name, "status": draft.status,
                        "files": draft.files})


# ----------------------------------------------------------------------------- the simple designer (简易模式)
@bp.route("/api/simple/vocabulary")
def api_simple_vocabulary():
    with work() as w:
        return jsonify(w.studio.simple_vocabulary(actor()))


@bp.route("/api/simple/templates")
def api_simple_templates():
    with work() as w:
        return jsonify({"templates": w.studio.simple_templates(actor())})


@bp.route("/api/simple/drafts", methods=["POST"])
@_refusing("create")
def api_simple_create():
    """A new draft from a template: JSON answers 201 with the model; a form post redirects to the editor."""
    as_form = not request.is_json
    body = dict(request.form) if as_form else _json_body()
    owner = body.get("owner_region_code") if isinstance(body.get("owner_region_code"), str) else None
    try:
        with work() as w:
            draft = w.studio.create_from_template(actor(), body.get("template"), body.get("code"), body.get("name"),
                                                  owner_region_code=owner or None, client_addr=client_addr())
            draft_id, lock = draft.id, draft.lock_version
    except ValidationError as exc:
        if as_form:
            return _index(exc.errors, {k: str(body.get(k) or "") for k in ("code", "name", "template")}, status=422)
        raise
    url = url_for("studio.editor", draft_id=draft_id)
    if as_form:
        flash("已从模板新建流程草稿", "success")
        return redirect(url)
    with work() as w:
        _draft, model, _reason = w.studio.simple_model(actor(), draft_id)
        return jsonify({"id": draft_id, "url": url, "lock_version": lock,
                        "model": model.to_json() if model else None}), 201


@bp.route("/api/drafts/<int:draft_id>/simple", methods=["GET"])
@_refusing("open")
def api_simple_get(draft_id: int):
    with work() as w:
        draft, model, reason = w.studio.simple_model(actor(), draft_id)
        if model is None:
            return jsonify({"simple": False, "reason": reason, "lock_version": draft.lock_version})
        return jsonify({"simple": True, "lock_version": draft.lock_version, "model": model.to_json()})


@bp.route("/api/drafts/<int:draft_id>/simple", methods=["PUT"])
@_refusing("save")
def api_simple_put(draft_id: int):
    if len(request.get_data(cache=True)) > MAX_MODEL_BYTES:
        raise ValidationError("简易模型过大", {"model": f"简易模型不能超过 {MAX_MODEL_BYTES // 1024} KB"})
    body = _json_body()
    lock = body.get("lock_version")
    with work() as w:
        draft, model, problems = w.studio.save_simple(actor(), draft_id, body.get("model"),
                                                      lock if isinstance(lock, int) and not isinstance(lock, bool)
                                                      else None, client_addr=client_addr())
        return jsonify({"ok": not problems, "lock_version": draft.lock_version, "model": model.to_json(),
                        "problems": problems})


@bp.route("/api/drafts/<int:draft_id>/validate", methods=["POST"])
@_refusing("validate")
def api_validate(draft_id: int):
    with work() as w:
        problems = w.studio.validate_draft(actor(), draft_id, client_addr=client_addr())
        return jsonify({"ok": not problems, "problems": [p.as_dict() for p in problems]})


@bp.route("/api/drafts/<int:draft_id>/deploy", methods=["POST"])
@_refusing("deploy")
def api_deploy(draft_id: int):
    with work() as w:
        version, created = w.studio.deploy_draft(actor(), draft_id, client_addr=client_addr())
        warnings = w.staffing.deploy_warnings(version)  # 审批人为空: steps nobody holds in some region
        body = {"ok": True, "created": created, "version": version.version, "version_id": version.id,
                "procedure": version.procedure.code, "name": version.procedure.name, "warnings": warnings,
                "message": (f"已发布为第 {version.version} 版:新发起的案件使用此版本" if created
                            else f"内容与第 {version.version} 版相同,未生成新版本")
                + (";注意:" + ";".join(warnings) if warnings else "")}
    return jsonify(body)


@bp.route("/api/drafts/<int:draft_id>/dry-run", methods=["POST"])
@_refusing("dry_run")
def api_dry_run(draft_id: int):
    body = _json_body()
    sample = body.get("sample", {})
    if isinstance(sample, str):
        try:
            sample = json.loads(sample or "{}")
        except ValueError as exc:
            raise ValidationError("样例数据不是有效的 JSON", {"sample": str(exc)}) from exc
    with work() as w:
        result = w.studio.dry_run(actor(), draft_id, sample, client_addr=client_addr())
    return jsonify(result.as_dict())

"""Registry pages (农户与项目): list and search, register, view with members and history, edit, deactivate."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from engine.core.errors import ForbiddenError, ValidationError
from engine.queries.paging import COUNT_CAP, Page
from engine.registry import catalog
from engine.registry.service import KEY_KINDS, DuplicateSubjectError, SubjectSearch
from web.edge import cursor_arg, cursor_token, list_scope
from web.services import actor, client_addr, work

bp = Blueprint("registry", __name__, url_prefix="/registry")
BLANK_MEMBER_ROWS = 3


def _kind(value: str | None) -> str:
    return value if value in catalog.KINDS else "household"


def _vocab() -> dict:
    return {"categories": catalog.HOUSEHOLD_CATEGORIES, "special_flags": catalog.SPECIAL_FLAGS,
            "relations": catalog.RELATIONS, "labour_abilities": catalog.LABOUR_ABILITIES, "health": catalog.HEALTH,
            "schooling": catalog.SCHOOLING, "project_types": catalog.PROJECT_TYPES, "kinds": catalog.KINDS,
            "attr_labels": catalog.ATTR_LABELS, "member_labels": catalog.MEMBER_LABELS,
            "change_labels": {**{f"attrs.{k}": v for k, v in catalog.ATTR_LABELS.items()}, "name": "名称",
                              "id_number": "身份证号", "region_code": "地区", "members": "家庭成员",
                              "is_active": "状态"}}


@bp.route("/")
@login_required
def index():
    me = actor()
    kind = _kind(request.args.get("kind"))
    errors, status = {}, 200
    try:
        search = SubjectSearch.parse({**request.args.to_dict(), "kind": kind})
    except ValidationError as exc:
        errors, status, search = exc.errors, 422, SubjectSearch(kind=kind)
    scope = list_scope("registry", {**search.params(), "per_page": search.per_page})
    after = cursor_arg(scope, KEY_KINDS) if not errors else None
    with work() as w:
        page = Page([], total=0)
        if not errors:
            try:
                page = w.registry.search(me, search, after)
            except ValidationError as exc:
                errors, status = exc.errors, 422
        return render_template("registry/list.html", kind=kind, items=page.items, total=page.total, page=page,
                               count_cap=COUNT_CAP, next_cursor=cursor_token(page.next, scope),
                               prev_cursor=cursor_token(page.prev, scope), search=search,
                               form=request.args, errors=errors, may_register=w.access.may_register_somewhere(me), **_vocab()), status


def _members_from_form(form) -> list[dict]:
    members = []
    for i in range(catalog.MAX_MEMBERS):
        row = {f: (form.get(f"member_{f}_{i}") or "").strip() for f in catalog.MEMBER_FIELDS}
        if f"member_name_{i}" not in form:
            break
        if any(row.values()):
            members.append({k: v or None for k, v in row.items()})
    return members


def _attrs_from_form(kind: str, form) -> dict:
    attrs = {k: (form.get(f"attr_{k}") or "").strip() or None for k in catalog.ATTR_KEYS[kind]
             if k != "special_flags"}
    if kind == "household":
        attrs["special_flags"] = form.getlist("attr_special_flags")
    return attrs


def _form_page(kind: str, values: dict, errors: dict, subject=None, status: int = 200, members_editable=True):
    me = actor()
    with work() as w:
        regions = w.registry.registrable_regions(me, kind)
        cadres = {r.code: w.registry.assistance_cadres(r.code) for r in regions} if kind == "household" else {}
        members = list(values.get("members") or [])
        rows = members + [{}] * BLANK_MEMBER_ROWS if members_editable else members
        return render_template("registry/form.html", kind=kind, values=values, errors=errors, subject=subject,
                               regions=regions, cadres=[u for users in cadres.values() for u in users],
                               member_rows=rows, members_editable=members_editable, **_vocab()), status


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new():
    kind = _kind(request.args.get("kind") or request.form.get("kind"))
    if request.method == "GET":
        return _form_page(kind, {"attrs": {}}, {})
    fields = {"kind": kind, "region_code": request.form.get("region_code"), "name": request.form.get("name"),
              "id_number": request.form.get("id_number") if kind == "household" else None,
              "attrs": _attrs_from_form(kind, request.form),
              "members": _members_from_form(request.form) if kind == "household" else None}
    try:
        with work() as w:
            subject_id = w.registry.create(actor(), fields, client_addr=client_addr()).id
    except DuplicateSubjectError as exc:
        return _form_page(kind, fields, exc.errors, status=409)
    except ValidationError as exc:
        return _form_page(kind, fields, exc.errors, status=422)
    except ForbiddenError as exc:
        return _form_page(kind, fields, {"region_code": str(exc)}, status=403)
    flash("已登记", "success")
    procedure = request.args.get("procedure") or request.form.get("procedure")
    if procedure:  # registered from 发起流程: back there with the new subject chosen
        return redirect(url_for("inbox.start", procedure=procedure, subject_id=subject_id))
    return redirect(url_for("registry.show", subject_id=subject_id))


@bp.route("/import")
@login_required
def import_page():
    return render_template("registry/import.html", kind=_kind(request.args.get("kind")), **_vocab())


@bp.route("/<int:subject_id>")
@login_required
def show(subject_id: int):
    me = actor()
    with work() as w:
        subject = w.registry.get(subject_id, me)
        return render_template("registry/detail.html", subject=subject, members=w.registry.members(subject_id),
                               history=w.registry.history(subject_id),
                               region_path=w.directory.region_path(subject.region_code),
                               show_full_id=me.may_see_full_id(subject.region_code),
                               editable=w.access.may_register(me, subject.region_code), **_vocab())


@bp.route("/<int:subject_id>/edit", methods=["GET", "POST"])
@login_required
def edit(subject_id: int):
    me = actor()
    with work() as w:
        subject = w.registry.get(subject_id, me)
        if not w.access.may_register(me, subject.region_code):
            raise ForbiddenError("您只能查看、不能修改该对象")
        current = w.registry.fields_of(subject)
        kind, revision = subject.kind, subject.revision
    full = me.may_see_full_id(current["region_code"])  # outside the village IDs are masked: not edited here
    if request.method == "GET":
        return _form_page(kind, current, {}, subject=subject, members_editable=full)
    changes: dict[str, Any] = {"name": request.form.get("name"), "region_code": request.form.get("region_code"),
               "attrs": _attrs_from_form(kind, request.form)}
    if full and kind == "household":
        changes["id_number"] = request.form.get("id_number")
        changes["members"] = _members_from_form(request.form)
    try:
        expected = int(request.form.get("revision", ""))
    except ValueError:
        expected = revision
    try:
        with work() as w:
            w.registry.update(subject_id, me, changes, client_addr=client_addr(), expected_revision=expected)
    except (DuplicateSubjectError, ValidationError) as exc:
        shown = {**current, **{k: v for k, v in changes.items() if k != "attrs"},
                 "attrs": {**current["attrs"], **changes["attrs"]}}
        return _form_page(kind, shown, exc.errors, subject=subject, members_editable=full,
                          status=409 if isinstance(exc, DuplicateSubjectError) else 422)
    flash("已保存", "success")
    return redirect(url_for("registry.show", subject_id=subject_id))


@bp.route("/<int:subject_id>/active", methods=["POST"])
@login_required
def set_active(subject_id: int):
    active = request.form.get("active") == "1"
    with work() as w:
        w.registry.update(subject_id, actor(), {"is_active": active}, client_addr=client_addr())
    flash("已恢复" if active else "已停用", "success")
    return redirect(url_for("registry.show", subject_id=subject_id))

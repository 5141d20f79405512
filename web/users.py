"""User administration pages (用户与授权): list, create with grants, reset password, (de)activate, grant, revoke."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from engine.core.errors import ConflictError, ForbiddenError, ValidationError
from engine.registry.users import MIN_PASSWORD
from web.services import actor, client_addr, work

bp = Blueprint("users", __name__, url_prefix="/admin/users")


def _grant_from_form(form) -> list[dict]:
    return [{"role": form.get("role", ""), "region_code": form.get("region_code", "").strip()}]


def _list_page(errors: dict, values: dict, status: int = 200):
    me = actor()
    with work() as w:
        return render_template("registry/users.html", users=w.users.list(me, request.args.get("name") or None),
                               roles=w.users.roles(), errors=errors, values=values, min_password=MIN_PASSWORD,
                               name=request.args.get("name", "")), status


@bp.route("/", methods=["GET", "POST"])
@login_required
def index():
    if request.method == "GET":
        return _list_page({}, {})
    values = {k: request.form.get(k, "") for k in ("username", "display_name", "role", "region_code")}
    try:
        with work() as w:
            user_id = w.users.create(actor(), {"username": values["username"], "display_name": values["display_name"],
                                               "password": request.form.get("password", ""),
                                               "grants": _grant_from_form(request.form)}, client_addr=client_addr()).id
    except ValidationError as exc:
        return _list_page(exc.errors, values, 422)
    except (ConflictError, ForbiddenError) as exc:
        return _list_page({"username" if isinstance(exc, ConflictError) else "region_code": str(exc)}, values,
                          409 if isinstance(exc, ConflictError) else 403)
    flash("用户已创建", "success")
    return redirect(url_for("users.show", user_id=user_id))


def _detail(user_id: int, errors: dict | None = None, status: int = 200):
    me = actor()
    with work() as w:
        user = w.users.get(me, user_id)
        regions = w.directory.regions({g.region_code for g in user.grants})
        return render_template("registry/user.html", user=user, roles=w.users.roles(), regions=regions,
                               errors=errors or {}, min_password=MIN_PASSWORD, is_self=user.id == me.user_id), status


@bp.route("/<int:user_id>")
@login_required
def show(user_id: int):
    return _detail(user_id)


def _change(user_id: int, operation, done: str):
    try:
        with work() as w:
            operation(w)
    except ValidationError as exc:
        return _detail(user_id, exc.errors, 422)
    except ForbiddenError as exc:
        return _detail(user_id, {"_": str(exc)}, 403)
    flash(done, "success")
    return redirect(url_for("users.show", user_id=user_id))


@bp.route("/<int:user_id>/password", methods=["POST"])
@login_required
def reset_password(user_id: int):
    return _change(user_id, lambda w: w.users.update(actor(), user_id, {"password": request.form.get("password", "")},
                                                      client_addr=client_addr()), "密码已重置")


@bp.route("/<int:user_id>/active", methods=["POST"])
@login_required
def set_active(user_id: int):
    active = request.form.get("active") == "1"
    return _change(user_id, lambda w: w.users.update(actor(), user_id, {"is_active": active}, client_addr=client_addr()),
                   "已启用" if active else "已停用")


@bp.route("/<int:user_id>/grants", methods=["POST"])
@login_required
def grant(user_id: int):
    return _change(user_id, lambda w: w.users.grant(actor(), user_id, _grant_from_form(request.form),
                                                     client_addr=client_addr()), "已授权")


@bp.route("/<int:user_id>/grants/<int:grant_id>/revoke", methods=["POST"])
@login_required
def revoke(user_id: int, grant_id: int):
    return _change(user_id, lambda w: w.users.revoke(actor(), user_id, grant_id, client_addr=client_addr()), "已撤销授权")

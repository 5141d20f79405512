"""What a simple model may say given the server's vocabulary: roles that exist, notice kinds, procedures,
form components the server renders, conditions on fields filled earlier. Problems come back by path in
Chinese naming the block, as ``model.parse_model`` reports the shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.core.errors import ValidationError
from engine.procedures.checks.rules import is_reserved_data_key
from engine.studio.simple.model import FIELD_KEY_RE, Block, Model
from engine.studio.simple.vocabulary import FIELD_TYPES, OPS_BY_TYPE

STATIC_TYPES = ("text", "separator", "spacer")


@dataclass(frozen=True)
class Known:
    """The vocabulary a model is checked against."""

    roles: frozenset[str]
    notice_kinds: frozenset[str]
    procedures: frozenset[str]


def form_fields(form: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The input components of a form by key."""
    return {c["key"]: c for c in (form or {}).get("components", [])
            if isinstance(c, dict) and isinstance(c.get("key"), str) and c.get("type") not in STATIC_TYPES}


def check_model(model: Model, known: Known) -> None:
    """:raises ValidationError: a block names an unknown role, notice kind, procedure or field."""
    errors: dict[str, str] = {}
    ids = {b.id: b for b in model.walk()}

    def err(path: str, message: str) -> None:
        errors.setdefault(path, message)

    def visit(blocks: list[Block], path: str, fields: dict[str, dict[str, Any]], approvals: list[str]) -> None:
        fields = dict(fields)
        approvals = list(approvals)
        for index, block in enumerate(blocks):
            where = f"{path}[{index}]"
            label = block.label
            if block.role is not None and block.role not in known.roles:
                err(f"{where}.role", f"{label}:角色 {block.role} 不存在")
            if block.form is not None:
                _check_form(block, f"{where}.form", err)
                for key in form_fields(block.form):
                    fields.setdefault(key, form_fields(block.form)[key])
            if block.kind == "approval":
                if block.assignee_field and block.assignee_field not in fields:
                    err(f"{where}.assignee_field", f"{label}:指定人员的字段 {block.assignee_field} 不在前面步骤的表单中")
                approvals.append(block.id)
            if block.kind == "notice":
                if block.notice_kind not in known.notice_kinds:
                    err(f"{where}.notice_kind", f"{label}:没有这种公示公告")
                target = block.objection_return_to
                if target and target not in approvals:
                    other = ids.get(target)
                    err(f"{where}.objection_return_to", f"{label}:有异议时只能退回到它前面的审批步骤"
                        + (f"(「{other.name}」不是)" if other else ""))
            if block.kind == "subprocess":
                if block.procedure not in known.procedures:
                    err(f"{where}.procedure", f"{label}:要发起的流程 {block.procedure} 不存在或不能由本流程发起")
                for key in block.pass_data:
                    if key not in fields:
                        err(f"{where}.pass_data", f"{label}:传递的字段 {key} 不在前面步骤的表单中")
            if block.kind == "condition":
                for bi, branch in enumerate(block.branches):
                    for ci, cond in enumerate(branch.conditions):
                        cpath = f"{where}.branches[{bi}].conditions[{ci}]"
                        component = fields.get(cond.field)
                        if component is None:
                            err(f"{cpath}.field", f"{label}的分支「{branch.name}」:字段 {cond.field} 不在前面步骤的表单中")
                            continue
                        ctype = str(component.get("type"))
                        fname = component.get("label") or cond.field
                        if cond.op not in OPS_BY_TYPE.get(ctype, ()):
                            err(f"{cpath}.op", f"{label}的分支「{branch.name}」:字段「{fname}」不能用 {cond.op} 比较")
                        if not (component.get("validate") or {}).get("required") and ctype != "checkbox":
                            err(f"{cpath}.field", f"{label}的分支「{branch.name}」:条件用到的字段「{fname}」"
                                "必须设为必填(空值无法比较)")
                        if ctype == "number" and (isinstance(cond.value, bool)
                                                  or not isinstance(cond.value, (int, float))):
                            err(f"{cpath}.value", f"{label}的分支「{branch.name}」:字段「{fname}」是数字,比较值必须是数字")
                        if ctype == "checkbox" and not isinstance(cond.value, bool):
                            err(f"{cpath}.value", f"{label}的分支「{branch.name}」:字段「{fname}」是勾选项,比较值只能是 是/否")
                        if ctype in ("select", "radio", "checklist"):
                            values = [v.get("value") for v in component.get("values", []) if isinstance(v, dict)]
                            if cond.value not in values:
                                err(f"{cpath}.value", f"{label}的分支「{branch.name}」:「{fname}」没有选项 {cond.value}")
            for bi, branch in enumerate(block.children()):
                bpath = f"{where}.otherwise" if branch is block.otherwise else f"{where}.branches[{bi}]"
                visit(branch.blocks, f"{bpath}.blocks", fields, approvals)  # a branch's fields stay inside it

    visit(model.blocks, "blocks", {}, [])
    if errors:
        raise ValidationError("简易模型有误", errors)


def _check_form(block: Block, path: str, err) -> None:
    keys: set[str] = set()
    for index, component in enumerate(block.form.get("components", []) if block.form else []):
        where = f"{path}.components[{index}]"
        if not isinstance(component, dict):
            err(where, f"{block.label}:表单第 {index + 1} 项无效")
            continue
        ctype = component.get("type")
        label = component.get("label") or component.get("key") or f"第 {index + 1} 项"
        if ctype not in FIELD_TYPES and ctype not in STATIC_TYPES:
            err(f"{where}.type", f"{block.label}:表单字段「{label}」的类型不受支持")
            continue
        if ctype in STATIC_TYPES:
            continue
        key = component.get("key")
        if not isinstance(key, str) or not FIELD_KEY_RE.fullmatch(key):
            err(f"{where}.key", f"{block.label}:表单字段「{label}」的字段名无效(小写字母开头的字母、数字、下划线)")
        elif is_reserved_data_key(key):
            err(f"{where}.key", f"{block.label}:表单字段「{label}」的字段名 {key} 是系统保留的,请换一个")
        elif key in keys:
            err(f"{where}.key", f"{block.label}:表单中有两个字段都叫 {key}")
        else:
            keys.add(key)

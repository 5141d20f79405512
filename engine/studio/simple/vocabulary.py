"""The words the simple designer's browser side offers, served by ``GET /studio/api/simple/vocabulary``:
the server's own lists (roles, statuses, actions, notice kinds, form components it renders), in Chinese."""

from __future__ import annotations

from typing import Any

from engine.core.glossary import CASE_STATUS_LABELS
from engine.procedures.checks.rules import ACTION_WORDS, ALLOWED_ACTIONS, CASE_STATUS_VALUES, ENGINE_DATA_SAMPLE
from engine.studio.simple import model as m

LEVEL_NAMES = {"province": "省级", "city": "市级", "county": "县级", "township": "乡镇级", "village": "村级"}
SUBJECT_NAMES = {"household": "农户", "project": "项目"}

# the form-js components engine/procedures/forms.py renders and checks, with the validations it applies
FIELD_TYPES: dict[str, dict[str, Any]] = {
    "textfield": {"name": "单行文字", "validations": ["required", "minLength", "maxLength", "pattern", "cn_id"]},
    "textarea": {"name": "多行文字", "validations": ["required", "minLength", "maxLength"]},
    "number": {"name": "数字", "validations": ["required", "min", "max"]},
    "datetime": {"name": "日期", "validations": ["required"], "subtype": "date"},
    "select": {"name": "下拉选择", "validations": ["required"], "values": True},
    "radio": {"name": "单选", "validations": ["required"], "values": True},
    "checkbox": {"name": "勾选项", "validations": ["required"]},
    "checklist": {"name": "多选", "validations": ["required"], "values": True},
}
STATIC_FIELD_TYPES = {"text": "说明文字", "separator": "分隔线", "spacer": "空白"}
VALIDATION_NAMES = {"required": "必填", "minLength": "最少字数", "maxLength": "最多字数", "pattern": "格式(正则)",
                    "cn_id": "身份证号码", "min": "最小值", "max": "最大值"}
OP_NAMES = {"==": "等于", "!=": "不等于", ">": "大于", ">=": "大于或等于", "<": "小于", "<=": "小于或等于",
            "contains": "包含"}
_ORDERED = ("==", "!=", ">", ">=", "<", "<=")
OPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "number": _ORDERED, "datetime": _ORDERED, "textfield": ("==", "!="), "textarea": ("==", "!="),
    "select": ("==", "!="), "radio": ("==", "!="), "checkbox": ("==",), "checklist": ("contains",),
}
SETTINGS_FIELDS = [
    {"key": "day_kind", "label": "办理时限默认按", "type": "select", "default": "natural",
     "values": [{"value": k, "label": v} for k, v in m.UNIT_NAMES.items()]},
    {"key": "complaint_phone", "label": "监督电话", "type": "phone", "default": ""},
    {"key": "one_running_case_per_subject", "label": "同一对象同时只能有一件在办", "type": "checkbox",
     "default": False},
]


def vocabulary(roles: list[Any], notice_kinds: list[dict[str, Any]], procedures: list[tuple[str, str]]) -> dict[str, Any]:
    """Everything the block editor offers; roles are ``Role`` rows, notice kinds the simple catalog's."""
    return {
        "kinds": [{"code": k, "name": m.KIND_NAMES[k]} for k in m.KINDS],
        "roles": [{"code": r.code, "name": r.name, "level": r.level.value,
                   "level_name": LEVEL_NAMES.get(r.level.value, r.level.value)}
                  for r in roles if r.code not in ("admin", "system_admin")],
        "subject_kinds": [{"code": k, "name": v} for k, v in SUBJECT_NAMES.items()],
        "notice_kinds": notice_kinds,
        "field_types": [{"type": t, **spec, "validations": [{"code": v, "name": VALIDATION_NAMES[v]}
                                                            for v in spec["validations"]]}
                        for t, spec in FIELD_TYPES.items()],
        "static_types": [{"type": t, "name": n} for t, n in STATIC_FIELD_TYPES.items()],
        "condition_ops": [{"op": op, "name": OP_NAMES[op], "types": [t for t, ops in OPS_BY_TYPE.items() if op in ops]}
                          for op in m.CONDITION_OPS],
        "joins": [{"code": "and", "name": "且"}, {"code": "or", "name": "或"}],
        "units": [{"code": k, "name": v} for k, v in m.UNIT_NAMES.items()],
        "actions": [{"code": a, "name": ACTION_WORDS[a]} for a in ALLOWED_ACTIONS],
        "sign_modes": [{"code": k, "name": v} for k, v in m.SIGN_MODE_NAMES.items()],
        "signatures": [{"code": "required", "name": "必须签字"}, {"code": "optional", "name": "可以签字"}],
        "case_statuses": [{"code": s, "name": CASE_STATUS_LABELS.get(s, s)} for s in CASE_STATUS_VALUES
                          if s != "running"],
        "settings_fields": SETTINGS_FIELDS,
        "reserved_keys": sorted(ENGINE_DATA_SAMPLE),
        "reserved_prefixes": ["subject_"],
        "procedures": [{"code": c, "name": n} for c, n in procedures],
        "limits": {"blocks": m.MAX_BLOCKS, "depth": m.MAX_DEPTH, "name": m.MAX_NAME, "branches": m.MAX_BRANCHES,
                   "conditions": m.MAX_CONDITIONS, "components": m.MAX_COMPONENTS, "amount": m.MAX_AMOUNT,
                   "attachments": m.MAX_LABELS},
        "block_id_pattern": m.BLOCK_ID_RE.pattern,
        "field_key_pattern": m.FIELD_KEY_RE.pattern,
    }

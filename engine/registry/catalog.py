"""What a registered subject may hold: ID numbers (GB 11643 check digit), the categories and vocabularies,
and the one check of a subject's fields used by the API, the pages and the Excel import alike.

``check_subject(fields)`` returns the normalized fields and a dict of problems keyed like the API's
``errors`` (``id_number``, ``attrs.category``, ``members[0].id_number``); the service adds the checks that
need the database (region exists and is inside the actor's jurisdiction, duplicates, 帮扶责任人).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

KINDS = {"household": "农户", "project": "项目"}

# 监测对象类别 and the other registered household categories
HOUSEHOLD_CATEGORIES = ("脱贫不稳定户", "边缘易致贫户", "突发严重困难户", "脱贫户", "一般农户")
# 低保/特困/残疾: households that get 缓退 (delayed exit) instead of exiting at once
SPECIAL_FLAGS = ("低保", "特困", "残疾")
RELATIONS = ("户主", "配偶", "子女", "儿媳", "女婿", "父母", "岳父母", "公婆", "孙子女", "兄弟姐妹", "祖父母", "其他")
LABOUR_ABILITIES = ("普通劳动力", "技能劳动力", "弱劳动力或半劳动力", "丧失劳动力", "无劳动力")
HEALTH = ("健康", "长期慢性病", "患有大病", "残疾")
SCHOOLING = ("学龄前儿童", "小学", "初中", "高中", "中职", "高职", "大专及以上", "文盲或半文盲", "非在校生")
PROJECT_TYPES = ("产业发展", "就业帮扶", "基础设施", "公共服务", "乡村建设", "其他")

MAX_MEMBERS = 30
MAX_BUDGET_YUAN = 10_000_000_000

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_ID_SHAPE = re.compile(r"\d{17}[\dX]")
_PHONE = re.compile(r"1\d{10}|0\d{2,3}-?\d{7,8}")
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def id_number_problem(value: str) -> str | None:
    """Why value is not a valid 18-digit resident ID number (shape, birth date, check digit), or None."""
    if not _ID_SHAPE.fullmatch(value):
        return "身份证号应为 18 位(前 17 位数字,末位数字或 X)"
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return "身份证号中的出生日期无效"
    if born.year < 1900 or born > date.today():
        return "身份证号中的出生日期无效"
    expected = _CHECK[sum(int(d) * w for d, w in zip(value[:17], _WEIGHTS, strict=True)) % 11]
    if value[17] != expected:
        return "身份证号校验位不正确"
    return None


def normalize_id_number(value: Any) -> str:
    return str(value).strip().upper().replace(" ", "") if value is not None else ""


@dataclass
class Checked:
    """A subject's fields after the pure checks: normalized values and the problems found."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def clean_text(value: Any, key: str, errors: dict[str, str], label: str, max_length: int,
               required: bool = False) -> str | None:
    """A stripped single-line text, or None; records a problem under key when it is not acceptable."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors[key] = f"请填写{label}"
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        errors[key] = f"{label}应为文字"
        return None
    text = str(value).strip()
    if _BAD_TEXT.search(text):
        errors[key] = f"{label}含有无效字符"
        return None
    if len(text) > max_length:
        errors[key] = f"{label}不能超过 {max_length} 个字"
        return None
    return text


def _choice(value: Any, key: str, errors: dict[str, str], label: str, choices: tuple[str, ...],
            required: bool = False) -> str | None:
    text = clean_text(value, key, errors, label, 40, required)
    if text is not None and text not in choices:
        errors[key] = f"{label}只能是 {'/'.join(choices)}"
        return None
    return text


def _number(value: Any, key: str, errors: dict[str, str], label: str, low: float, high: float,
            integer: bool = False, required: bool = False) -> int | float | None:
    if value is None or value == "":
        if required:
            errors[key] = f"请填写{label}"
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().replace(",", ""))
        except ValueError:
            errors[key] = f"{label}应为数字"
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        errors[key] = f"{label}应为数字"
        return None
    if integer:
        if value != int(value):
            errors[key] = f"{label}应为整数"
            return None
        value = int(value)
    if not low <= value <= high:
        errors[key] = f"{label}应在 {low:g} 到 {high:g} 之间"
        return None
    return value


def check_id_number(value: Any, key: str, errors: dict[str, str], required: bool) -> str | None:
    number = normalize_id_number(value)
    if not number:
        if required:
            errors[key] = "请填写身份证号"
        return None
    problem = id_number_problem(number)
    if problem:
        errors[key] = problem
        return None
    return number


def _household_attrs(attrs: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["category"] = _choice(attrs.get("category"), "attrs.category", errors, "监测对象类别",
                              HOUSEHOLD_CATEGORIES, required=True)
    out["members"] = _number(attrs.get("members"), "attrs.members", errors, "家庭人口", 1, MAX_MEMBERS, integer=True)
    flags = attrs.get("special_flags") or []
    if isinstance(flags, str):
        flags = [f for f in re.split(r"[,，、\s]+", flags) if f]
    if not isinstance(flags, list) or not all(isinstance(f, str) and f in SPECIAL_FLAGS for f in flags):
        errors["attrs.special_flags"] = f"特殊标识只能是 {'/'.join(SPECIAL_FLAGS)}"
        flags = []
    out["special_flags"] = sorted(set(flags), key=SPECIAL_FLAGS.index)
    phone = clean_text(attrs.get("phone"), "attrs.phone", errors, "联系电话", 20)
    if phone is not None and not _PHONE.fullmatch(phone):
        errors["attrs.phone"] = "联系电话应为 11 位手机号或带区号的固定电话"
        phone = None
    out["phone"] = phone
    out["assistance_cadre"] = clean_text(attrs.get("assistance_cadre"), "attrs.assistance_cadre", errors,
                                         "帮扶责任人", 64)
    out["address"] = clean_text(attrs.get("address"), "attrs.address", errors, "住址", 200)
    return out


def _project_attrs(attrs: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["project_type"] = _choice(attrs.get("project_type"), "attrs.project_type", errors, "项目类型",
                                  PROJECT_TYPES, required=True)
    out["budget_yuan"] = _number(attrs.get("budget_yuan"), "attrs.budget_yuan", errors, "预算(元)", 0,
                                 MAX_BUDGET_YUAN, required=True)
    for key, label, length in (("place", "建设地点", 200), ("content", "建设内容", 1000),
                               ("funds_source", "资金来源", 200), ("farmer_linkage", "联农带农机制", 1000),
                               ("department", "主管部门", 100)):
        out[key] = clean_text(attrs.get(key), f"attrs.{key}", errors, label, length)
    out["year"] = _number(attrs.get("year"), "attrs.year", errors, "年度", 2000, 2100, integer=True)
    return out


HOUSEHOLD_ATTRS = ("category", "members", "special_flags", "phone", "assistance_cadre", "address")
PROJECT_ATTRS = ("project_type", "budget_yuan", "place", "content", "funds_source", "farmer_linkage",
                 "department", "year")
ATTR_KEYS = {"household": HOUSEHOLD_ATTRS, "project": PROJECT_ATTRS}
ATTR_LABELS = {"category": "监测对象类别", "members": "家庭人口", "special_flags": "特殊标识", "phone": "联系电话",
               "assistance_cadre": "帮扶责任人", "address": "住址", "project_type": "项目类型",
               "budget_yuan": "预算(元)", "place": "建设地点", "content": "建设内容", "funds_source": "资金来源",
               "farmer_linkage": "联农带农机制", "department": "主管部门", "year": "年度"}
MEMBER_FIELDS = ("name", "id_number", "relation", "labour_ability", "health", "schooling")
MEMBER_LABELS = {"name": "姓名", "id_number": "身份证号", "relation": "与户主关系", "labour_ability": "劳动能力",
                 "health": "健康状况", "schooling": "在校情况"}


def _members(members: Any, head_id: str | None, errors: dict[str, str]) -> list[dict[str, Any]]:
    if not isinstance(members, list) or len(members) > MAX_MEMBERS:
        errors["members"] = f"members 应为成员列表(至多 {MAX_MEMBERS} 人)"
        return []
    out, heads = [], 0
    seen: dict[str, int] = {}
    for i, m in enumerate(members):
        key = f"members[{i}]"
        if not isinstance(m, dict):
            errors[key] = "成员应为对象"
            continue
        unknown = sorted(set(m) - set(MEMBER_FIELDS))
        if unknown:
            errors[key] = f"未知字段:{', '.join(map(str, unknown))}"
        member = {
            "name": clean_text(m.get("name"), f"{key}.name", errors, "成员姓名", 60, required=True),
            "id_number": check_id_number(m.get("id_number"), f"{key}.id_number", errors, required=False),
            "relation": _choice(m.get("relation"), f"{key}.relation", errors, "与户主关系", RELATIONS, required=True),
            "labour_ability": _choice(m.get("labour_ability"), f"{key}.labour_ability", errors, "劳动能力",
                                      LABOUR_ABILITIES),
            "health": _choice(m.get("health"), f"{key}.health", errors, "健康状况", HEALTH),
            "schooling": _choice(m.get("schooling"), f"{key}.schooling", errors, "在校情况", SCHOOLING),
        }
        number = member["id_number"]
        if number:
            if number in seen:
                errors[f"{key}.id_number"] = f"与第 {seen[number] + 1} 位成员的身份证号重复"
            seen[number] = i
        if member["relation"] == "户主":
            heads += 1
            if head_id and number and number != head_id:
                errors[f"{key}.id_number"] = "户主的身份证号应与登记的户主身份证号一致"
        out.append(member)
    if heads > 1:
        errors["members"] = "一户只能有一位户主"
    return out


def check_subject(fields: dict[str, Any]) -> Checked:
    """Check and normalize a subject's fields (``kind``, ``region_code``, ``name``, ``id_number``, ``attrs``,
    ``members``) without the database."""
    result = Checked()
    errors = result.errors
    kind = fields.get("kind")
    if kind not in KINDS:
        errors["kind"] = "kind 只能是 household(农户)或 project(项目)"
        return result
    values = result.values
    values["kind"] = kind
    region = clean_text(fields.get("region_code"), "region_code", errors, "区划代码", 12, required=True)
    if region is not None and not re.fullmatch(r"\d{12}", region):
        errors["region_code"] = "区划代码应为 12 位数字"
        region = None
    values["region_code"] = region
    label = "户主姓名" if kind == "household" else "项目名称"
    values["name"] = clean_text(fields.get("name"), "name", errors, label, 60 if kind == "household" else 120,
                                required=True)
    if kind == "household":
        values["id_number"] = check_id_number(fields.get("id_number"), "id_number", errors, required=True)
    else:
        if fields.get("id_number"):
            errors["id_number"] = "项目不登记身份证号"
        values["id_number"] = None
    attrs = fields.get("attrs") or {}
    if not isinstance(attrs, dict):
        errors["attrs"] = "attrs 应为对象"
        attrs = {}
    unknown = sorted(set(attrs) - set(ATTR_KEYS[kind]))
    if unknown:
        errors["attrs"] = f"未知属性:{', '.join(map(str, unknown))}"
    checker = _household_attrs if kind == "household" else _project_attrs
    values["attrs"] = {k: v for k, v in checker(attrs, errors).items() if v not in (None, [])}
    members = fields.get("members")
    if kind == "project":
        if members:
            errors["members"] = "项目没有家庭成员"
        values["members"] = []
    else:
        values["members"] = _members(members if members is not None else [], values["id_number"], errors)
        size = values["attrs"].get("members")
        if size is None and values["members"]:
            values["attrs"]["members"] = len(values["members"])
        elif size is not None and size < len(values["members"]):
            errors["attrs.members"] = f"家庭人口({size})少于登记的成员数({len(values['members'])})"
    return result

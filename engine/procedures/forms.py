"""form-js (bpmn.io) form schemas: parse them and validate submitted data on the server.

The same JSON file is what the browser renders and what the server checks, so a form
edited in form-js's editor changes both at once. Supported input components: textfield,
textarea, number, select, radio, checkbox, checklist, datetime (date subtype). Static
components (text, spacer, separator) carry no data. ``validate`` supports required,
minLength, maxLength, pattern, min and max; a component's custom ``properties.format`` of
``cn_id`` checks an 18-digit resident ID number with its checksum.

Patterns run on RE2 (google-re2), which matches in linear time: ``((a+))+`` against ``'a' * 26 + '!'``
takes microseconds instead of seconds. RE2 has no backreferences or lookaround; a pattern using them,
or longer than MAX_PATTERN_CHARS, is refused when the form is parsed (deploy and studio alike).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

import re2

from engine.core.bounds import loads_bounded
from engine.core.errors import DefinitionError, ValidationError
from engine.procedures import form_rules

INPUT_TYPES = {"textfield", "textarea", "number", "select", "radio", "checkbox", "checklist", "datetime"}
STATIC_TYPES = {"text", "spacer", "separator", "html"}
MAX_TEXT_LENGTH = 4000
MAX_PATTERN_CHARS = 500
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the admin, not to stderr
_RE2_OPTIONS.never_capture = True

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_cn_id(value: str) -> bool:
    """True if value is an 18-character resident ID number with a correct check digit and date."""
    if not re.fullmatch(r"\d{17}[\dX]", value or ""):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != value[17]:
        return False
    try:
        date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return True


def mask_id(value: str | None) -> str:
    """Mask an ID number for display: keep the first 6 and last 4 characters."""
    if not value:
        return ""
    return value[:6] + "*" * (len(value) - 10) + value[-4:] if len(value) > 10 else "*" * len(value)


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str):
    """A form pattern compiled for RE2 (JavaScript-style ``\\uXXXX`` escapes accepted).

    :raises ValueError: too long, or syntax RE2 does not support (backreferences, lookaround).
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"正则表达式过长(最多 {MAX_PATTERN_CHARS} 个字符)")
    translated = re.sub(r"\\u([0-9a-fA-F]{4})", r"\\x{\1}", pattern)
    try:
        return re2.compile(translated, options=_RE2_OPTIONS)
    except re2.error:
        raise ValueError("正则表达式无效或使用了不支持的写法(如反向引用、环视)") from None


def parse_schema(text: str) -> dict[str, Any]:
    """Parse and check a form-js schema.

    :raises DefinitionError: not JSON (or nested too deep), no components list, a component without
        a key, or a pattern RE2 cannot run.
    """
    try:
        schema = loads_bounded(text)
    except ValueError as exc:
        raise DefinitionError(f"表单不是有效的 JSON: {str(exc)[:120]}") from exc
    if not isinstance(schema, dict) or not isinstance(schema.get("components"), list):
        raise DefinitionError("表单缺少 components 列表")
    for comp in input_components(schema):
        if comp["type"] not in INPUT_TYPES:
            raise DefinitionError(f"不支持的表单组件类型 {comp['type']!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(comp.get("key", ""))):
            raise DefinitionError(f"表单组件 {str(comp.get('label'))[:40]!r} 的 key 无效")
        try:
            form_rules.hide_condition(comp)
        except ValueError as exc:
            raise DefinitionError(f"表单组件 {comp['key']} 的显示条件无效: {exc}") from None
        pattern = (comp.get("validate") or {}).get("pattern") if isinstance(comp.get("validate"), dict) else None
        if pattern:
            try:
                compile_pattern(str(pattern))
            except ValueError as exc:
                raise DefinitionError(f"表单组件 {comp['key']} 的格式(pattern)无效: {exc}") from None
    return schema


def input_components(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The data-carrying components of a schema, groups flattened."""
    found: list[dict[str, Any]] = []

    def walk(components):
        for comp in components:
            kind = comp.get("type")
            if kind in ("group", "dynamiclist") and isinstance(comp.get("components"), list):
                walk(comp["components"])
            elif kind not in STATIC_TYPES:
                found.append(comp)

    walk(schema.get("components", []))
    return found


def _allowed_values(comp: dict[str, Any]) -> set[str] | None:
    values = comp.get("values")
    if isinstance(values, list):
        return {str(v.get("value")) for v in values}
    return None


def _is_blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def _check_one(comp: dict[str, Any], raw: Any, today: date | None = None,
               started: date | None = None) -> tuple[Any, str | None]:
    kind = comp["type"]
    rules = comp.get("validate", {}) or {}
    label = comp.get("label") or comp["key"]
    if kind == "checkbox":
        if raw in (True, "true", "on", "1", 1):
            value: Any = True
        elif raw in (None, "", False, "false", "0", 0):
            value = False
        else:
            return None, f"{label}: 取值无效"
        if rules.get("required") and not value:
            return value, f"{label}: 必须勾选"
        return value, None
    if _is_blank(raw):
        if rules.get("required"):
            return None, f"{label}: 必填"
        return None, None
    if kind == "number":
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None, f"{label}: 必须是数字"
        if value != value or value in (float("inf"), float("-inf")):
            return None, f"{label}: 必须是数字"
        if value.is_integer():
            value = int(value)
        if "min" in rules and value < rules["min"]:
            return value, f"{label}: 不能小于 {rules['min']}"
        if "max" in rules and value > rules["max"]:
            return value, f"{label}: 不能大于 {rules['max']}"
        return value, None
    if kind == "checklist":
        items = raw if isinstance(raw, list) else [raw]
        allowed = _allowed_values(comp)
        items = [str(i) for i in items]
        if allowed is not None and any(i not in allowed for i in items):
            return items, f"{label}: 含有无效选项"
        return items, None
    if not isinstance(raw, (str, int, float)):
        return None, f"{label}: 取值无效"
    value = str(raw).strip()
    if kind in ("select", "radio"):
        allowed = _allowed_values(comp)
        if allowed is not None and value not in allowed:
            return value, f"{label}: 无效选项"
        return value, None
    if kind == "datetime":
        try:
            day = date.fromisoformat(value[:10])
        except ValueError:
            return value, f"{label}: 日期格式应为 YYYY-MM-DD"
        return value[:10], form_rules.date_problem(label, day, comp, today, started)
    if len(value) > int(rules.get("maxLength", MAX_TEXT_LENGTH)):
        return value, f"{label}: 不能超过 {rules.get('maxLength', MAX_TEXT_LENGTH)} 个字"
    if "minLength" in rules and len(value) < int(rules["minLength"]):
        return value, f"{label}: 至少 {rules['minLength']} 个字"
    if rules.get("pattern") and not _pattern_matches(str(rules["pattern"]), value):
        return value, f"{label}: 格式不正确"
    if (comp.get("properties") or {}).get("format") == "cn_id" and not valid_cn_id(value.upper()):
        return value, f"{label}: 身份证号码无效"
    return value, None


def _pattern_matches(pattern: str, value: str) -> bool:
    try:
        return compile_pattern(pattern).fullmatch(value) is not None
    except ValueError:  # a schema stored before patterns were checked: refuse the value, never hang
        return False


def validate(schema: dict[str, Any], submitted: dict[str, Any], earlier: Mapping[str, Any] | None = None,
             subject: dict[str, Any] | None = None, today: date | None = None,
             started: date | None = None) -> dict[str, Any]:
    """Return the cleaned values of the schema's fields from submitted data.

    Keys not in the schema are dropped; disabled, read-only and hidden (form-js ``conditional.hide``)
    fields keep no new value. A date field's custom ``properties.notBefore`` names other dates (in this
    form or an earlier step's data, ``earlier``) that it may not precede: dates stay in order across the
    steps of a case; with ``caseStart`` it may not precede ``started``, the day the case was started, and
    ``properties.notAfter: today`` keeps it from lying after ``today`` (form_rules).

    :raises ValidationError: with one message per failing field.
    """
    if not isinstance(submitted, dict):
        raise ValidationError("表单数据格式错误", {"_": "表单数据必须是对象"})
    cleaned: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for comp in input_components(schema):
        if comp.get("disabled") or comp.get("readonly") or form_rules.is_hidden(comp, submitted):
            continue
        key = comp["key"]
        value, error = _check_one(comp, submitted.get(key), today, started)
        if error:
            errors[key] = error
        elif value is not None:
            cleaned[key] = value
    _check_date_order(schema, cleaned, earlier or {}, errors)
    if subject:  # fields that state the case's subject must agree with the registry (form_rules)
        for key, message in form_rules.subject_problems(input_components(schema), cleaned, subject).items():
            errors.setdefault(key, message)
    if errors:
        raise ValidationError("表单填写有误", errors)
    return cleaned


def _check_date_order(schema: dict[str, Any], cleaned: dict[str, Any], earlier: Mapping[str, Any],
                      errors: dict[str, str]) -> None:
    for comp in input_components(schema):
        key = comp["key"]
        if comp["type"] != "datetime" or key in errors or key not in cleaned:
            continue
        for other in form_rules.earlier_date_keys(comp):
            before = cleaned[other] if other in cleaned else earlier.get(other)
            if isinstance(before, str) and str(cleaned[key]) < before[:10]:
                errors[key] = f"{comp.get('label') or key}: 不能早于 {before[:10]}"
                break

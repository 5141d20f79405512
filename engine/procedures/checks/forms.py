"""Forms: each parses, its field keys are unique and not the engine's, its patterns cannot backtrack."""

from __future__ import annotations

import re
from typing import Any

from engine.procedures import forms as forms_mod
from engine.procedures.checks.bundle import CheckedBundle
from engine.procedures.checks.problem import Problem
from engine.procedures.checks.rules import is_reserved_data_key

MAX_PATTERN_LENGTH = 200
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]")


def regex_problem(pattern: Any) -> str | None:
    """Why a form field's validation pattern is refused, or None."""
    if not isinstance(pattern, str):
        return "校验正则必须是文本"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"校验正则不能超过 {MAX_PATTERN_LENGTH} 个字符"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"校验正则无效(第 {exc.pos} 个字符附近)" if exc.pos is not None else "校验正则无效"
    if _NESTED_QUANTIFIER.search(pattern):
        return "校验正则含有嵌套重复(如 (a+)+),可能导致回溯过慢,不予接受"
    return None


def form_schemas(b: CheckedBundle) -> list[Problem]:
    """Every form file is a form the server renders and checks."""
    return [Problem(None, f"表单 {key[len('form/'):]}: {why}", key) for key, why in b.form_errors.items()]


def form_fields(b: CheckedBundle) -> list[Problem]:
    """Field keys are unique in their form and not engine data; validation patterns are safe."""
    found = []
    for form_key, schema in b.forms.items():
        file = f"form/{form_key}"
        seen: set[str] = set()
        for comp in forms_mod.input_components(schema):
            key = str(comp.get("key"))
            label = comp.get("label") or key
            if key in seen:
                found.append(Problem(None, f"表单 {form_key}: 字段「{label}」的 key {key!r} 重复", file))
            seen.add(key)
            if is_reserved_data_key(key):
                found.append(Problem(None, f"表单 {form_key}: 字段「{label}」的 key {key!r} 是引擎保留名", file))
            pattern = (comp.get("validate") or {}).get("pattern")
            if pattern is not None and (reason := regex_problem(pattern)):
                found.append(Problem(None, f"表单 {form_key} 字段「{label}」: {reason}", file))
    return found

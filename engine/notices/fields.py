"""The values an issuer fills in on a notice (``notices.json`` ``fields``): defaults, types and limits."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from engine.core.errors import ValidationError
from engine.models import Case
from engine.procedures.notice_catalog import NoticeKind

MAX_TEXT = 200
_PHONE = re.compile(r"[0-9][0-9\- ]{4,19}")  # five digits at least: the hotlines 12317 (乡村振兴) and 12345 too


def procedure_settings(case: Case) -> dict[str, Any]:
    """The ``settings`` of the case's procedure version (``procedure.json``): defaults for notice fields."""
    try:
        return dict(json.loads(case.version.files["procedure.json"]).get("settings", {}))
    except (KeyError, ValueError):
        return {}


def _value(f, raw: Any, today: date) -> tuple[Any, str | None]:
    """The cleaned value of one field, or the reason it is refused."""
    if f.type == "integer":
        value: Any = int(raw)
        if (f.min is not None and value < f.min) or (f.max is not None and value > f.max):
            return None, f"{f.label}应在 {f.min}–{f.max} 之间"
    elif f.type == "date":
        value = date.fromisoformat(str(raw)).isoformat()
        if f.default == "today" and value < today.isoformat():
            return None, f"{f.label}不能早于签发日"
    elif f.type == "phone":
        value = str(raw)
        if not _PHONE.fullmatch(value):
            return None, f"{f.label}格式不正确"
    else:
        value = str(raw)
        if len(value) > MAX_TEXT:
            return None, f"{f.label}不能超过 {MAX_TEXT} 字"
    return value, None


def validated_fields(kind: NoticeKind, values: dict[str, Any], settings_: dict[str, Any], today: date) -> dict[str, Any]:
    """The kind's fields from values, with defaults (a procedure setting, ``today``, the declared default).

    :raises ValidationError: a required field missing or a value of the wrong form (each field named).
    """
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    for f in kind.fields:
        raw = values.get(f.key)
        raw = raw.strip() if isinstance(raw, str) else raw
        if raw in (None, ""):
            if f.default_setting and f.default_setting in settings_:
                raw = settings_[f.default_setting]
            elif f.default == "today":
                raw = today.isoformat()
            else:
                raw = f.default
        if raw in (None, ""):
            if f.required:
                errors[f.key] = f"请填写{f.label}"
            continue
        try:
            value, problem = _value(f, raw, today)
        except ValueError:
            value, problem = None, f"{f.label}格式不正确"
        if problem:
            errors[f.key] = problem
        else:
            cleaned[f.key] = value
    if errors:
        raise ValidationError("公文信息不完整", errors)
    return cleaned

"""Form rules that tie a form to its case, stated in the form JSON (data, not Python).

- ``properties.subject`` = ``name`` | ``id_number``: the field states the case's subject (户主姓名, 身份证号).
  It is prefilled from the registered subject and a submission that contradicts it is refused, so a case
  of 张德明 cannot be filed with 李四's identity.
- Dates must be plausible: not before ``EARLIEST`` nor after ``LATEST`` (1900-01-01 or 9999-12-31 are typing
  slips, never a real check date).
"""

from __future__ import annotations

from datetime import date
from typing import Any

SUBJECT_FIELDS = {"name": "登记的姓名(名称)", "id_number": "登记的身份证号"}
EARLIEST = date(2000, 1, 1)
LATEST = date(2099, 12, 31)


def subject_bound(component: dict[str, Any]) -> str | None:
    """Which subject attribute a field states (``name`` or ``id_number``), if any."""
    value = (component.get("properties") or {}).get("subject")
    return value if value in SUBJECT_FIELDS else None


def subject_prefill(components: list[dict[str, Any]], subject: dict[str, Any]) -> dict[str, Any]:
    """Values for the fields that state the subject, from the registered subject."""
    out = {}
    for comp in components:
        attribute = subject_bound(comp)
        if attribute and subject.get(attribute):
            out[comp["key"]] = subject[attribute]
    return out


def subject_problems(components: list[dict[str, Any]], cleaned: dict[str, Any], subject: dict[str, Any]) -> dict[str, str]:
    """Fields whose submitted value contradicts the registered subject, each with its message."""
    errors = {}
    for comp in components:
        attribute, key = subject_bound(comp), comp["key"]
        if not attribute or key not in cleaned or not subject.get(attribute):
            continue
        given, registered = str(cleaned[key]).strip().upper(), str(subject[attribute]).strip().upper()
        if given != registered:
            label = comp.get("label") or key
            shown = registered if attribute == "name" else f"{registered[:6]}…{registered[-4:]}"
            errors[key] = f"{label}与本案对象{SUBJECT_FIELDS[attribute]}({shown})不一致;如登记有误,请先在“农户与项目”中更正"
    return errors


def date_problem(label: str, value: date) -> str | None:
    """Why a date is implausible, or None."""
    if value < EARLIEST or value > LATEST:
        return f"{label}: 日期不合理(应在 {EARLIEST.year} 年至 {LATEST.year} 年之间)"
    return None

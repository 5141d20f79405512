"""Form rules that tie a form to its case, stated in the form JSON (data, not Python).

- ``properties.subject`` = ``name`` | ``id_number``: the field states the case's subject (户主姓名, 身份证号).
  It is prefilled from the registered subject and a submission that contradicts it is refused, so a case
  of 张德明 cannot be filed with 李四's identity.
- Dates must be plausible: not before ``EARLIEST`` nor after ``LATEST`` (1900-01-01 or 9999-12-31 are typing
  slips, never a real check date); a date with ``properties.notAfter`` = ``today`` records something that has
  happened (入户核查日期, 评议日期 …) and may not lie after today (China time, the unit of work's clock).
- ``properties.notBefore`` lists (comma-separated) what a date may not precede: another date field's key (in
  this form or an earlier step's data: dates stay in order across the steps) and/or ``caseStart``, the day the
  case was started (China time): a check, visit or decision of this case cannot predate it. A date that may
  (a 预判 that led to the case, a birth or disaster date) must not carry it. ``date_limits`` gives the browser
  input the same ``min``/``max`` the server checks.
- ``properties.notAbove`` names a number in the case's workflow data (a decision table's output, e.g.
  ``subsidy_amount``) that the field may not exceed; ``properties.notAboveLabel`` is how the bound is called
  (核定补助). The task page shows the bound beside the field; the check runs where the workflow data is, in the
  mutation's act (engine/runtime/cases.py).
- form-js's ``conditional.hide`` hides a field while its expression holds; a hidden field is neither required
  nor kept. The one expression form understood (``=key = "value"`` or ``=key != "value"``) is checked when
  the form is parsed, so a form cannot carry a condition the server would ignore.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

SUBJECT_FIELDS = {"name": "登记的姓名(名称)", "id_number": "登记的身份证号"}
EARLIEST = date(2000, 1, 1)
LATEST = date(2099, 12, 31)
TODAY = "today"
CASE_START = "caseStart"  # notBefore: the day the case was started
_CONDITION = re.compile(r'^=\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|=)\s*"([^"\\]*)"\s*$')


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


def date_problem(label: str, value: date, component: dict[str, Any] | None = None,
                 today: date | None = None, started: date | None = None) -> str | None:
    """Why a date is implausible, or None (``today``/``started`` given: the field's ``notAfter: today`` and
    ``notBefore: caseStart`` bounds apply)."""
    if value < EARLIEST or value > LATEST:
        return f"{label}: 日期不合理(应在 {EARLIEST.year} 年至 {LATEST.year} 年之间)"
    if today is not None and component is not None and not_after_today(component) and value > today:
        return f"{label}: 不能晚于今天({today.isoformat()}),请填写实际日期"
    if started is not None and component is not None and not_before_start(component) and value < started:
        return f"「{label}」不能早于本案发起日期 {started.isoformat()}"
    return None


def not_after_today(component: dict[str, Any]) -> bool:
    """The date field records something that has happened (``properties.notAfter`` = ``today``)."""
    return (component.get("properties") or {}).get("notAfter") == TODAY


def not_before(component: dict[str, Any]) -> tuple[str, ...]:
    """What a date field may not precede (``properties.notBefore``): field keys and/or ``caseStart``."""
    raw = (component.get("properties") or {}).get("notBefore")
    if not isinstance(raw, str):
        return ()
    return tuple(dict.fromkeys(item.strip() for item in raw.replace("，", ",").split(",") if item.strip()))


def not_before_start(component: dict[str, Any]) -> bool:
    """The date records something done in this case, so not before the day it was started."""
    return CASE_START in not_before(component)


def earlier_date_keys(component: dict[str, Any]) -> tuple[str, ...]:
    """The other date fields (by key) this date may not precede."""
    return tuple(k for k in not_before(component) if k != CASE_START)


def date_limits(components: list[dict[str, Any]], today: date, started: date | None) -> dict[str, dict[str, str]]:
    """Per date field, the ``min`` and ``max`` (ISO dates) its browser input gets: the checks of
    ``date_problem`` for this case (the order of two fields is checked on submit only)."""
    out = {}
    for comp in components:
        if comp.get("type") != "datetime" or not comp.get("key"):
            continue
        low = started if started is not None and not_before_start(comp) and started > EARLIEST else EARLIEST
        high = today if not_after_today(comp) and today < LATEST else LATEST
        out[comp["key"]] = {"min": low.isoformat(), "max": high.isoformat()}
    return out


# ---------------------------------------------------------------- bounds from the workflow data
def upper_bounds(components: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """The number fields bounded by a workflow value, each with the name of that value."""
    return [(c, str(c["properties"]["notAbove"])) for c in components
            if c.get("type") == "number" and (c.get("properties") or {}).get("notAbove")]


def bound_label(component: dict[str, Any]) -> str:
    return str((component.get("properties") or {}).get("notAboveLabel") or "上限")


def yuan(value: float) -> str:
    """An amount as users write it: 35,000 or 35,000.5."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def bound_values(components: list[dict[str, Any]], values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per bounded field, its bound as the task page shows it: ``label``, ``value``, ``text`` (核定补助 35,000 元)."""
    out = {}
    for comp, source in upper_bounds(components):
        bound = values.get(source)
        if isinstance(bound, (int, float)) and not isinstance(bound, bool):
            label = bound_label(comp)
            out[comp["key"]] = {"label": label, "value": bound, "text": f"{label} {yuan(bound)} 元"}
    return out


def bound_problems(components: list[dict[str, Any]], cleaned: Mapping[str, Any],
                   values: Mapping[str, Any]) -> dict[str, str]:
    """Fields whose submitted number exceeds its bound in the workflow data, each with its message."""
    errors = {}
    for key, bound in bound_values(components, values).items():
        given = cleaned.get(key)
        if isinstance(given, (int, float)) and given > bound["value"]:
            comp = next(c for c in components if c.get("key") == key)
            errors[key] = (f"{comp.get('label') or key}: 填写的 {yuan(given)} 元超过{bound['label']} "
                           f"{yuan(bound['value'])} 元,不能超过{bound['label']}")
    return errors


# ---------------------------------------------------------------- conditional fields (form-js conditional.hide)
def hide_condition(component: dict[str, Any]) -> tuple[str, str, str] | None:
    """A field's ``conditional.hide`` as (key, operator, value), or None when it has none.

    :raises ValueError: an expression in a form this server does not understand.
    """
    conditional = component.get("conditional")
    if not conditional:
        return None
    expression = conditional.get("hide") if isinstance(conditional, dict) else None
    match = _CONDITION.match(expression) if isinstance(expression, str) else None
    if match is None:
        raise ValueError('显示条件只支持 =字段 = "值" 或 =字段 != "值" 的写法')
    return match.group(1), match.group(2), match.group(3)


def is_hidden(component: dict[str, Any], values: Mapping[str, Any]) -> bool:
    """True if the field is hidden for these submitted values (so neither required nor kept)."""
    condition = hide_condition(component)
    if condition is None:
        return False
    key, operator, expected = condition
    given = values.get(key)
    equal = given is not None and str(given) == expected
    return equal if operator == "=" else not equal

"""Template filters and globals: dates in China time, Chinese labels for statuses and actions."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from engine.core.glossary import ACTION_LABELS, CASE_STATUS_LABELS, TASK_STATUS_LABELS, count_of
from engine.procedures.expressions import CHINA_TZ
from engine.procedures.forms import mask_id
from engine.procedures.step_rules import kind_label
from web.services import clock


def cn_datetime(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def cn_date(value: datetime | None) -> str:
    if value is None:
        return ""
    v = value.astimezone(CHINA_TZ)
    return f"{v.year}年{v.month}月{v.day}日"


def time_left(due: datetime | None) -> str:
    return time_left_at(due, clock().now())


def time_left_at(due: datetime | None, now: datetime) -> str:
    """Time to a due date in whole units, the same rule both ways: full days left or full days late
    (9.99 days → 剩余 9 天, 4.0 days late → 超期 4 天); under a day, full hours (at least 1)."""
    if due is None:
        return ""
    seconds = (due - now).total_seconds()
    late, span = seconds < 0, abs(seconds)
    days, hours = int(span // 86400), max(1, int(span // 3600))
    amount = f"{days} 天" if days >= 1 else f"{hours} 小时"
    return f"超期 {amount}" if late else f"剩余 {amount}"


def register(app: Flask) -> None:
    app.jinja_env.filters.update(
        cn_datetime=cn_datetime, cn_date=cn_date, time_left=time_left, mask_id=mask_id,
        case_status=lambda s: CASE_STATUS_LABELS.get(str(getattr(s, "value", s)), s),
        task_status=lambda s: TASK_STATUS_LABELS.get(str(getattr(s, "value", s)), s),
        action_label=lambda a: ACTION_LABELS.get(a, a), attachment_kind=kind_label, subject_count=count_of,
    )
    app.jinja_env.globals.update(now=lambda: clock().now(),
                                 today_iso=lambda: clock().now().astimezone(CHINA_TZ).date().isoformat())

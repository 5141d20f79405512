"""How notices write dates, names and places (GB/T 9704 conventions, masked names on public notices)."""

from __future__ import annotations

from datetime import date, datetime

from engine.procedures.expressions import CHINA_TZ


def cn_date(value: date | datetime | str | None) -> str:
    """A date as GB/T 9704 writes it: Arabic numerals without leading zeros, 2026年9月3日."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    elif isinstance(value, datetime):
        value = value.astimezone(CHINA_TZ).date()
    return f"{value.year}年{value.month}月{value.day}日"


def mask_name(name: str) -> str:
    """Keep the surname only: 张德明 → 张**."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else ""


def short_region_name(name: str) -> str:
    """A village's name without its committee: 跃进村民委员会 → 跃进村, 莲花社区居民委员会 → 莲花社区."""
    if name.endswith("村民委员会"):
        return name[: -len("民委员会")]
    if name.endswith("居民委员会"):
        return name[: -len("居民委员会")]
    return name

"""Helpers for the registry tests: valid ID numbers, the demo users' regions, a household payload."""

from __future__ import annotations

from engine.registry.catalog import _CHECK, _WEIGHTS


def id_number(seventeen: str) -> str:
    """The 18-digit ID number with the right check digit for the first 17 digits."""
    assert len(seventeen) == 17 and seventeen.isdigit()
    return seventeen + _CHECK[sum(int(d) * w for d, w in zip(seventeen, _WEIGHTS, strict=True)) % 11]


def wrong_check_digit(number: str) -> str:
    last = "0" if number[17] != "0" else "1"
    return number[:17] + last


def region_of(db, username: str) -> str:
    return db.actor(username).grants[0].region_code


def household(region_code: str, serial: int = 1, name: str = "孙小梅", **attrs) -> dict:
    """A new household payload whose head and spouse have valid, distinct ID numbers."""
    head = id_number(f"51092119800101{serial:03d}")
    spouse = id_number(f"51092119820202{serial:03d}")
    return {
        "kind": "household", "region_code": region_code, "name": name, "id_number": head,
        "attrs": {"category": "边缘易致贫户", "phone": "13800001234", **attrs},
        "members": [
            {"name": name, "id_number": head, "relation": "户主", "labour_ability": "普通劳动力", "health": "健康"},
            {"name": "钱大勇", "id_number": spouse, "relation": "配偶", "labour_ability": "弱劳动力或半劳动力",
             "health": "长期慢性病"},
        ],
    }

"""Region codes: the 12-digit statistical division codes (统计用区划代码) and their hierarchy.

A code's prefix at each level names its ancestor at that level, so jurisdiction is a
prefix relation: 510921107203 (a village) lies in 510921107000 (宝梵镇) and 510921000000
(蓬溪县).
"""

from __future__ import annotations

import csv
from pathlib import Path

from engine.models import RegionLevel

PREFIX_LENGTH = {
    RegionLevel.province: 2,
    RegionLevel.city: 4,
    RegionLevel.county: 6,
    RegionLevel.township: 9,
    RegionLevel.village: 12,
}


def normalize(code: str) -> str:
    """Pad a statistical code to 12 digits (a province "51" becomes "510000000000").

    :raises ValueError: not 2 to 12 digits.
    """
    code = str(code).strip()
    if not code.isdigit() or not 2 <= len(code) <= 12:
        raise ValueError(f"无效的区划代码: {code!r}")
    return code.ljust(12, "0")


def ancestor_at(code: str, level: RegionLevel) -> str:
    """The code of the region at level that contains code (code itself at its own level)."""
    n = PREFIX_LENGTH[level]
    return code[:n].ljust(12, "0")


def level_of(code: str) -> RegionLevel:
    """Infer the level of a normalized 12-digit code from its trailing zeros."""
    if code[9:] != "000":
        return RegionLevel.village
    if code[6:9] != "000":
        return RegionLevel.township
    if code[4:6] != "00":
        return RegionLevel.county
    if code[2:4] != "00":
        return RegionLevel.city
    return RegionLevel.province


def read_csv(path: Path) -> list[dict[str, str | None]]:
    """Read code,name,level,parent_code rows with normalized codes, parents before children."""
    with path.open(encoding="utf-8") as fh:
        rows = [
            {
                "code": normalize(r["code"]),
                "name": r["name"],
                "level": r["level"],
                "parent_code": normalize(r["parent_code"]) if r["parent_code"] else None,
            }
            for r in csv.DictReader(fh)
        ]
    order = list(PREFIX_LENGTH)
    rows.sort(key=lambda r: order.index(RegionLevel(r["level"])))
    return rows

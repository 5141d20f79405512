"""The bundle's notice catalog (template/notices.json) can issue its notices."""

from __future__ import annotations

from engine.procedures.checks.bundle import CheckedBundle
from engine.procedures.checks.problem import Problem
from engine.procedures.notice_catalog import catalog_problems


def notice_catalog(b: CheckedBundle) -> list[Problem]:
    """Each kind of the catalog is complete and its templates exist (engine/procedures/notice_catalog.py)."""
    code = str((b.manifest or {}).get("code", ""))
    return [Problem(None, why, where) for where, why in catalog_problems(code, b.files)]

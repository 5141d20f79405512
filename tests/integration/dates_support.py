"""Form data dated on the tests' clock: the steps' dates (核查, 评议, 复核, 公告, 送达 …) may lie neither before
the case started (``notBefore: caseStart``) nor after today, so a case started after the shared clock moved
(a notice period of an earlier case) is filled in with that day, as a cadre would (the 预判 stays before)."""

from __future__ import annotations

from engine import demo_data as D
from engine.procedures.expressions import CHINA_TZ


def dated(db, data: dict) -> dict:
    """data with its dates moved to today on the test's clock (China time)."""
    return D.on_day(data, db.clock.now().astimezone(CHINA_TZ).date())

"""Exit cases (监测对象风险消除) taken to a step of the 四步法, for tests that start from one."""

from __future__ import annotations

from engine import demo_data as D
from tests.integration.dates_support import dated

# The 四步法 path in order: (bpmn id, the demo user who holds the step, the data that passes it,
# whether a public-notice period (村级公示 after 民主评议, 县级公告期 after 县级公告) follows the step).
EXIT_STEPS = (
    ("household_check", "demo_village", D.HOUSEHOLD_CHECK, False),
    ("village_review", "demo_village", D.VILLAGE_REVIEW, True),
    ("township_recheck", "demo_township", D.TOWNSHIP_RECHECK, False),
    ("dept_decision", "demo_dept", D.DEPT_DECISION, False),
    ("county_announcement", "demo_county", D.COUNTY_ANNOUNCEMENT, True),
    ("exit_notice", "demo_village", D.EXIT_NOTICE, False),
)


def exit_case_at(db, depth: int = 0, household: str | None = None) -> int:
    """A 宝梵镇 exit case started by demo_village (through the engine, not the web) with the first depth
    steps of EXIT_STEPS approved and any notice period after them run out, so it waits at step depth; the
    case id. The steps' dates are today on the shared clock (``dated``), so a case started after an earlier
    one's notice period moved the clock is filled in with that day, as a cadre would."""
    case_id = db.start_case("demo_village", subject_id=db.household(household) if household else None)
    for _step, username, data, notice_follows in EXIT_STEPS[:depth]:
        db.complete(case_id, username, data=dated(db, data))
        if notice_follows:
            assert db.pass_notice() == 1
    return case_id

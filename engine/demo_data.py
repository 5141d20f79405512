"""Form data used by the demo cases, the tests and the benchmark (one place, so they agree).

Dates that record something done in the case (入户核查, 评议, 复核, 公告, 送达: ``notAfter: today`` and
``notBefore: caseStart`` in their forms) are 2026-09-01, the day the tests and the benchmark start their cases
(their clock, tests/conftest.py START); the 预判 that led to the case lies before it; the 回访 after the
six-month timer. The demo, which runs on the real clock, moves them to its own days with ``on_day``.
"""

import re
from datetime import date

HOUSEHOLD_CHECK = {
    "trigger": "季度集中预判",
    "pre_assessment_date": "2026-06-15",
    "measures_implemented": True,
    "basic_needs_secured": True,
    "industry_employment": "家中两人在县城务工,种植柑橘 3 亩",
    "household_size": 4,
    "annual_income_per_capita": 12800,
    "income_spending": "年收入约 5.1 万元,支出稳定,无大额负债",
    "special_category": "无",
    "check_date": "2026-09-01",
    "household_signed": True,
}

VILLAGE_REVIEW = {
    "review_date": "2026-09-01",
    "attendees": 23,
    "review_result": "返贫风险已消除",
}

TOWNSHIP_RECHECK = {"materials_complete": True, "recheck_date": "2026-09-01"}
DEPT_DECISION = {"sector_data_verified": True, "department_name": "蓬溪县乡村振兴局"}
COUNTY_ANNOUNCEMENT = {"announcement_date": "2026-09-01"}  # its 公告文号 is asked once, when the notice is issued
EXIT_NOTICE = {"notice_delivered_date": "2026-09-01", "household_acknowledged": True, "system_marked_removed": True}
NOTICE_DAYS = 7  # monitoring_exit's settings.notice_days: 村级公示 and 县级公告 hold the case this long
# what the issuer fills in on the two notices whose issuing starts those periods (出具村级公示, 出具县级公告)
VILLAGE_NOTICE_FIELDS = {"contact_phone": "0825-5421234", "complaint_phone": "0825-5420000"}
COUNTY_NOTICE_FIELDS = {"contact_phone": "0825-5400000", "document_number": "蓬乡振〔2026〕12号"}
# project_library's 出具项目公示: the complaint phone defaults to its settings.complaint_phone (12317)
PROJECT_NOTICE_FIELDS = {"contact_phone": "0825-5421234"}
# what the village fills in on the 退出告知书 it issues at 退出告知 (异议期限 defaults to 15 days)
EXIT_NOTICE_FIELDS = {"contact_phone": "0825-5421234"}
NOTICE_FIELDS = {"village_public_notice": VILLAGE_NOTICE_FIELDS, "county_announcement": COUNTY_NOTICE_FIELDS,
                 "project_public_notice": PROJECT_NOTICE_FIELDS, "exit_notice": EXIT_NOTICE_FIELDS}
FOLLOW_UP_VISIT = {"visit_date": "2027-03-20", "new_risk_found": "否", "visit_notes": "收入稳定"}

# (username, data) for 民主评议, 镇复核, 部门审定, 县级公告 after 入户核查; 出具村级公示 and its period follow
# 民主评议, 出具县级公告 and its period follow 县级公告 (see tests/conftest.py Database.pass_notice)
REVIEW_STEPS = [
    ("demo_village", VILLAGE_REVIEW),
    ("demo_township", TOWNSHIP_RECHECK),
    ("demo_dept", DEPT_DECISION),
    ("demo_county", COUNTY_ANNOUNCEMENT),
]

_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def on_day(data: dict, day: date, keep: tuple[str, ...] = ("pre_assessment_date",)) -> dict:
    """The form data with its dates moved to day (the 预判 that led to the case kept as it is)."""
    return {k: day.isoformat() if isinstance(v, str) and _ISO_DAY.match(v) and k not in keep else v
            for k, v in data.items()}


def signature_png(seed: int = 0) -> bytes:
    """A handwritten-looking signature (PNG, 400×150) for the household check's 农户签字."""
    import io
    import math

    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (400, 150), (255, 255, 255, 0))
    draw = ImageDraw.Draw(img)
    points = [(30 + x * 3.4, 75 + 35 * math.sin((x + seed) / 9) * math.cos(x / 23)) for x in range(100)]
    draw.line(points, fill=(20, 20, 60, 255), width=4, joint="curve")
    draw.line([(60, 40), (90, 115), (130, 50)], fill=(20, 20, 60, 255), width=4, joint="curve")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()

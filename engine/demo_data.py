"""Form data used by the demo cases, the tests and the benchmark (one place, so they agree)."""

HOUSEHOLD_CHECK = {
    "measures_implemented": True,
    "basic_needs_secured": True,
    "industry_employment": "家中两人在县城务工,种植柑橘 3 亩",
    "household_size": 4,
    "annual_income_per_capita": 12800,
    "income_spending": "年收入约 5.1 万元,支出稳定,无大额负债",
    "special_category": "无",
    "check_date": "2026-09-10",
    "household_signed": True,
}

VILLAGE_REVIEW = {
    "review_date": "2026-09-22",
    "attendees": 23,
    "review_result": "返贫风险已消除",
    "notice_start": "2026-09-23",
    "notice_end": "2026-09-29",
    "objections": "无异议",
}

TOWNSHIP_RECHECK = {"materials_complete": True, "recheck_date": "2026-10-08"}
DEPT_DECISION = {"sector_data_verified": True, "department_name": "蓬溪县乡村振兴局"}
COUNTY_ANNOUNCEMENT = {"announcement_number": "蓬乡振〔2026〕12号", "announcement_date": "2026-10-20",
                       "system_marked": True}
FOLLOW_UP_VISIT = {"visit_date": "2027-04-25", "new_risk_found": "否", "visit_notes": "收入稳定"}

# (username, data) for 村公示, 镇复核, 部门审定, 县级公告 after 入户核查
REVIEW_STEPS = [
    ("demo_village", VILLAGE_REVIEW),
    ("demo_township", TOWNSHIP_RECHECK),
    ("demo_dept", DEPT_DECISION),
    ("demo_county", COUNTY_ANNOUNCEMENT),
]

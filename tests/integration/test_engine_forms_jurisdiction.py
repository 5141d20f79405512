"""complete_task validates form data before anything changes; jurisdiction hides other regions' work."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from engine import demo_data as D
from engine.core.errors import NotFoundError, ValidationError
from engine.models import Case, CaseStatus, Subject

VILLAGE = "510921107001"  # 宝梵镇, demo_village
TOWNSHIP = "510921107000"  # 宝梵镇
OTHER_VILLAGE = "510921100001"  # 赤城镇, demo_other_village
OTHER_TOWNSHIP = "510921100000"  # 赤城镇


def _fingerprint(db, case_id: int):
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        tasks = [(r.id, r.status, r.action, r.data) for r in work.inbox.case_tasks(case_id)]
        audit = [e.id for e in work.inbox.case_history(case_id)]
        return (case.status, case.lock_version, case.state, tasks, audit)


def _complete(db, row_id: int, username: str, action: str = "approve", opinion: str = "同意", data=None):
    with db.uow() as work:
        return work.cases.complete_task(row_id, db.actor(username), action, opinion, data or {})


# ----------------------------------------------------------------------------- 12. form validation
BAD_HOUSEHOLD_CHECKS = {
    "missing_required": ({k: v for k, v in D.HOUSEHOLD_CHECK.items() if k != "industry_employment"},
                         {"industry_employment"}),
    "number_below_min": ({**D.HOUSEHOLD_CHECK, "household_size": 0}, {"household_size"}),
    "negative_income": ({**D.HOUSEHOLD_CHECK, "annual_income_per_capita": -1}, {"annual_income_per_capita"}),
    "bad_select_option": ({**D.HOUSEHOLD_CHECK, "special_category": "富裕户"}, {"special_category"}),
    "invalid_date": ({**D.HOUSEHOLD_CHECK, "check_date": "2026-02-30"}, {"check_date"}),
    "unchecked_required_checkbox": ({**D.HOUSEHOLD_CHECK, "household_signed": False}, {"household_signed"}),
    "bad_trigger_option": ({**D.HOUSEHOLD_CHECK, "trigger": "上级指定"}, {"trigger"}),
    "missing_pre_assessment_date": ({k: v for k, v in D.HOUSEHOLD_CHECK.items() if k != "pre_assessment_date"},
                                    {"pre_assessment_date"}),
    "several_at_once": ({**D.HOUSEHOLD_CHECK, "household_size": 0, "special_category": "x", "check_date": "昨天",
                         "income_spending": ""},
                        {"household_size", "special_category", "check_date", "income_spending"}),
    # no 启动方式 chosen: 预判日期 is hidden (asked only for 季度集中预判), so not required
    "empty": ({}, {"trigger", "measures_implemented", "basic_needs_secured",
                   "industry_employment", "household_size", "annual_income_per_capita", "income_spending",
                   "special_category", "check_date", "household_signed"}),
}


@pytest.mark.parametrize(("data", "fields"), list(BAD_HOUSEHOLD_CHECKS.values()), ids=list(BAD_HOUSEHOLD_CHECKS))
def test_invalid_form_data_is_refused_with_the_field_keys_and_nothing_changes(db, data, fields):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError) as info:
        _complete(db, row.id, "demo_village", data=data)
    assert set(info.value.errors) == fields
    assert _fingerprint(db, case_id) == before
    (still,) = db.open_tasks(case_id)
    assert still.id == row.id


def test_invalid_form_data_at_a_later_step_is_refused_too(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "village_review"
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError) as info:
        _complete(db, row.id, "demo_village",
                  data={**D.VILLAGE_REVIEW, "attendees": 0, "review_result": "不知道", "review_date": "2026-9-3"})
    assert set(info.value.errors) == {"attendees", "review_result", "review_date"}
    assert _fingerprint(db, case_id) == before


def test_the_notice_fields_that_left_village_review_are_dropped_not_stored(db):
    """民主评议 no longer records the 公示 dates or objections (the 村级公示 period is a timer and the
    objection an event): such keys are extra keys now."""
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    (row,) = db.open_tasks(case_id)
    _complete(db, row.id, "demo_village",
              data={**D.VILLAGE_REVIEW, "notice_start": "2026-09-23", "notice_end": "2026-09-29", "objections": "无异议"})
    with db.uow() as work:
        done = work.inbox.case_tasks(case_id)[1]
        assert (done.spec_name, done.data) == ("village_review", D.VILLAGE_REVIEW)


BAD_EXIT_NOTICES = {
    "empty": ({}, {"notice_delivered_date", "household_acknowledged", "system_marked_removed"}),
    "not_acknowledged": ({**D.EXIT_NOTICE, "household_acknowledged": False}, {"household_acknowledged"}),
    "not_marked_in_the_system": ({**D.EXIT_NOTICE, "system_marked_removed": False}, {"system_marked_removed"}),
    "invalid_date": ({**D.EXIT_NOTICE, "notice_delivered_date": "2026-13-01"}, {"notice_delivered_date"}),
}


@pytest.mark.parametrize(("data", "fields"), list(BAD_EXIT_NOTICES.values()), ids=list(BAD_EXIT_NOTICES))
def test_invalid_exit_notice_data_is_refused_and_the_case_does_not_exit(db, data, fields):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    for number, (username, step_data) in enumerate(D.REVIEW_STEPS):
        db.complete(case_id, username, data=step_data)
        if number in (0, 3):  # 村级公示 after 民主评议, 县级公告期 after 县级公告
            assert db.pass_notice() == 1
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "exit_notice"
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError) as info:
        _complete(db, row.id, "demo_village", data=data)
    assert set(info.value.errors) == fields
    assert _fingerprint(db, case_id) == before
    assert db.case(case_id).status == CaseStatus.running


def test_extra_keys_are_dropped_and_the_cleaned_values_are_stored(db):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    db.sign_if_asked(row.id, "demo_village")
    _complete(db, row.id, "demo_village",
              data={**D.HOUSEHOLD_CHECK, "household_size": "4", "case_id": 999, "__class__": "x"})
    with db.uow() as work:
        done = work.inbox.case_tasks(case_id)[0]
        assert done.data == D.HOUSEHOLD_CHECK
        assert work.inbox.case_history(case_id)[-1].data_diff == {"data": D.HOUSEHOLD_CHECK}


def test_an_opinion_longer_than_two_thousand_characters_is_refused(db):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    before = _fingerprint(db, case_id)
    with pytest.raises(ValidationError) as info:
        _complete(db, row.id, "demo_village", opinion="长" * 2001, data=D.HOUSEHOLD_CHECK)
    assert set(info.value.errors) == {"opinion"}
    assert _fingerprint(db, case_id) == before
    db.sign_if_asked(row.id, "demo_village")
    _complete(db, row.id, "demo_village", opinion="长" * 2000, data=D.HOUSEHOLD_CHECK)
    assert db.open_tasks(case_id)[0].spec_name == "village_review"


# ----------------------------------------------------------------------------- 13. jurisdiction
def _other_household(db) -> int:
    with db.uow() as work:
        return work.session.scalar(select(Subject.id).where(Subject.region_code == OTHER_VILLAGE))


@pytest.mark.parametrize("outsider", ["demo_other_village", "demo_other_township"])
def test_another_townships_users_cannot_see_or_complete_a_baofan_task(db, outsider):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    before = _fingerprint(db, case_id)
    with db.uow() as work:
        with pytest.raises(NotFoundError):
            work.cases.get_task(row.id, db.actor(outsider))
        with pytest.raises(NotFoundError):
            work.cases.get_case(case_id, db.actor(outsider))
    with pytest.raises(NotFoundError):
        _complete(db, row.id, outsider, data=D.HOUSEHOLD_CHECK)
    assert _fingerprint(db, case_id) == before


@pytest.mark.parametrize("outsider", ["demo_other_village", "demo_other_township"])
def test_another_townships_users_cannot_start_a_case_for_a_baofan_household(db, outsider):
    subject_id = db.household(username="demo_village")
    with pytest.raises(NotFoundError):
        with db.uow() as work:
            work.cases.start_case("monitoring_exit", subject_id, db.actor(outsider))
    with db.uow() as work:
        assert work.session.scalars(select(Case)).all() == []


def test_a_village_cadre_cannot_complete_the_township_recheck_of_their_own_case(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    assert db.pass_notice() == 1  # the 村级公示 period
    (row,) = db.open_tasks(case_id)
    assert (row.role_code, row.scope_code) == ("township_officer", TOWNSHIP)
    before = _fingerprint(db, case_id)
    with pytest.raises(NotFoundError):
        _complete(db, row.id, "demo_village", data=D.TOWNSHIP_RECHECK)
    with pytest.raises(NotFoundError):
        _complete(db, row.id, "demo_village", action="reject", opinion="我不同意")
    assert _fingerprint(db, case_id) == before
    # the case itself stays visible to the village that started it
    with db.uow() as work:
        assert work.cases.get_case(case_id, db.actor("demo_village")).id == case_id


def test_a_county_department_cannot_complete_a_township_task_in_its_county(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    assert db.pass_notice() == 1  # the 村级公示 period
    (row,) = db.open_tasks(case_id)
    with pytest.raises(NotFoundError):
        _complete(db, row.id, "demo_dept", data=D.TOWNSHIP_RECHECK)
    assert db.open_tasks(case_id)[0].id == row.id


def test_todo_lists_only_tasks_of_the_actors_role_and_scope(db):
    baofan = db.start_case()
    chicheng = db.start_case(username="demo_other_village", subject_id=_other_household(db))

    def todo(username: str) -> set[tuple[int, str]]:
        with db.uow() as work:
            return {(r.case_id, r.spec_name) for r in work.inbox.todo(db.actor(username))}

    assert todo("demo_village") == {(baofan, "household_check")}
    assert todo("demo_other_village") == {(chicheng, "household_check")}
    for username in ("demo_township", "demo_other_township", "demo_dept", "demo_county", "demo_admin"):
        assert todo(username) == set()

    db.complete(baofan, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(baofan, "demo_village", data=D.VILLAGE_REVIEW)
    db.complete(chicheng, "demo_other_village", data=D.HOUSEHOLD_CHECK)
    db.complete(chicheng, "demo_other_village", data=D.VILLAGE_REVIEW)
    # each village issues its 村级公示; during the period nobody has anything to do on either case
    assert todo("demo_village") == {(baofan, "issue_village_notice")}
    assert todo("demo_other_village") == {(chicheng, "issue_village_notice")}
    assert len(db.issue_notices()) == 2
    for username in ("demo_village", "demo_other_village", "demo_township", "demo_other_township", "demo_dept"):
        assert todo(username) == set()
    assert db.pass_notice() == 2  # both periods run out in the same tick

    assert todo("demo_township") == {(baofan, "township_recheck")}
    assert todo("demo_other_township") == {(chicheng, "township_recheck")}
    assert todo("demo_village") == set()
    assert todo("demo_other_village") == set()
    assert todo("demo_dept") == set()

    db.complete(baofan, "demo_township", data=D.TOWNSHIP_RECHECK)
    db.complete(chicheng, "demo_other_township", data=D.TOWNSHIP_RECHECK)
    # both townships are in 蓬溪县: the county department sees both, each township neither
    assert todo("demo_dept") == {(baofan, "dept_decision"), (chicheng, "dept_decision")}
    assert todo("demo_township") == set()
    assert todo("demo_other_township") == set()
    assert todo("demo_county") == set()

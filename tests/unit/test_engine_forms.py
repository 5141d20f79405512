"""Form helpers: resident ID check digits, masking, and schema validation without a database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import demo_data as D
from engine.core.errors import DefinitionError, ValidationError
from engine.procedures.forms import mask_id, parse_schema, valid_cn_id, validate

FORMS = Path(__file__).resolve().parents[2] / "forms" / "monitoring_exit"


def _check_digit(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


@pytest.mark.parametrize("number", [
    "510921196503120011",  # demo household 张德明
    "510921197208230028",
    "11010519491231002X",  # the GB 11643 example, check digit X
])
def test_valid_cn_id_accepts_numbers_with_a_correct_check_digit(number):
    assert _check_digit(number[:17]) == number[17]  # independent computation agrees
    assert valid_cn_id(number)


@pytest.mark.parametrize("number", [
    "510921196503120012",  # check digit off by one
    "510921196503120010",
    "110105194912310021",  # should be X
    "11010519491231002x",  # lower-case x is not the canonical form
    "51092119650312001",  # 17 digits
    "5109211965031200111",  # 19 digits
    "51092119650312001A",
    "",
])
def test_valid_cn_id_refuses_wrong_check_digits_and_shapes(number):
    assert not valid_cn_id(number)


def test_valid_cn_id_refuses_an_impossible_birth_date_even_with_a_matching_check_digit():
    first17 = "51092119650230001"  # 30 February
    assert not valid_cn_id(first17 + _check_digit(first17))


def test_mask_id_keeps_the_first_six_and_last_four_characters():
    assert mask_id("510921196503120011") == "510921********0011"
    assert mask_id("11010519491231002X") == "110105********002X"
    assert mask_id(None) == ""
    assert mask_id("") == ""
    assert mask_id("12345") == "*****"
    assert "19650312" not in mask_id("510921196503120011")


def _schema(name: str) -> dict:
    return parse_schema((FORMS / f"{name}.json").read_text(encoding="utf-8"))


def test_validate_returns_cleaned_values_of_the_schema_fields_only():
    cleaned = validate(_schema("household_check"), {**D.HOUSEHOLD_CHECK, "is_admin": True, "household_size": "4"})
    assert cleaned == D.HOUSEHOLD_CHECK  # "4" became 4, unknown key dropped


@pytest.mark.parametrize(("field", "value"), [
    ("industry_employment", ""),  # required
    ("household_size", 0),  # below min 1
    ("household_size", 31),  # above max 30
    ("household_size", "四"),  # not a number
    ("household_size", "nan"),
    ("special_category", "富裕"),  # not an option
    ("check_date", "2026-13-45"),  # not a date
    ("check_date", "明天"),
    ("household_signed", False),  # required checkbox
    ("trigger", "上级指定"),  # 农户提出 or 季度集中预判 only
    ("trigger", ""),
    ("pre_assessment_date", "2026-02-30"),
])
def test_validate_names_the_failing_field(field, value):
    with pytest.raises(ValidationError) as info:
        validate(_schema("household_check"), {**D.HOUSEHOLD_CHECK, field: value})
    assert list(info.value.errors) == [field]


@pytest.mark.parametrize(("form", "data"), [
    ("household_check", D.HOUSEHOLD_CHECK),
    ("village_review", D.VILLAGE_REVIEW),
    ("township_recheck", D.TOWNSHIP_RECHECK),
    ("dept_decision", D.DEPT_DECISION),
    ("county_announcement", D.COUNTY_ANNOUNCEMENT),
    ("exit_notice", D.EXIT_NOTICE),
    ("follow_up_visit", D.FOLLOW_UP_VISIT),
])
def test_the_demo_data_of_every_exit_step_is_exactly_what_its_form_accepts(form, data):
    assert validate(_schema(form), data) == data


def test_village_review_no_longer_records_the_notice_and_county_announcement_no_system_mark():
    """The 村级公示 is a timer period and its objection an event; marking the system moved to 退出告知."""
    review = validate(_schema("village_review"), {**D.VILLAGE_REVIEW, "notice_start": "2026-09-23",
                                                  "notice_end": "2026-09-29", "objections": "无异议"})
    assert review == D.VILLAGE_REVIEW
    announcement = validate(_schema("county_announcement"), {**D.COUNTY_ANNOUNCEMENT, "system_marked": True})
    assert announcement == D.COUNTY_ANNOUNCEMENT
    with pytest.raises(ValidationError) as info:
        validate(_schema("exit_notice"), {**D.EXIT_NOTICE, "system_marked_removed": False})
    assert list(info.value.errors) == ["system_marked_removed"]


def test_a_schema_without_components_or_with_a_bad_key_is_refused():
    with pytest.raises(DefinitionError):
        parse_schema(json.dumps({"type": "default"}))
    with pytest.raises(DefinitionError):
        parse_schema(json.dumps({"components": [{"type": "textfield", "key": "a-b; drop"}]}))
    with pytest.raises(DefinitionError):
        parse_schema("{not json")


def test_a_date_may_not_precede_the_date_it_names_in_this_form_or_an_earlier_step():
    from engine.core.errors import ValidationError as FormError
    from engine.procedures.forms import validate as validate_form

    schema = {"components": [
        {"type": "datetime", "key": "start_date", "label": "开工日期", "subtype": "date"},
        {"type": "datetime", "key": "completion_date", "label": "竣工日期", "subtype": "date",
         "properties": {"notBefore": "start_date"}},
        {"type": "datetime", "key": "acceptance_date", "label": "验收日期", "subtype": "date",
         "properties": {"notBefore": "approval_date"}},
    ]}
    ok = validate_form(schema, {"start_date": "2026-05-01", "completion_date": "2026-05-01",
                                "acceptance_date": "2026-06-01"}, {"approval_date": "2026-04-01"})
    assert ok["completion_date"] == "2026-05-01"
    with pytest.raises(FormError) as info:
        validate_form(schema, {"start_date": "2026-05-02", "completion_date": "2026-05-01",
                               "acceptance_date": "2026-03-01"}, {"approval_date": "2026-04-01"})
    assert info.value.errors == {"completion_date": "竣工日期: 不能早于 2026-05-02",
                                 "acceptance_date": "验收日期: 不能早于 2026-04-01"}

"""Form rules stated in the form JSON: 危房改造's 户主姓名 and 户主身份证号 state the case's subject — prefilled
from the registry, and a submission naming someone else is refused; implausible dates are refused; the
browser gets the server's maxlength."""

from __future__ import annotations

import pytest

from engine.core.errors import ValidationError

APPLICATION = {
    "head_name": "张德明", "head_id_number": "510921196503120011", "phone": "13800001111",
    "household_size": 4, "members": "张德明(户主)、李兰(配偶)", "household_category": "低保",
    "house_condition": "D", "only_house": True, "voluntary": True, "application_date": "2026-09-01",
    "photos": "PX-WG-2026-001"}


def _application(db):
    case_id = db.start_case("demo_village", procedure="housing_renovation", subject_id=db.household("张德明"))
    (row,) = db.open_tasks(case_id)
    return case_id, row


@pytest.mark.parametrize(("field", "value", "words"), [
    ("head_name", "李四", "张德明"),
    ("head_id_number", "110101199003074514", "户主身份证号与本案对象登记的身份证号"),
])
def test_a_submission_naming_someone_else_is_refused_and_changes_nothing(db, field, value, words):
    case_id, row = _application(db)
    with pytest.raises(ValidationError) as refused:
        db.complete(case_id, "demo_village", data={**APPLICATION, field: value})
    assert words in refused.value.errors[field]
    assert [t.id for t in db.open_tasks(case_id)] == [row.id]  # nothing moved


def test_the_subjects_identity_is_prefilled_and_accepted(db, client_for):
    case_id, row = _application(db)
    data = client_for("demo_village").get(f"/api/v1/tasks/{row.id}").get_json()["data"]
    assert data["head_name"] == "张德明" and data["head_id_number"] == "510921196503120011"
    db.complete(case_id, "demo_village", data=APPLICATION)
    assert db.open_tasks(case_id)[0].spec_name == "village_review"


@pytest.mark.parametrize("day", ["1900-01-01", "9999-12-31"])
def test_implausible_dates_are_refused(db, day):
    case_id, _row = _application(db)
    with pytest.raises(ValidationError) as refused:
        db.complete(case_id, "demo_village", data={**APPLICATION, "application_date": day})
    assert "日期不合理" in refused.value.errors["application_date"]


def test_the_page_carries_the_servers_limits(db, client_for):
    _case_id, row = _application(db)
    page = client_for("demo_village").get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'name="head_name" value="张德明" maxlength="30"' in page
    assert 'min="2000-01-01" max="2099-12-31"' in page
    assert "须与本案对象的登记信息一致" in page

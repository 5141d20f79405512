"""The task page shows the case at a glance: every earlier step, by label and in words, with its opinion,
its attachments, the household's signature and the notice it issued — on the page and in GET /api/v1/tasks/{id}.
A reviewer outside the household's village sees ID numbers masked there too."""

from __future__ import annotations

import pytest

from engine import demo_data as D
from engine.models import TaskStatus


def _township_task(db, at_township_recheck):
    case_id = at_township_recheck.value  # 入户核查 and 民主评议 approved, 出具村级公示 issued, the 公示 period run out
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "township_recheck"
    return case_id, row


@pytest.mark.db_snapshot("at_township_recheck")
def test_api_task_lists_the_earlier_steps_in_order_with_labels_and_words(db, at_township_recheck, client_for):
    case_id, row = _township_task(db, at_township_recheck)
    body = client_for("demo_township").get(f"/api/v1/tasks/{row.id}").get_json()

    steps = body["earlier_steps"]
    assert [s["title"] for s in steps] == ["入户核查", "民主评议", "出具村级公示"]
    check = steps[0]
    assert check["by"] == "宝梵镇村干部(演示)" and check["action_label"] == "通过"
    fields = {f["label"]: f["value"] for f in check["fields"]}
    assert fields["家庭人口(人)"] == str(D.HOUSEHOLD_CHECK["household_size"])
    assert fields["启动方式"] == "季度集中预判"
    assert "是" in {fields[k] for k in fields if "一查" in k}  # a checkbox in words, not True
    assert not any(f["key"] == "decision" for f in check["fields"])  # only form fields, no engine keys
    assert check["signature"] is not None  # the household signed 入户核查 on the screen
    assert steps[2]["notice_serial"]  # the 村级公示 the village issued
    assert all(s["task_id"] != row.id for s in steps)


@pytest.mark.db_snapshot("at_township_recheck")
def test_task_page_shows_the_earlier_steps_beside_the_form(db, at_township_recheck, client_for):
    case_id, row = _township_task(db, at_township_recheck)
    page = client_for("demo_township").get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'data-testid="case-at-a-glance"' in page
    assert page.count('data-testid="step-record"') == 3
    assert "家庭人口(人)" in page and "民主评议" in page
    assert 'data-testid="step-signature"' in page and 'data-testid="step-notice"' in page
    assert 'name="action" value="approve"' in page  # the step's own form and actions are on the same page


def test_id_numbers_are_masked_for_readers_outside_the_village(db, client_for):
    case_id = db.start_case("demo_village", procedure="housing_renovation", subject_id=db.household("张德明"))
    data = {"head_name": "张德明", "head_id_number": "510921196503120011", "phone": "13800001111",
            "household_size": 4, "members": "张德明(户主)、李兰(配偶)", "household_category": "低保",
            "house_condition": "D", "only_house": True, "voluntary": True, "application_date": "2026-09-01",
            "photos": "PX-WG-2026-001"}
    db.complete(case_id, "demo_village", data=data)
    (review,) = db.open_tasks(case_id)
    village = client_for("demo_village").get(f"/api/v1/tasks/{review.id}").get_json()
    (application,) = village["earlier_steps"]
    values = {f["label"]: f["value"] for f in application["fields"]}
    assert values["户主身份证号"] == "510921196503120011"  # the household's own village sees it in full
    assert values["住房现状(住房安全动态监测结果)"] == "D级危房(整体危险)"  # the option's label, not "D"

    db.complete(case_id, "demo_village", data={
        "review_date": "2026-09-01", "attendees": 21, "votes_for": 20, "review_opinion": "同意纳入",
        "notice_start": "2026-09-04", "notice_place": "村委会公示栏", "complaint_phone": "0825-5411234"})
    db.pass_notice()
    (audit,) = [t for t in db.open_tasks(case_id) if t.status == TaskStatus.open]
    township = client_for("demo_township").get(f"/api/v1/tasks/{audit.id}").get_json()
    values = {f["label"]: f["value"] for f in township["earlier_steps"][0]["fields"]}
    assert values["户主身份证号"] != "510921196503120011" and values["户主身份证号"].startswith("5109")

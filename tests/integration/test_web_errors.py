"""Refused submissions: 409 for a task already done, 422 for bad data or a missing opinion.

Every refusal must leave the database as it was: same audit events, case state and task rows.
"""

from __future__ import annotations

import pytest

from engine import demo_data as D


def _complete(client, task_id: int, action: str = "approve", opinion: str | None = "同意", data=None, **extra):
    return client.post(f"/api/v1/tasks/{task_id}/complete",
                       json={"action": action, "opinion": opinion, "data": data or {}, **extra})


def test_completing_an_already_completed_task_is_a_409_with_a_clear_message_and_changes_nothing(
        db, client_for, exit_case, audit_count, snapshot):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    db.sign_if_asked(row.id, "demo_village")
    assert _complete(village, row.id, data=D.HOUSEHOLD_CHECK).status_code == 200

    events, before = audit_count(), snapshot()
    again = _complete(village, row.id, data={**D.HOUSEHOLD_CHECK, "household_size": 9})
    assert again.status_code == 409
    assert again.get_json() == {"error": "操作冲突", "message": "该任务已被处理"}
    assert audit_count() == events
    assert snapshot() == before
    assert village.get(f"/api/v1/cases/{case_id}").get_json()["data"]["household_size"] == 4


def test_submitting_the_html_form_of_a_task_completed_meanwhile_is_a_409_page(
        db, client_for, exit_case, csrf_token, snapshot):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    token = csrf_token(village, f"/tasks/{row.id}")  # the form is open in the browser ...
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)  # ... when it is completed elsewhere
    before = snapshot()
    page = village.post(f"/tasks/{row.id}", data={"csrf_token": token, "action": "approve", "opinion": "同意",
                                                  **{k: str(v).lower() if isinstance(v, bool) else str(v)
                                                     for k, v in D.HOUSEHOLD_CHECK.items()}})
    assert page.status_code == 409
    assert "该任务已被处理" in page.get_data(as_text=True)
    assert snapshot() == before


BAD_HOUSEHOLD_CHECKS = [
    pytest.param({k: v for k, v in D.HOUSEHOLD_CHECK.items() if k != "industry_employment"},
                 {"industry_employment": "三查:家庭产业就业情况: 必填"}, id="missing-required-field"),
    pytest.param({**D.HOUSEHOLD_CHECK, "household_size": "四口人"},
                 {"household_size": "家庭人口(人): 必须是数字"}, id="not-a-number"),
    pytest.param({**D.HOUSEHOLD_CHECK, "household_size": 0},
                 {"household_size": "家庭人口(人): 不能小于 1"}, id="number-below-min"),
    pytest.param({**D.HOUSEHOLD_CHECK, "special_category": "五保"},
                 {"special_category": "特殊类别(低保、特困、残疾人家庭缓退): 无效选项"}, id="option-not-offered"),
    pytest.param({**D.HOUSEHOLD_CHECK, "household_signed": False},
                 {"household_signed": "核查结果已经监测户签字认可: 必须勾选"}, id="required-checkbox-unticked"),
    pytest.param({**D.HOUSEHOLD_CHECK, "check_date": "2026/09/10", "annual_income_per_capita": "lots"},
                 {"check_date": "核查日期: 日期格式应为 YYYY-MM-DD",
                  "annual_income_per_capita": "家庭年人均纯收入(元): 必须是数字"}, id="two-bad-fields"),
]


@pytest.mark.parametrize("data, errors", BAD_HOUSEHOLD_CHECKS)
def test_bad_form_data_is_a_422_with_errors_keyed_by_field_and_changes_nothing(
        db, client_for, exit_case, snapshot, data, errors):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    before = snapshot()
    refused = _complete(client_for("demo_village"), row.id, data=data)
    assert refused.status_code == 422
    body = refused.get_json()
    assert body["errors"] == errors
    assert body["message"] == "表单填写有误"
    assert snapshot() == before
    assert [t.id for t in db.open_tasks(case_id)] == [row.id]


@pytest.mark.parametrize("opinion", [None, "", "   \n "], ids=["no-opinion", "empty", "blank"])
@pytest.mark.parametrize("depth, username, action", [
    (2, "demo_township", "reject"),
    (2, "demo_township", "return"),
    (1, "demo_village", "return"),
    (4, "demo_county", "reject"),
], ids=["township-reject", "township-return", "village-return", "county-reject"])
@pytest.mark.db_snapshot("case_at_depth")
def test_reject_or_return_without_an_opinion_is_a_422_on_the_opinion_and_changes_nothing(
        db, client_for, case_at_depth, snapshot, depth, username, action, opinion):
    case_id = case_at_depth.value
    (row,) = db.open_tasks(case_id)
    before = snapshot()
    refused = _complete(client_for(username), row.id, action=action, opinion=opinion)
    assert refused.status_code == 422
    assert set(refused.get_json()["errors"]) == {"opinion"}
    assert snapshot() == before


@pytest.mark.db_snapshot("at_township_recheck")
def test_reject_with_an_opinion_ends_the_case_as_not_passed(db, client_for, at_township_recheck):
    case_id = at_township_recheck.value
    (row,) = db.open_tasks(case_id)
    done = _complete(client_for("demo_township"), row.id, action="reject", opinion="公示材料缺少签字")
    assert done.status_code == 200
    body = done.get_json()
    assert (body["status"], body["outcome_reason"], body["current_steps"]) == ("rejected", "公示材料缺少签字", [])


@pytest.mark.db_snapshot("at_township_recheck")
def test_return_with_an_opinion_reopens_the_named_earlier_step(db, client_for, at_township_recheck):
    case_id = at_township_recheck.value
    (row,) = db.open_tasks(case_id)
    township = client_for("demo_township")
    targets = township.get(f"/api/v1/tasks/{row.id}").get_json()["return_targets"]
    assert targets == [{"step_id": "village_review", "step": "民主评议"},
                       {"step_id": "household_check", "step": "入户核查"}]
    done = _complete(township, row.id, action="return", opinion="请补充入户核查材料", return_to="household_check")
    assert done.status_code == 200
    assert [s["step_id"] for s in done.get_json()["current_steps"]] == ["household_check"]
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["household_check"]


def test_an_action_the_step_does_not_offer_is_a_422_on_the_action(db, client_for, exit_case, snapshot):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    before = snapshot()
    refused = _complete(client_for("demo_village"), row.id, action="reject", opinion="不符合")
    assert refused.status_code == 422
    assert set(refused.get_json()["errors"]) == {"action"}
    assert snapshot() == before


@pytest.mark.parametrize("payload, field", [
    ({"action": "approve", "data": ["not", "an", "object"]}, "data"),
    (["a", "list"], "_"),
], ids=["data-not-an-object", "body-not-an-object"])
def test_a_malformed_json_body_is_a_422_and_changes_nothing(db, client_for, exit_case, snapshot, payload, field):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    before = snapshot()
    refused = client_for("demo_village").post(f"/api/v1/tasks/{row.id}/complete", json=payload)
    assert refused.status_code == 422
    assert field in refused.get_json()["errors"]
    assert snapshot() == before


def test_starting_a_case_with_a_region_that_is_not_the_households_is_a_422_and_creates_nothing(
        db, client_for, snapshot):
    before = snapshot()
    refused = client_for("demo_village").post("/api/v1/cases", json={
        "procedure": "monitoring_exit", "subject": {"id": db.household("张德明")}, "region": "510921107002"})
    assert refused.status_code == 422
    assert set(refused.get_json()["errors"]) == {"region"}
    assert snapshot() == before


@pytest.mark.parametrize("payload, status", [
    ({"procedure": "monitoring_exit", "subject": {"id": "1"}}, 422),
    ({"procedure": "monitoring_exit"}, 422),
    ({"procedure": "no_such_procedure", "subject": {"id": 1}}, 404),
    ({"procedure": "monitoring_exit", "subject": {"id": 999999}}, 404),
], ids=["subject-id-not-int", "no-subject", "unknown-procedure", "unknown-subject"])
def test_starting_a_case_with_a_bad_procedure_or_subject_is_refused_and_creates_nothing(
        client_for, snapshot, payload, status):
    before = snapshot()
    refused = client_for("demo_village").post("/api/v1/cases", json=payload)
    assert refused.status_code == status
    assert refused.get_json()["message"]
    assert snapshot() == before


def test_an_unknown_inbox_view_is_a_422(client_for):
    refused = client_for("demo_village").get("/api/v1/tasks?view=everything")
    assert refused.status_code == 422
    assert set(refused.get_json()["errors"]) == {"view"}

"""The approver's workbench, the rest of issue 13 item 4 and the small items, on the engine with the tests' clock:
补助兑付 bounded by the approved subsidy (a DMN output, checked inside the mutation's act and shown beside the
field), 预判日期 asked only for 季度集中预判 (form-js ``conditional.hide``), check dates not after today and not
before the case started (``notBefore: caseStart``), 危房改造 竣工/验收/兑付 dates likewise, 公告文号 asked once,
退出告知 refused until its 退出告知书 is issued (``requiresNotice``), a 撤回 step prefilled with what was
submitted, and a history that names timers and people."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from engine import demo_data as D
from engine.core import settings
from engine.core.errors import ValidationError
from engine.procedures.expressions import CHINA_TZ as CHINA
from tests.integration.test_procedure_housing_renovation import SUBSIDY_PAYMENT, _do, _open, _run_to, _start


# ----------------------------------------------------------------------------- 补助兑付 ≤ 核定补助
def test_a_payment_above_the_approved_subsidy_is_refused_naming_both_amounts_and_nothing_changes(db, client_for):
    case_id = _start(db)
    _run_to(db, case_id, "subsidy_payment")  # grade D: 拆除重建, the decision table approves 35,000 元
    with pytest.raises(ValidationError) as refused:
        _do(db, case_id, "subsidy_payment", data={**SUBSIDY_PAYMENT, "amount_paid": 40000})
    assert refused.value.errors == {"amount_paid": "兑付金额(元): 填写的 40,000 元超过核定补助 35,000 元,不能超过核定补助"}
    assert _open(db, case_id) == ["subsidy_payment"]  # nothing moved
    _do(db, case_id, "subsidy_payment", data={**SUBSIDY_PAYMENT, "amount_paid": 35000})
    assert db.case(case_id).status.value == "completed"


def test_the_payment_step_shows_the_approved_subsidy_beside_the_amount_on_the_page_and_the_api(db, client_for):
    case_id = _start(db)
    _run_to(db, case_id, "subsidy_payment")
    (row,) = [r for r in db.open_tasks(case_id) if r.spec_name == "subsidy_payment"]
    dept = client_for("demo_dept")
    page = dept.get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'max="35000"' in page and 'max="1000000"' not in page
    assert '<div class="field-hint" data-testid="field-bound">核定补助 35,000 元(不能超过)</div>' in page
    bounds = dept.get(f"/api/v1/tasks/{row.id}").get_json()["bounds"]
    assert bounds == {"amount_paid": {"label": "核定补助", "value": 35000, "text": "核定补助 35,000 元"}}
    refused = dept.post(f"/api/v1/tasks/{row.id}/complete", json={
        "action": "approve", "opinion": "同意", "data": {**SUBSIDY_PAYMENT, "amount_paid": 35000.5}})
    assert refused.status_code == 422
    assert "35,000.5 元超过核定补助 35,000 元" in refused.get_json()["errors"]["amount_paid"]


# ----------------------------------------------------------------------------- 预判日期 only for 季度集中预判
def test_the_pre_assessment_date_is_asked_only_when_the_exit_starts_from_the_quarterly_assessment(db, client_for):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    without = {k: v for k, v in D.HOUSEHOLD_CHECK.items() if k != "pre_assessment_date"}
    with pytest.raises(ValidationError) as refused:
        db.complete(case_id, "demo_village", data=without)  # 季度集中预判: required
    assert set(refused.value.errors) == {"pre_assessment_date"}
    page = client_for("demo_village").get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'data-field="pre_assessment_date" data-hide-when="=trigger != &#34;季度集中预判&#34;"' in page
    # 农户提出: not asked, and a date sent anyway is not kept
    db.complete(case_id, "demo_village", data={**D.HOUSEHOLD_CHECK, "trigger": "农户提出"})
    with db.uow() as work:
        done = next(t for t in work.inbox.case_tasks(case_id) if t.spec_name == "household_check")
        assert done.data["trigger"] == "农户提出" and "pre_assessment_date" not in done.data


def test_a_condition_the_server_cannot_read_is_refused_when_the_form_is_parsed():
    from engine.core.errors import DefinitionError
    from engine.procedures.forms import parse_schema

    schema = {"components": [{"type": "textfield", "key": "x", "label": "X", "conditional": {"hide": "=a > 3"}}]}
    with pytest.raises(DefinitionError, match="显示条件"):
        parse_schema(json.dumps(schema))


# ----------------------------------------------------------------------------- check dates not after today
def test_a_check_date_after_today_is_refused_against_the_units_clock_and_accepted_once_it_has_come(db, client_for):
    case_id = db.start_case()
    (row,) = db.open_tasks(case_id)
    today = db.clock.now().date().isoformat()  # 2026-09-01 (09:00 in China), the day the case started
    page = client_for("demo_village").get(f"/tasks/{row.id}").get_data(as_text=True)
    assert f'name="check_date" value="" min="{today}" max="{today}"' in page
    with pytest.raises(ValidationError) as refused:
        db.complete(case_id, "demo_village", data={**D.HOUSEHOLD_CHECK, "check_date": "2026-09-02"})
    assert refused.value.errors == {"check_date": "核查日期: 不能晚于今天(2026-09-01),请填写实际日期"}
    db.clock.advance(timedelta(days=1))
    db.complete(case_id, "demo_village", data={**D.HOUSEHOLD_CHECK, "check_date": "2026-09-02"})
    assert db.open_tasks(case_id)[0].spec_name == "village_review"


def test_the_demo_data_dates_are_the_day_the_tests_start_their_cases_and_the_pre_assessment_before_it():
    from tests.conftest import START

    dated = {**D.HOUSEHOLD_CHECK, **D.VILLAGE_REVIEW, **D.TOWNSHIP_RECHECK, **D.COUNTY_ANNOUNCEMENT, **D.EXIT_NOTICE}
    day = START.astimezone(CHINA).date().isoformat()
    assert {k: v for k, v in dated.items() if k.endswith("_date") and k != "pre_assessment_date"} == {
        "check_date": day, "review_date": day, "recheck_date": day, "announcement_date": day,
        "notice_delivered_date": day}
    assert D.HOUSEHOLD_CHECK["pre_assessment_date"] < day  # the 预判 that led to the case
    moved = D.on_day(D.HOUSEHOLD_CHECK, date(2026, 11, 23))  # the demo's own days
    assert (moved["check_date"], moved["pre_assessment_date"]) == ("2026-11-23", D.HOUSEHOLD_CHECK["pre_assessment_date"])


# ----------------------------------------------------------------------------- dates not before the case started
def test_a_check_date_before_the_case_started_is_refused_naming_the_field_and_the_day_and_nothing_changes(
        db, client_for, snapshot):
    case_id = db.start_case()
    db.clock.advance(timedelta(days=3))
    db.sign_if_asked(db.open_tasks(case_id)[0].id, "demo_village")  # the household signs first
    before = snapshot()
    with pytest.raises(ValidationError) as refused:
        db.complete(case_id, "demo_village", data={**D.HOUSEHOLD_CHECK, "check_date": "2026-08-31"}, sign=False)
    assert refused.value.errors == {"check_date": "「核查日期」不能早于本案发起日期 2026-09-01"}
    assert snapshot() == before
    # the 预判 that led to the case may lie before it
    db.complete(case_id, "demo_village", data={**D.HOUSEHOLD_CHECK, "pre_assessment_date": "2026-06-15"}, sign=False)
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "village_review"
    village = client_for("demo_village")
    assert village.get(f"/api/v1/tasks/{row.id}").get_json()["date_limits"] == {
        "review_date": {"min": "2026-09-01", "max": "2026-09-04"}}
    refused = village.post(f"/api/v1/tasks/{row.id}/complete", json={
        "action": "approve", "opinion": "同意", "data": {**D.VILLAGE_REVIEW, "review_date": "2026-08-30"}})
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {"review_date": "「民主评议会日期」不能早于本案发起日期 2026-09-01"}
    page = village.get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'name="review_date" value="" min="2026-09-01" max="2026-09-04"' in page


def test_every_shipped_check_visit_and_decision_date_is_bounded_and_the_dates_that_may_precede_the_case_are_not():
    from engine.procedures import form_rules
    from engine.procedures.forms import input_components, parse_schema

    bounded, free = set(), set()
    for path in sorted(settings.FORMS_DIR.glob("*/*.json")):
        for comp in input_components(parse_schema(path.read_text("utf-8"))):
            if comp["type"] == "datetime":
                name = f"{path.parent.name}/{path.stem}.{comp['key']}"
                (bounded if form_rules.not_before_start(comp) else free).add(name)
    assert {"monitoring_exit/household_check.check_date", "monitoring_exit/village_review.review_date",
            "monitoring_exit/township_recheck.recheck_date", "monitoring_exit/county_announcement.announcement_date",
            "monitoring_exit/exit_notice.notice_delivered_date", "monitoring_exit/follow_up_visit.visit_date",
            "monitoring_identification/household_check.check_date", "monitoring_identification/monthly_visit.visit_date",
            "housing_renovation/village_review.review_date", "housing_renovation/county_approval.approval_date",
            "housing_renovation/completion.completion_date", "housing_renovation/acceptance.acceptance_date",
            "housing_renovation/subsidy_payment.payment_date"} <= bounded
    # a 预判 that led to the case, a risk found before it, an application on paper, an earlier safety appraisal
    assert {"monitoring_exit/household_check.pre_assessment_date", "monitoring_identification/risk_report.risk_found_date",
            "housing_renovation/application.application_date", "housing_renovation/township_audit.appraisal_date"} <= free


@pytest.mark.parametrize(("step", "key", "label"), [
    ("completion", "completion_date", "竣工日期"), ("acceptance", "acceptance_date", "验收日期"),
    ("subsidy_payment", "payment_date", "兑付日期")])
def test_housing_completion_acceptance_and_payment_dates_are_neither_after_today_nor_before_the_start(
        db, step, key, label):
    from tests.integration.test_procedure_housing_renovation import STEP

    case_id = _start(db)
    _run_to(db, case_id, step)
    today = db.clock.now().astimezone(CHINA).date()
    data = STEP[step][5]
    with pytest.raises(ValidationError) as refused:
        _do(db, case_id, step, data={**data, key: (today + timedelta(days=1)).isoformat()})
    assert refused.value.errors == {key: f"{label}: 不能晚于今天({today.isoformat()}),请填写实际日期"}
    with pytest.raises(ValidationError) as refused:
        _do(db, case_id, step, data={**data, key: "2026-08-31"})
    assert refused.value.errors == {key: f"「{label}」不能早于本案发起日期 2026-09-01"}
    assert step in _open(db, case_id)
    _do(db, case_id, step, data={**data, key: today.isoformat()})
    assert step not in _open(db, case_id)


# ----------------------------------------------------------------------------- 公告文号 asked once
def test_the_announcement_number_is_asked_once_on_the_county_notice_not_on_the_step_before():
    form = json.loads((settings.FORMS_DIR / "monitoring_exit" / "county_announcement.json").read_text("utf-8"))
    assert [c.get("key") for c in form["components"] if c.get("key")] == ["announcement_date"]
    kinds = json.loads((settings.WORKFLOWS_DIR / "monitoring_exit" / "notices" / "notices.json").read_text("utf-8"))
    (county,) = [k for k in kinds["kinds"] if k["code"] == "county_announcement"]
    (number,) = [f for f in county["fields"] if f["key"] == "document_number"]
    assert (number["label"], number["required"]) == ("公告文号", True)


# ----------------------------------------------------------------------------- 撤回 prefills the form
def test_a_withdrawn_step_opens_again_with_what_was_submitted(db, client_for):
    case_id = db.start_case()
    submitted = {**D.HOUSEHOLD_CHECK, "industry_employment": "在县城务工,另养殖生猪 12 头"}
    db.complete(case_id, "demo_village", data=submitted)
    with db.uow() as work:
        work.cases.withdraw(case_id, db.actor("demo_village"), "核查情况需补充")
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "household_check"
    with db.uow() as work:
        _schema, data = work.cases.task_form(row)
    assert data == submitted
    page = client_for("demo_village").get(f"/tasks/{row.id}").get_data(as_text=True)
    assert "在县城务工,另养殖生猪 12 头" in page


# ----------------------------------------------------------------------------- the history names timers and people
def test_the_case_history_names_the_timer_that_fired_and_the_people_a_copy_went_to(db, client_for):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    db.issue_notices(case_id)
    assert db.pass_notice(case_id=case_id) == 1
    with db.uow() as work:
        work.operations.cc(case_id, db.actor("demo_village"), ["demo_township"], "请知悉")
    page = client_for("demo_village").get(f"/cases/{case_id}").get_data(as_text=True)
    history = page.split('data-testid="history"', 1)[1]
    assert '<strong>定时触发</strong> <span data-testid="history-note">「村级公示期满」</span>' in history
    assert '<span data-testid="history-note">抄送给 宝梵镇乡村振兴办(演示)</span>' in history
    assert "demo_township" not in history


# ----------------------------------------------------------------------------- 退出告知书 at 退出告知, by the village
@pytest.fixture
def at_exit_notice(snapshot_db):
    """The database with 刘桂芳's exit case at 退出告知 (two signed notices on the way), built once per session."""
    from tests.integration.notices_support import exit_notice_case

    return snapshot_db(exit_notice_case)


@pytest.mark.db_snapshot("at_exit_notice")
def test_the_exit_notice_step_prompts_the_village_to_issue_the_notice_and_then_shows_it(db, at_exit_notice,
                                                                                        client_for, csrf_token):
    case_id = at_exit_notice.value
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.role_code) == ("exit_notice", "village_cadre")
    village = client_for("demo_village")
    page = village.get(f"/tasks/{row.id}").get_data(as_text=True)
    prompt = page.split('data-testid="step-notice-prompt"', 1)[1].split("</div>", 1)[0]
    assert "本步骤须送达退出告知书:请先出具" in prompt
    link = f"/notices/monitoring_exit/exit_notice?case={case_id}"
    assert f'href="{link}" data-testid="step-notice-link">出具退出告知书</a>' in prompt
    # the village issues it (the township no longer may: the committee holds the 告知书)
    token = csrf_token(village, link)
    issued = village.post("/notices/monitoring_exit/exit_notice/issue",
                          data={"csrf_token": token, "case_id": [str(case_id)], "contact_phone": "0825-5421234"})
    assert issued.status_code == 302, issued.get_data(as_text=True)[:500]
    serial = issued.headers["Location"].rsplit("/", 1)[1]
    with db.uow() as work:
        notice = work.notices.case_notices(case_id)[-1]
        assert (notice.serial, notice.office_name) == (serial, "冬笋街社区居民委员会")
        kind = work.notices.kind("monitoring_exit", "exit_notice")
        assert not work.notices.may_issue(db.actor("demo_clerk"), kind)
    page = village.get(f"/tasks/{row.id}").get_data(as_text=True)
    assert f"已出具退出告知书:<a href=\"/notices/n/{serial}\">{serial}</a>" in page
    db.complete(case_id, "demo_village", data=D.EXIT_NOTICE)
    assert db.case(case_id).status.value == "exited"


NOTICE_FIRST = "请先出具退出告知书:本步骤须将退出告知书送达农户签收,出具后再办理本步骤"


@pytest.mark.db_snapshot("at_exit_notice")
def test_exit_notice_cannot_be_completed_before_its_notice_is_issued_on_the_engine_the_page_and_the_api(
        db, at_exit_notice, client_for, csrf_token, snapshot):
    from tests.integration.notices_support import issue_step_notice

    case_id = at_exit_notice.value
    (row,) = db.open_tasks(case_id)
    with db.uow() as work:
        assert work.cases.step_properties(row)["requiresNotice"] == "exit_notice"
    before = snapshot()
    with pytest.raises(ValidationError) as refused:
        db.complete(case_id, "demo_village", data=D.EXIT_NOTICE)
    assert refused.value.errors == {"notice": NOTICE_FIRST}
    village = client_for("demo_village")
    api = village.post(f"/api/v1/tasks/{row.id}/complete",
                       json={"action": "approve", "opinion": "已送达", "data": D.EXIT_NOTICE})
    assert api.status_code == 422
    assert api.get_json()["errors"] == {"notice": NOTICE_FIRST}
    form = {"csrf_token": csrf_token(village, f"/tasks/{row.id}"), "action": "approve", "opinion": "已送达",
            "notice_delivered_date": D.EXIT_NOTICE["notice_delivered_date"], "household_acknowledged": "true",
            "system_marked_removed": "true"}
    page = village.post(f"/tasks/{row.id}", data=form)
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert f'<span data-testid="notice-required">{NOTICE_FIRST}</span>' in html
    assert 'data-testid="step-notice-link">出具退出告知书</a>' in html  # the prompt that issues it
    assert 'name="household_acknowledged" value="true" checked' in html  # what was ticked is kept
    assert snapshot() == before  # refused three times, nothing changed, nothing audited
    # a 村级公示 covering the case is not its 退出告知书
    with db.uow() as work:
        assert {n.kind for n in work.notices.case_notices(case_id)} == {"village_public_notice", "county_announcement"}
    serial = issue_step_notice(db, case_id)
    done = village.post(f"/api/v1/tasks/{row.id}/complete",
                        json={"action": "approve", "opinion": "已送达", "data": D.EXIT_NOTICE})
    assert done.status_code == 200, done.get_json()
    assert db.case(case_id).status.value == "exited"
    with db.uow() as work:
        assert [n.serial for n in work.notices.case_notices(case_id) if n.kind == "exit_notice"] == [serial]


def test_a_required_notice_must_be_declared_and_due_at_its_step_or_deploy_refuses(db):
    from engine.procedures import checks
    from engine.procedures.checks import CheckedBundle
    from engine.procedures.checks.steps import required_notices
    from engine.procedures.definitions import read_folder

    bundle = read_folder(settings.WORKFLOWS_DIR / "monitoring_exit", settings.FORMS_DIR)
    assert required_notices(CheckedBundle(bundle.files, checks.CheckContext(known_roles=frozenset()))) == []
    for bad, why in (("county_announcement", "未把本步骤列为出具时机"), ("no_such_notice", "未在 notices.json 中声明")):
        files = dict(bundle.files)
        bpmn = next(k for k in files if k.endswith(".bpmn"))
        files[bpmn] = files[bpmn].replace('name="requiresNotice" value="exit_notice"', f'name="requiresNotice" value="{bad}"')
        (problem,) = required_notices(CheckedBundle(files, checks.CheckContext(known_roles=frozenset())))
        assert problem.element_id == "exit_notice" and why in problem.message

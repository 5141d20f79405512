"""The HTML pages: inbox tabs, task forms (CSRF on, as a browser submits them), the case page."""

from __future__ import annotations

import json
import re

from engine import demo_data as D
from engine.models import TaskRow, TaskStatus

ZHANG_ID = "510921196503120011"  # 张德明, demo household of the demo_village village
ZHANG_MASKED = "510921********0011"


def _form(data: dict) -> dict:
    return {k: ("true" if v else "") if isinstance(v, bool) else str(v) for k, v in data.items()}


def _tab(html: str, key: str) -> tuple[str, int]:
    match = re.search(rf'data-testid="tab-{key}">(\S+) <span class="badge">(\d+)</span>', html)
    assert match, f"tab {key} missing"
    return match.group(1), int(match.group(2))


def _json_script(html: str, element_id: str):
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert match, f"script #{element_id} missing"
    return json.loads(match.group(1))


def test_the_inbox_shows_todo_done_and_started_tabs_with_counts(db, client_for, exit_case):
    exit_case(0)  # waits for demo_village at 入户核查
    exit_case(2)  # demo_village did 入户核查, 民主评议 and 出具村级公示; waits for demo_township
    village = client_for("demo_village").get("/")
    assert village.status_code == 200
    html = village.get_data(as_text=True)
    assert [_tab(html, k) for k in ("todo", "done", "started")] == [("待办", 1), ("已办", 3), ("我发起的", 2)]
    assert html.count('data-testid="task-row"') == 1 and "入户核查" in html

    township = client_for("demo_township").get("/").get_data(as_text=True)
    assert [_tab(township, k) for k in ("todo", "done", "started")] == [("待办", 1), ("已办", 0), ("我发起的", 0)]
    assert "镇复核" in township

    done = client_for("demo_village").get("/?view=done").get_data(as_text=True)
    assert done.count('data-testid="task-row"') == 3
    assert "民主评议" in done and "通过:同意" in done and "出具村级公示" in done
    started = client_for("demo_village").get("/?view=started").get_data(as_text=True)
    assert started.count("监测户风险消除退出(四步法)</a>") == 2

    empty = client_for("demo_dept").get("/").get_data(as_text=True)
    assert _tab(empty, "todo") == ("待办", 0) and "暂无待办任务" in empty


def test_the_task_page_renders_the_forms_fields_with_chinese_labels(db, client_for, exit_case):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    page = client_for("demo_village").get(f"/tasks/{row.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for key, label in [("household_size", "家庭人口(人)"), ("annual_income_per_capita", "家庭年人均纯收入(元)"),
                       ("industry_employment", "三查:家庭产业就业情况"), ("check_date", "核查日期")]:
        assert re.search(rf'<label class="field-label" for="f_{key}">{re.escape(label)} <span class="req">\*</span>',
                         html), key
    assert 'type="number" step="any" id="f_household_size" name="household_size"' in html
    assert 'min="1"' in html and 'max="30"' in html
    assert 'type="date" id="f_check_date"' in html
    assert '<option value="低保"' in html
    assert 'name="measures_implemented" value="true"' in html and "一查:帮扶措施已精准落实" in html
    assert '<label class="field-label" for="opinion">审批意见</label>' in html
    assert 'data-action="approve"' in html and 'data-action="reject"' not in html


def test_the_township_step_offers_approve_reject_and_return_with_the_earlier_steps(db, client_for, exit_case):
    case_id = exit_case(2)
    (row,) = db.open_tasks(case_id)
    html = client_for("demo_township").get(f"/tasks/{row.id}").get_data(as_text=True)
    assert [a for a in ("approve", "reject", "return") if f'data-action="{a}"' in html] == [
        "approve", "reject", "return"]
    assert '<option value="village_review">民主评议</option>' in html
    assert '<option value="household_check">入户核查</option>' in html


def test_a_bad_form_is_shown_again_with_field_messages_as_a_422_and_the_task_stays_open(
        db, client_for, exit_case, csrf_token, snapshot):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    token = csrf_token(village, f"/tasks/{row.id}")
    fields = _form({**D.HOUSEHOLD_CHECK, "household_size": "四口", "special_category": "五保"})
    del fields["industry_employment"]
    del fields["household_signed"]  # an unticked box: the browser sends nothing
    before = snapshot()
    page = village.post(f"/tasks/{row.id}", data={"csrf_token": token, "action": "approve",
                                                  "opinion": "先填一部分", **fields})
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert "提交未成功,请按提示修改后重新提交。" in html
    for message in ("家庭人口(人): 必须是数字", "三查:家庭产业就业情况: 必填",
                    "特殊类别(低保、特困、残疾人家庭缓退): 无效选项", "核查结果已经监测户签字认可: 必须勾选"):
        assert f'<div class="field-error" role="alert">{message}</div>' in html
    assert 'class="field has-error" data-field="household_size"' in html
    assert 'name="household_size" value="四口"' in html  # what was typed is kept
    assert ">先填一部分</textarea>" in html
    assert 'class="field has-error" data-field="check_date"' not in html
    assert snapshot() == before
    assert [t.id for t in db.open_tasks(case_id)] == [row.id]


def test_a_good_form_completes_the_task_with_typed_values_and_redirects_to_the_case(
        db, client_for, exit_case, csrf_token):
    case_id = exit_case(0)
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    token = csrf_token(village, f"/tasks/{row.id}")
    db.sign_if_asked(row.id, "demo_village")  # the household signed on the pad (tests/integration/test_signature.py)
    done = village.post(f"/tasks/{row.id}", data={"csrf_token": token, "action": "approve", "opinion": "属实",
                                                  **_form(D.HOUSEHOLD_CHECK)})
    assert done.status_code == 302 and done.headers["Location"] == f"/cases/{case_id}"
    with db.uow() as work:
        stored = work.session.get(TaskRow, row.id)
        assert stored.status == TaskStatus.completed
        assert stored.opinion == "属实"
        assert stored.data == D.HOUSEHOLD_CHECK  # numbers as numbers, ticked boxes as True
    case_page = village.get(done.headers["Location"]).get_data(as_text=True)
    assert "已提交「入户核查」,案件已转至「民主评议」" in case_page  # what was done and where the case went


def test_the_case_page_has_the_diagram_xml_the_marks_and_the_history(db, client_for, exit_case):
    case_id = exit_case(3)  # at 部门审定
    html = client_for("demo_dept").get(f"/cases/{case_id}").get_data(as_text=True)
    xml = _json_script(html, "bpmn-xml")
    assert xml.startswith("<?xml") and 'id="monitoring_exit"' in xml and 'id="dept_decision"' in xml
    marks = _json_script(html, "bpmn-marks")
    assert (marks["current"], marks["returned"]) == (["dept_decision"], [])
    assert {"start", "household_check", "village_review", "township_recheck"} <= set(marks["done"])
    assert not set(marks["done"]) & {"dept_decision", "decide_exit_mode", "county_announcement", "follow_up_timer"}
    assert all(f'id="{element}"' in xml for element in marks["done"] + marks["current"])
    assert 'data-bpmn-viewer data-xml-source="bpmn-xml" data-marks-source="bpmn-marks"' in html
    assert 'data-testid="current-steps">部门审定<' in html
    history = re.search(r'<ol class="timeline" data-testid="history">(.*?)</ol>', html, re.S).group(1)
    items = re.findall(r"<li>(.*?)</li>", history, re.S)
    heads = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", item.split('<span class="muted">')[0])).strip()
             for item in items]
    assert heads == ["发起", "上传附件 · 入户核查", "通过 · 入户核查", "通过 · 民主评议", "签发公示公告 · 出具村级公示",
                     "定时触发 「村级公示期满」", "通过 · 镇复核"]  # the timer by its name
    assert "宝梵镇村干部(演示) · 2026-09-01 09:00" in items[0]  # who and when, in China time
    assert 'data-testid="history-signature"' in items[2]  # the household's signature with its step
    assert "宝梵镇村干部(演示) · 2026-09-01 09:00" in items[4]  # the village issued the notice at once
    assert "系统" in items[5]  # the 村级公示 period ran out by itself
    assert "宝梵镇乡村振兴办(演示) · 2026-09-08 10:00" in items[6] and "意见:同意" in items[6]
    assert "家庭年人均纯收入(元)</dt><dd>12800</dd>" in html  # form data with Chinese labels


def test_the_case_page_shows_a_return_on_the_diagram_and_in_the_history(db, client_for, exit_case):
    case_id = exit_case(2)
    db.complete(case_id, "demo_township", action="return", opinion="补充公示照片", return_to="village_review")
    html = client_for("demo_township").get(f"/cases/{case_id}").get_data(as_text=True)
    marks = _json_script(html, "bpmn-marks")
    assert (marks["current"], marks["returned"]) == (["village_review"], ["township_recheck"])
    assert "household_check" in marks["done"] and "township_recheck" not in marks["done"]
    assert "<strong>退回</strong> · 镇复核" in html and "意见:补充公示照片" in html


def test_the_households_id_number_is_masked_for_the_township_and_shown_in_full_to_its_own_village(
        db, client_for, exit_case):
    case_id = exit_case(2, household="张德明")
    own_village = client_for("demo_village").get(f"/cases/{case_id}").get_data(as_text=True)
    assert f"身份证号 {ZHANG_ID}" in own_village
    for username in ("demo_township", "demo_county", "demo_clerk"):
        html = client_for(username).get(f"/cases/{case_id}").get_data(as_text=True)
        assert f"身份证号 {ZHANG_MASKED}" in html, username
        assert ZHANG_ID not in html, username
    api = client_for("demo_township").get(f"/api/v1/cases/{case_id}").get_data(as_text=True)
    assert ZHANG_ID not in api


def test_starting_a_case_from_the_html_form_opens_the_first_task(db, client_for, csrf_token):
    village = client_for("demo_village")
    token = csrf_token(village, "/cases/new")
    page = village.get("/cases/new").get_data(as_text=True)
    assert "张德明(脱贫不稳定户)" in page and "赵大山" not in page
    started = village.post("/cases/new", data={"csrf_token": token, "procedure": "monitoring_exit",
                                               "subject_id": str(db.household("张德明"))})
    assert started.status_code == 302
    (case,) = client_for("demo_village").get("/api/v1/tasks?view=started").get_json()["cases"]
    (row,) = db.open_tasks(case["id"])
    assert started.headers["Location"] == f"/tasks/{row.id}"

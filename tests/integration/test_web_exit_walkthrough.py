"""The 四步法 exit walked through the JSON API by the four levels, each with its own session."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from engine import demo_data as D
from engine.models import TimerRow, TimerStatus

VILLAGE = "510921107001"  # the 宝梵镇 village where demo_village holds village_cadre
OPINIONS = {
    "household_check": "四查情况属实",
    "village_review": "评议通过,公示无异议",
    "township_recheck": "材料齐全,同意退出",
    "dept_decision": "行业数据核实无误",
    "county_announcement": "同意公告退出",
    "exit_notice": "告知书已送达",
}
# the notice whose issue starts the period after a step: (kind, issuer, fields, issuing step, its title)
NOTICE_STEPS = {
    "village_review": ("village_public_notice", "demo_village", D.VILLAGE_NOTICE_FIELDS, "issue_village_notice",
                       "出具村级公示"),
    "county_announcement": ("county_announcement", "demo_county", D.COUNTY_NOTICE_FIELDS, "issue_county_notice",
                            "出具县级公告"),
}
TITLES = {"household_check": "入户核查", "village_review": "民主评议", "township_recheck": "镇复核",
          "dept_decision": "部门审定", "county_announcement": "县级公告", "exit_notice": "退出告知"}


def _todo_ids(client) -> list[int]:
    response = client.get("/api/v1/tasks?view=todo")
    assert response.status_code == 200
    assert response.get_json()["view"] == "todo"
    return [t["id"] for t in response.get_json()["tasks"]]


def test_an_exit_case_goes_through_village_township_department_and_county_to_exited_over_the_api(
        db, client_for, csrf_token, exit_steps):
    village = client_for("demo_village")
    subjects = village.get("/api/v1/subjects?kind=household").get_json()["subjects"]
    subject = next(s for s in subjects if s["name"] == "张德明")
    assert subject["region"] == VILLAGE

    started = village.post("/api/v1/cases", json={
        "procedure": "monitoring_exit", "subject": {"id": subject["id"]}, "region": subject["region"]})
    assert started.status_code == 201, started.get_json()
    case = started.get_json()
    case_id = case["id"]
    assert case["status"] == "running"
    assert case["subject"] == {"id": subject["id"], "kind": "household", "name": "张德明"}
    assert [s["step_id"] for s in case["current_steps"]] == ["household_check"]
    assert village.get("/api/v1/tasks?view=started").get_json()["cases"] == [
        {"id": case_id, "title": case["title"], "status": "running", "procedure": "monitoring_exit"}]

    moments = {"start": db.clock.now()}
    expected_history = [("demo_village", "start", None, None, moments["start"])]
    for step_id, username, data, notice_follows in exit_steps:
        db.clock.advance(timedelta(days=2, hours=3))
        client = client_for(username)
        (task_id,) = [t for t in _todo_ids(client)
                      if client.get(f"/api/v1/tasks/{t}").get_json()["case_id"] == case_id]

        task = client.get(f"/api/v1/tasks/{task_id}")
        assert task.status_code == 200
        task = task.get_json()
        assert task["step_id"] == step_id and task["status"] == "open"
        assert task["form"]["components"], "form-js schema with components"
        keys = {c.get("key") for c in task["form"]["components"]}
        assert set(data) <= keys
        assert isinstance(task["data"], dict) and set(task["data"]) <= keys
        assert "approve" in task["actions"]
        if task.get("signature"):  # 入户核查: the household signs on the cadre's tablet, uploaded as a PNG
            assert task["signature"] == {"mode": "required", "label": "农户签字", "latest": None}
            signed = client.post(f"/api/v1/cases/{case_id}/attachments", content_type="multipart/form-data",
                                 data={"kind": "signature", "task_id": str(task_id),
                                       "file": (io.BytesIO(D.signature_png()), "农户签字.png", "image/png")})
            assert signed.status_code == 201, signed.get_json()
            expected_history.append((username, "attachment_added", TITLES[step_id], None, db.clock.now()))

        if step_id == "exit_notice":  # the 退出告知书 must be issued (on the 公示公告 page) before the step is done
            refused = client.post(f"/api/v1/tasks/{task_id}/complete",
                                  json={"action": "approve", "opinion": OPINIONS[step_id], "data": data})
            assert refused.status_code == 422, refused.get_json()
            assert refused.get_json()["errors"] == {"notice": "请先出具退出告知书:本步骤须将退出告知书送达农户签收,出具后再办理本步骤"}
            page = "/notices/monitoring_exit/exit_notice"
            issued = client.post(f"{page}/issue", data={"csrf_token": csrf_token(client, page),
                                                        "case_id": [str(case_id)], **D.EXIT_NOTICE_FIELDS})
            assert issued.status_code == 302, issued.get_data(as_text=True)[:500]
            expected_history.append((username, "notice_issued", "退出告知书", None, db.clock.now()))
        done = client.post(f"/api/v1/tasks/{task_id}/complete",
                           json={"action": "approve", "opinion": OPINIONS[step_id], "data": data})
        assert done.status_code == 200, done.get_json()
        moments[step_id] = db.clock.now()
        assert task_id not in _todo_ids(client)
        assert task_id in [t["id"] for t in client.get("/api/v1/tasks?view=done").get_json()["tasks"]]
        after = client.get(f"/api/v1/tasks/{task_id}").get_json()
        assert (after["status"], after["completed_by"], after["action"], after["opinion"]) == (
            "completed", username, "approve", OPINIONS[step_id])
        assert after["actions"] == []
        expected_history.append((username, "approve", TITLES[step_id], OPINIONS[step_id], moments[step_id]))
        if notice_follows:  # the step's office issues the signed notice on the 公示公告 page, which starts
            # the public-notice period: it holds the case with nobody's task open, then ends
            kind, issuer, fields, issue_step, issue_title = NOTICE_STEPS[step_id]
            waiting = client.get(f"/api/v1/cases/{case_id}").get_json()
            assert [s["step_id"] for s in waiting["current_steps"]] == [issue_step]
            db.clock.advance(timedelta(hours=4))
            office = client_for(issuer)
            page = f"/notices/monitoring_exit/{kind}"
            issued = office.post(f"{page}/issue", data={"csrf_token": csrf_token(office, page),
                                                        "case_id": [str(case_id)], **fields})
            assert issued.status_code == 302, issued.get_data(as_text=True)[:500]
            expected_history.append((issuer, "notice_issued", issue_title, None, db.clock.now()))
            held = client.get(f"/api/v1/cases/{case_id}").get_json()
            assert (held["status"], held["current_steps"]) == ("running", [])
            assert db.pass_notice() == 1
            expected_history.append((None, "timer_fired", None, None, db.clock.now()))

    final = client_for("demo_village").get(f"/api/v1/cases/{case_id}")
    assert final.status_code == 200
    final = final.get_json()
    assert final["status"] == "exited"
    assert final["current_steps"] == []
    assert final["data"]["announcement_date"] == D.COUNTY_ANNOUNCEMENT["announcement_date"]
    assert "announcement_number" not in final["data"]  # the 公告文号 is asked once, on the notice
    assert final["data"]["household_size"] == 4

    history = [(e["user"], e["action"], e["step"], e["opinion"], datetime.fromisoformat(e["at"]))
               for e in final["history"]]
    assert history == expected_history

    # the six-month follow-up timer waits, in the database and on the case page
    with db.uow() as work:
        timers = work.session.scalars(select(TimerRow).where(TimerRow.case_id == case_id).order_by(TimerRow.id)).all()
        assert [(t.spec_name, t.status) for t in timers] == [
            ("village_notice_timer", TimerStatus.fired), ("county_notice_timer", TimerStatus.fired),
            ("follow_up_timer", TimerStatus.waiting)]
        due = timers[-1].due_at
    # six steps of 2 days 3 hours and two notice periods of 7 days 1 hour after 2026-09-01 01:00Z:
    # exited on 2026-09-27 21:00Z, the follow-up visit is due settings.follow_up_months (6) later
    assert moments["exit_notice"] == datetime(2026, 9, 28, 5, 0, tzinfo=timezone.utc)  # two notices, each issued 4 h on
    assert due == datetime(2027, 3, 28, 5, 0, tzinfo=timezone.utc)
    page = client_for("demo_county").get(f"/cases/{case_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    china = due.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")
    assert re.search(rf'data-testid="waiting-timer">{re.escape(china)}<', html)
    assert 'data-testid="case-status">已退出<' in html
    marks = json.loads(re.search(r'<script type="application/json" id="bpmn-marks">(.*?)</script>', html,
                                 re.S).group(1))
    assert marks["current"] == ["follow_up_timer"]

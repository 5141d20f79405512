"""Who sees and acts on what: every demo user against an open task of a 宝梵镇 case at each level.

The rule (engine/runtime/cases.py CaseService.get_task): a task is visible to the holder of its role
in its scope, or to whoever completed it; to anyone else it does not exist (404), even when
they may see the case (its region lies in their jurisdiction). So completing someone else's
task is 404 too, not 403: get_task refuses before complete_task's ForbiddenError is reached.
"""

from __future__ import annotations

import pytest

from engine.models import TaskRow, TaskStatus
from tests.integration.notices_support import issue_step_notice

USERS = ("demo_village", "demo_township", "demo_dept", "demo_county", "demo_clerk", "demo_admin",
         "demo_other_village", "demo_other_township")
OUTSIDERS = {"demo_other_village", "demo_other_township"}  # 赤城镇: 宝梵镇 is outside their jurisdiction
LEVELS = [(0, "household_check", "demo_village"), (1, "village_review", "demo_village"),
          (2, "township_recheck", "demo_township"), (3, "dept_decision", "demo_dept"),
          (4, "county_announcement", "demo_county"), (5, "exit_notice", "demo_village")]


@pytest.mark.db_snapshot("case_at_depth")
@pytest.mark.parametrize("depth, step_id, holder", LEVELS, ids=[lv[1] for lv in LEVELS])
@pytest.mark.parametrize("username", USERS)
def test_only_the_holder_of_the_steps_role_in_its_scope_sees_opens_and_completes_the_task(
        db, case_at_depth, client_for, exit_steps, snapshot, username, depth, step_id, holder):
    case_id = case_at_depth.value
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == step_id
    client = client_for(username)
    todo = [t["id"] for t in client.get("/api/v1/tasks?view=todo").get_json()["tasks"]]
    data = exit_steps[depth][2]

    if username == holder:
        assert todo == [row.id]
        assert client.get(f"/api/v1/tasks/{row.id}").status_code == 200
        page = client.get(f"/tasks/{row.id}")
        assert page.status_code == 200 and 'data-action="approve"' in page.get_data(as_text=True)
        db.sign_if_asked(row.id, username)  # 入户核查: the household signs first
        issue_step_notice(db, case_id, username)  # 退出告知: the 退出告知书 is issued first
        done = client.post(f"/api/v1/tasks/{row.id}/complete",
                           json={"action": "approve", "opinion": "同意", "data": data})
        assert done.status_code == 200, done.get_json()
        assert row.id not in [t["task_id"] for t in done.get_json()["current_steps"]]
        with db.uow() as work:
            stored = work.session.get(TaskRow, row.id)
            assert (stored.status, stored.completed_by_id) == (TaskStatus.completed, db.actor(username).user_id)
        return

    before = snapshot()
    assert row.id not in todo
    assert client.get(f"/api/v1/tasks/{row.id}").status_code == 404
    assert client.get(f"/tasks/{row.id}").status_code == 404
    refused = client.post(f"/api/v1/tasks/{row.id}/complete",
                          json={"action": "approve", "opinion": "同意", "data": data})
    assert refused.status_code == 404
    assert refused.get_json()["message"] == "任务不存在"
    assert snapshot() == before

    if username in OUTSIDERS:
        assert client.get(f"/api/v1/cases/{case_id}").status_code == 404
        assert client.get(f"/cases/{case_id}").status_code == 404
        assert case_id not in [c["id"] for c in client.get("/api/v1/tasks?view=started").get_json()["cases"]]
    else:  # sees the case (in their jurisdiction) but is offered nothing to do on it
        assert client.get(f"/api/v1/cases/{case_id}").status_code == 200
        page = client.get(f"/cases/{case_id}")
        assert page.status_code == 200
        assert f'href="/tasks/{row.id}"' not in page.get_data(as_text=True)


@pytest.mark.db_snapshot("at_township_recheck")
def test_the_holder_sees_the_task_link_on_the_case_page(db, at_township_recheck, client_for):
    case_id = at_township_recheck.value
    (row,) = db.open_tasks(case_id)
    page = client_for("demo_township").get(f"/cases/{case_id}").get_data(as_text=True)
    assert f'href="/tasks/{row.id}"' in page and "办理:镇复核" in page


@pytest.mark.db_snapshot("at_dept_decision")
def test_a_completed_task_stays_visible_read_only_to_whoever_completed_it(db, at_dept_decision, client_for):
    case_id = at_dept_decision.value  # demo_township completed 镇复核
    with db.uow() as work:
        recheck = next(t for t in work.inbox.case_tasks(case_id) if t.spec_name == "township_recheck")
    township = client_for("demo_township")
    task = township.get(f"/api/v1/tasks/{recheck.id}").get_json()
    assert (task["status"], task["completed_by"], task["actions"]) == ("completed", "demo_township", [])
    page = township.get(f"/tasks/{recheck.id}").get_data(as_text=True)
    assert "办理人:宝梵镇乡村振兴办(演示)" in page and 'data-action="approve"' not in page
    assert client_for("demo_dept").get(f"/api/v1/tasks/{recheck.id}").status_code == 404


def test_outsiders_neither_list_nor_start_cases_for_households_of_another_township(db, client_for, snapshot):
    other = client_for("demo_other_village")
    names = {s["name"] for s in other.get("/api/v1/subjects").get_json()["subjects"]}
    assert names == {"赵大山"}
    before = snapshot()
    baofan_household = db.household("张德明")
    refused = other.post("/api/v1/cases", json={"procedure": "monitoring_exit", "subject": {"id": baofan_household}})
    assert refused.status_code == 404
    assert snapshot() == before


def test_a_case_of_another_township_is_invisible_to_baofan_users(db, client_for):
    zhao = db.household("赵大山", username="demo_other_village")
    case_id = db.start_case("demo_other_village", subject_id=zhao)
    (row,) = db.open_tasks(case_id)
    assert [t["id"] for t in client_for("demo_other_village").get("/api/v1/tasks").get_json()["tasks"]] == [row.id]
    for username in ("demo_village", "demo_township"):
        client = client_for(username)
        assert client.get(f"/api/v1/cases/{case_id}").status_code == 404
        assert client.get(f"/cases/{case_id}").status_code == 404
        assert client.get(f"/api/v1/tasks/{row.id}").status_code == 404
        assert client.get(f"/tasks/{row.id}").status_code == 404
        assert client.get("/api/v1/tasks").get_json()["tasks"] == []
    # the county sees it (赤城镇 is in 蓬溪县) but it is not the county's task
    assert client_for("demo_county").get(f"/api/v1/cases/{case_id}").status_code == 200


def test_a_township_officer_may_not_start_an_exit_which_is_the_villages_step(db, client_for, snapshot):
    before = snapshot()
    refused = client_for("demo_township").post(
        "/api/v1/cases", json={"procedure": "monitoring_exit", "subject": {"id": db.household("张德明")}})
    assert refused.status_code == 403
    assert snapshot() == before

"""The demo's 帮扶责任人 (demo_helper, role assistance_cadre): 防返贫监测 identification for a household
registered just now runs to its end through the API with demo users only — nobody added to the database."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.registry_support import household, region_of
from tests.integration.test_procedure_monitoring_identification import MAIN, RISK_REPORT


def _open(db, case_id: int) -> dict[str, int]:
    return {r.spec_name: r.id for r in db.open_tasks(case_id)}


def _complete(db, client, task_id: int, username: str, data: dict) -> None:
    db.sign_if_asked(task_id, username)
    response = client.post(f"/api/v1/tasks/{task_id}/complete", json={"action": "approve", "opinion": "情况属实",
                                                                      "data": data})
    assert response.status_code == 200, response.get_json()


def test_identification_of_a_newly_registered_household_runs_to_its_end_with_the_demo_users(db, client_for):
    village = client_for("demo_village")
    helper = client_for("demo_helper")
    registered = village.post("/api/v1/subjects", json={**household(region_of(db, "demo_village"), name="新风险户"),
                                                        "attrs": {"category": "突发严重困难户",
                                                                  "assistance_cadre": "demo_helper"}})
    assert registered.status_code == 201, registered.get_json()
    started = village.post("/api/v1/cases", json={"procedure": "monitoring_identification",
                                                  "subject": {"id": registered.get_json()["id"]}})
    assert started.status_code == 201, started.get_json()
    case_id = started.get_json()["id"]
    users = {"demo_village": village, "demo_township": client_for("demo_township"), "demo_dept": client_for("demo_dept")}
    _complete(db, village, _open(db, case_id)["risk_report"], "demo_village", RISK_REPORT)
    for spec in ("household_check", "village_review", "township_audit", "county_identification", "system_entry"):
        _title, username, _role, _scope, data = MAIN[spec]
        db.clock.advance(timedelta(hours=2))
        _complete(db, users[username], _open(db, case_id)[spec], username, data)
        if spec == "village_review":  # the village notice runs out
            db.clock.advance(timedelta(days=8))
            with db.uow() as work:
                assert work.cases.fire_due_timers() >= 1
    assert village.get(f"/api/v1/cases/{case_id}").get_json()["status"] == "identified"
    for spec in ("assistance_plan", "implement_measures", "risk_assessment"):
        todo = helper.get("/api/v1/tasks?view=todo").get_json()["tasks"]
        assert [(t["case_id"], t["step_id"]) for t in todo] == [(case_id, spec)]  # in the demo 帮扶责任人's 待办
        db.clock.advance(timedelta(days=1))
        _complete(db, helper, todo[0]["id"], "demo_helper", MAIN[spec][4])
    case = village.get(f"/api/v1/cases/{case_id}").get_json()
    assert case["status"] == "completed" and case["current_steps"] == []

"""Starting cases for registered subjects: the duplicate guard (one running case per subject per procedure,
declared in procedure.json, on for the shipped procedures), 发起流程 for a newly registered household and
for a project (项目库), and no start for a deactivated subject."""

from __future__ import annotations

import re

from engine import demo_data as D
from tests.integration.registry_support import household, region_of

SHIPPED = ("housing_renovation", "monitoring_exit", "monitoring_identification", "project_library")


def test_the_shipped_procedures_declare_the_duplicate_guard(db):
    with db.uow() as work:
        assert all(work.starts.guarded(code) for code in SHIPPED)


def test_a_second_running_case_of_the_same_procedure_is_409_naming_the_running_one(db, client_for, snapshot):
    village = client_for("demo_village")
    subject_id = db.household("张德明")
    first = village.post("/api/v1/cases", json={"procedure": "monitoring_exit", "subject": {"id": subject_id}})
    assert first.status_code == 201
    before = snapshot()
    second = village.post("/api/v1/cases", json={"procedure": "monitoring_exit", "subject": {"id": subject_id}})
    assert second.status_code == 409
    body = second.get_json()
    assert f"编号 {first.get_json()['id']}" in body["message"] and "张德明" in body["message"]
    assert "subject" in body["errors"]
    assert snapshot() == before
    # another procedure for the same household is fine, and so is the same procedure for another household
    assert village.post("/api/v1/cases", json={"procedure": "housing_renovation", "subject": {"id": subject_id}}
                        ).status_code == 201
    assert village.post("/api/v1/cases", json={"procedure": "monitoring_exit",
                                               "subject": {"id": db.household("李秀英")}}).status_code == 201


def test_a_finished_case_does_not_block_a_new_one(db, client_for):
    village = client_for("demo_village")
    subject_id = db.household("王建国")
    case_id = village.post("/api/v1/cases", json={"procedure": "monitoring_exit", "subject": {"id": subject_id}}
                           ).get_json()["id"]
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)  # 入户核查, then 民主评议 rejects
    (task,) = db.open_tasks(case_id)
    rejected = village.post(f"/api/v1/tasks/{task.id}/complete", json={"action": "reject", "opinion": "收入核算有误,不予退出"})
    assert rejected.status_code == 200, rejected.get_json()
    assert db.case(case_id).status.value != "running"
    assert village.post("/api/v1/cases", json={"procedure": "monitoring_exit", "subject": {"id": subject_id}}
                        ).status_code == 201


def test_a_deactivated_subject_starts_nothing(db, client_for):
    village = client_for("demo_village")
    subject_id = db.household("陈永福")
    village.patch(f"/api/v1/subjects/{subject_id}", json={"is_active": False})
    response = village.post("/api/v1/cases", json={"procedure": "monitoring_exit", "subject": {"id": subject_id}})
    assert response.status_code == 422 and "已停用" in response.get_json()["errors"]["subject"]
    assert village.post("/api/v1/cases", json={"procedure": "monitoring_exit", "subject": {"id": 2**40}}
                        ).status_code in (404, 422)  # out of range: refused before any lookup


def test_the_start_page_registers_a_new_household_and_starts_identification_for_it(db, client_for, csrf_token):
    village = client_for("demo_village")
    page = village.get("/cases/new?procedure=monitoring_identification").get_data(as_text=True)
    link = re.search(r'href="(/registry/new\?[^"]*kind=household[^"]*)"', page).group(1).replace("&amp;", "&")
    assert "procedure=monitoring_identification" in link
    token = csrf_token(village, link)
    payload = household(region_of(db, "demo_village"), name="新发现户")
    form = {"csrf_token": token, "kind": "household", "name": "新发现户", "id_number": payload["id_number"],
            "region_code": payload["region_code"], "attr_category": "突发严重困难户", "member_name_0": ""}
    registered = village.post(link, data=form)
    assert registered.status_code == 302
    back = registered.headers["Location"]
    assert back.startswith("/cases/new?") and "procedure=monitoring_identification" in back
    start_page = village.get(back).get_data(as_text=True)
    subject_id = int(re.search(r"subject_id=(\d+)", back).group(1))
    assert f'<option value="{subject_id}" selected>新发现户' in start_page
    started = village.post("/cases/new", data={"csrf_token": csrf_token(village, back),
                                               "procedure": "monitoring_identification", "subject_id": str(subject_id)})
    assert started.status_code == 302, started.get_data(as_text=True)
    cases = village.get("/api/v1/tasks?view=started").get_json()["cases"]
    assert [c["procedure"] for c in cases] == ["monitoring_identification"]
    again = village.post("/cases/new", data={"csrf_token": csrf_token(village, back),
                                             "procedure": "monitoring_identification", "subject_id": str(subject_id)})
    assert again.status_code == 409 and "不能重复发起" in again.get_data(as_text=True)


def test_project_library_starts_for_a_newly_registered_project(db, client_for):
    village = client_for("demo_village")
    project = village.post("/api/v1/subjects", json={
        "kind": "project", "region_code": region_of(db, "demo_village"), "name": "村级冷链仓储",
        "attrs": {"project_type": "产业发展", "budget_yuan": 600000, "farmer_linkage": "带动 30 户销售"}})
    assert project.status_code == 201
    page = village.get(f"/cases/new?subject_id={project.get_json()['id']}").get_data(as_text=True)
    assert 'value="project_library" data-kind="project" selected' in page
    assert f'<option value="{project.get_json()["id"]}" selected>村级冷链仓储(产业发展)' in page
    started = village.post("/api/v1/cases", json={"procedure": "project_library",
                                                  "subject": {"id": project.get_json()["id"]}})
    assert started.status_code == 201, started.get_json()
    assert started.get_json()["subject"]["name"] == "村级冷链仓储"
    wrong_kind = village.post("/api/v1/cases", json={"procedure": "monitoring_exit",
                                                     "subject": {"id": project.get_json()["id"]}})
    assert wrong_kind.status_code == 422


def test_a_batch_start_skips_and_reports_running_cases_and_starts_the_rest(db, client_for):
    village = client_for("demo_village")
    ids = [db.household(name) for name in ("张德明", "李秀英", "王建国")]
    running = village.post("/api/v1/cases", json={"procedure": "monitoring_exit", "subject": {"id": ids[1]}}
                           ).get_json()["id"]
    response = village.post("/api/v1/cases/batch", json={"procedure": "monitoring_exit", "subject_ids": ids})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert [s["subject_id"] for s in body["started"]] == [ids[0], ids[2]]
    assert [(s["subject_id"], s["running_case_id"]) for s in body["skipped"]] == [(ids[1], running)]
    assert "不能重复发起" in body["skipped"][0]["reason"]
    assert all(db.case(s["case_id"]).status.value == "running" for s in body["started"])


def test_a_batch_with_one_subject_that_cannot_start_starts_nothing(db, client_for, snapshot):
    village = client_for("demo_village")
    ids = [db.household("张德明"), db.household("赵大山", username="demo_other_village"), db.household("王建国")]
    before = snapshot()
    response = village.post("/api/v1/cases/batch", json={"procedure": "monitoring_exit", "subject_ids": ids})
    assert response.status_code == 422
    assert f"对象 {ids[1]}" in response.get_json()["errors"]["subject_ids"]
    assert snapshot() == before  # the first household's case was rolled back with the batch
    for bad in ({"procedure": "monitoring_exit", "subject_ids": []}, {"procedure": "monitoring_exit"},
                {"procedure": "monitoring_exit", "subject_ids": ["1"]}, {"procedure": "monitoring_exit",
                                                                         "subject_ids": [2**40]}):
        assert village.post("/api/v1/cases/batch", json=bad).status_code == 422, bad
    assert village.post("/api/v1/cases/batch", json={"procedure": "nope", "subject_ids": ids[:1]}).status_code == 404

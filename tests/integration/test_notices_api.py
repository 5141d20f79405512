"""Issue 12 part 8: notices through the API — ``POST /api/v1/notices`` (by open 出具 tasks, or by procedure,
kind and cases; the notices page's service) and ``GET /api/v1/notices/{serial}.pdf``, access-checked, so a
client walks a case end to end without the web pages."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select

from engine import demo_data as D
from engine.models import IssuedNotice
from tests.integration.notices_support import case_at, ensure_office_keys, stored


def test_a_client_walks_an_exit_case_past_its_village_notice_through_the_api(db, client_for):
    ensure_office_keys(db)
    village = client_for("demo_village")
    started = village.post("/api/v1/cases", json={"procedure": "monitoring_exit", "subject": {"id": db.household("张德明")}})
    assert started.status_code == 201, started.get_json()
    case_id = started.get_json()["id"]
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)  # 入户核查 takes the household's signature
    (review,) = db.open_tasks(case_id)
    done = village.post(f"/api/v1/tasks/{review.id}/complete",
                        json={"action": "approve", "opinion": "评议通过", "data": D.VILLAGE_REVIEW})
    assert done.status_code == 200, done.get_json()
    (issuance,) = db.open_tasks(case_id)
    assert issuance.actions == "issue"
    # completing the 出具 step directly is refused: it completes by issuing its notice
    assert village.post(f"/api/v1/tasks/{issuance.id}/complete", json={"action": "approve"}).status_code == 422

    response = village.post("/api/v1/notices", json={"task_ids": [issuance.id], "fields": D.VILLAGE_NOTICE_FIELDS})
    assert response.status_code == 201, response.get_json()
    notice = response.get_json()
    assert notice["kind"] == "village_public_notice" and notice["case_ids"] == [case_id]
    assert notice["pdf"] == f"/api/v1/notices/{notice['serial']}.pdf"
    # the step is done and the case waits out its 公示 period
    assert db.open_tasks(case_id) == []
    case = village.get(f"/api/v1/cases/{case_id}").get_json()
    assert case["status"] == "running"

    pdf = village.get(notice["pdf"])
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert hashlib.sha256(pdf.data).hexdigest() == stored(db, notice["serial"]).sha256 == notice["sha256"]
    # another village's cadre sees nothing of it; an unknown serial is 404 as well
    assert client_for("demo_other_village").get(notice["pdf"]).status_code == 404
    assert village.get("/api/v1/notices/XF-NOPE.pdf").status_code == 404
    # issuing again for the same step: the task is done
    again = village.post("/api/v1/notices", json={"task_ids": [issuance.id], "fields": D.VILLAGE_NOTICE_FIELDS})
    assert again.status_code == 409, again.get_json()


def test_issuing_by_procedure_kind_and_cases_covers_a_village_in_one_notice(db, client_for):
    ensure_office_keys(db)
    cases = [case_at(db, db.household(name), "village_notice") for name in ("李秀英", "王建国")]
    clerk = client_for("demo_clerk")
    response = clerk.post("/api/v1/notices", json={"procedure": "monitoring_exit", "kind": "village_public_notice",
                                                   "case_ids": cases, "fields": D.VILLAGE_NOTICE_FIELDS})
    assert response.status_code == 201, response.get_json()
    assert sorted(response.get_json()["case_ids"]) == sorted(cases)
    assert all(db.open_tasks(c) == [] for c in cases)


def _notices(db) -> int:
    with db.uow() as work:
        return work.session.scalar(select(func.count(IssuedNotice.id)))


def test_bad_notice_requests_are_refused_in_chinese_and_change_nothing(db, client_for, snapshot):
    ensure_office_keys(db)
    case_id = case_at(db, db.household("陈永福"), "village_notice")
    other = db.start_case("demo_village", subject_id=db.household("张德明"))
    (first,) = db.open_tasks(other)
    (issuance,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    before, notices = snapshot(), _notices(db)
    cases = [
        ({}, 422, "task_ids"),
        ({"task_ids": "1"}, 422, "task_ids"),
        ({"task_ids": []}, 422, "task_ids"),
        ({"task_ids": [issuance.id], "fields": []}, 422, "fields"),
        ({"task_ids": [issuance.id], "fields": {"contact_phone": "abc"}, "office_key_id": "x"}, 422, "office_key_id"),
        ({"task_ids": [2**31 - 1]}, 404, None),
        ({"procedure": "monitoring_exit", "kind": "no_such_kind", "case_ids": [case_id]}, 404, None),
    ]
    for payload, status, field in cases:
        response = village.post("/api/v1/notices", json=payload)
        assert response.status_code == status, (payload, response.get_json())
        if field:
            assert field in response.get_json()["errors"], response.get_json()
    # a task that is not an issuance step
    response = village.post("/api/v1/notices", json={"task_ids": [first.id]})
    assert response.status_code == 422 and "不是出具公示/公告的步骤" in response.get_json()["errors"]["task_ids"]
    # the other village may not see the task at all
    assert client_for("demo_other_village").post("/api/v1/notices", json={"task_ids": [issuance.id]}).status_code == 404
    assert snapshot() == before and _notices(db) == notices

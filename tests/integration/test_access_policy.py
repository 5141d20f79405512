"""The one access policy (engine/access/policy.py) against the cross-township leak: 抄送, 委派, 加签 and 转办
reach only people whose jurisdiction contains the case, and a CC opens nothing by itself.

The case waits at 镇(街道)审核 of 宝梵镇 (the at_township_recheck snapshot, as exit_case(2)); 入户核查 left the
household's signature on it, so it has an attachment. 赤城镇 (demo_other_township, demo_other_village) is outside;
宝梵镇办公室 (demo_clerk) inside.
"""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from engine import demo_data as D
from engine.core.errors import NotFoundError, ValidationError
from engine.models import AuditEvent, CaseCc, Notification, User
from tests.integration import upload_samples as S

PDF = S.pdf()  # a structurally whole PDF: uploads are checked beyond their first bytes
OUTSIDE = "赤城镇乡村振兴办(演示)的辖区不包含本案件;只能选择辖区包含"


def _counts(db, case_id: int) -> tuple[int, int, int]:
    """CC rows, notifications and audit events of the case: what a refused 抄送/委派/加签 must leave alone."""
    with db.uow() as work:
        s = work.session
        return (s.scalar(select(func.count(CaseCc.id)).where(CaseCc.case_id == case_id)),
                s.scalar(select(func.count(Notification.id)).where(Notification.case_id == case_id)),
                s.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.case_id == case_id)))


def _attachment_id(village, case_id: int) -> int:
    """A case-level file uploaded by the starter through the API (stored where the app reads it)."""
    answer = village.post(f"/api/v1/cases/{case_id}/attachments", content_type="multipart/form-data",
                          data={"file": (io.BytesIO(PDF), "评议记录.pdf", "application/pdf")})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["id"]


def _assert_sees_nothing(client, case_id: int, task_id: int, attachment_id: int) -> None:
    assert client.get(f"/api/v1/cases/{case_id}").status_code == 404
    assert client.get(f"/cases/{case_id}").status_code == 404
    assert client.get(f"/api/v1/tasks/{task_id}").status_code == 404
    assert client.get(f"/tasks/{task_id}").status_code == 404
    assert client.get(f"/api/v1/cases/{case_id}/attachments").status_code == 404
    assert client.get(f"/attachments/{attachment_id}").status_code == 404
    inbox = client.get("/api/v1/tasks?view=cc").get_json()
    assert inbox["counts"]["cc"] == 0 and inbox["cases"] == []


# ----------------------------------------------------------------------------- engine
@pytest.mark.db_snapshot("at_township_recheck")
def test_the_engine_refuses_cc_delegate_and_add_sign_to_a_user_of_another_township(db, at_township_recheck):
    case_id = at_township_recheck.value
    (row,) = db.open_tasks(case_id)
    village, township = db.actor("demo_village"), db.actor("demo_township")
    before = _counts(db, case_id)
    calls = {
        "cc": lambda w: w.operations.cc(case_id, village, ["demo_other_township"], "供参考"),
        "cc among others": lambda w: w.operations.cc(case_id, village, ["demo_clerk", "demo_other_township"]),
        "delegate": lambda w: w.operations.delegate(row.id, township, "demo_other_township", "请协助"),
        "add_sign": lambda w: w.operations.add_sign(row.id, township, ["demo_other_township"], "before", "请会签"),
    }
    for name, call in calls.items():
        with db.uow() as work, pytest.raises(ValidationError) as refused:
            call(work)
        assert refused.value.errors["to"].startswith(OUTSIDE), name
        assert "“" in refused.value.errors["to"], name  # names the region the case lies in
    with db.uow() as work, pytest.raises(ValidationError) as refused:
        work.operations.transfer(row.id, township, "demo_other_township", "请协助")
    assert refused.value.errors["to"] == "只能转办给本辖区同一岗位的人员"
    assert _counts(db, case_id) == before
    (after,) = db.open_tasks(case_id)
    assert (after.assignee_id, after.owner_id, after.delegation, after.status) == (None, None, None, row.status)
    with db.uow() as work, pytest.raises(NotFoundError):
        work.cases.get_case(case_id, db.actor("demo_other_township"))


@pytest.mark.db_snapshot("at_township_recheck")
def test_an_inactive_user_and_oneself_are_refused_as_recipients(db, at_township_recheck):
    case_id = at_township_recheck.value
    with db.uow() as work:
        work.session.scalar(select(User).where(User.username == "demo_clerk")).is_active = False
    with db.uow() as work, pytest.raises(ValidationError) as inactive:
        work.operations.cc(case_id, db.actor("demo_village"), ["demo_clerk"])
    assert inactive.value.errors["to"] == "用户不存在或已停用:demo_clerk"
    with db.uow() as work, pytest.raises(ValidationError) as oneself:
        work.operations.cc(case_id, db.actor("demo_village"), ["demo_village"])
    assert oneself.value.errors["to"] == "不能选择自己"


@pytest.mark.db_snapshot("at_township_recheck")
def test_a_cc_row_to_someone_outside_the_jurisdiction_opens_nothing(db, at_township_recheck, client_for):
    """A CC made before recipients were checked (inserted here directly) gives no view of its own."""
    case_id = at_township_recheck.value
    (row,) = db.open_tasks(case_id)
    attachment_id = _attachment_id(client_for("demo_village"), case_id)
    with db.uow() as work:
        work.session.add(CaseCc(case_id=case_id, user_id=db.actor("demo_other_township").user_id,
                                by_user_id=db.actor("demo_village").user_id, created_at=db.clock.now()))
    with db.uow() as work:
        outsider = db.actor("demo_other_township")
        with pytest.raises(NotFoundError):
            work.cases.get_case(case_id, outsider)
        assert work.inbox.cc(outsider) == [] and work.inbox.counts(outsider)["cc"] == 0
        with pytest.raises(NotFoundError):
            work.operations.read_attachment(attachment_id, outsider)
    _assert_sees_nothing(client_for("demo_other_township"), case_id, row.id, attachment_id)


# ----------------------------------------------------------------------------- API and pages
@pytest.mark.db_snapshot("at_township_recheck")
def test_an_api_cc_to_another_township_is_a_422_naming_who_may_be_chosen_and_changes_nothing(
        db, at_township_recheck, client_for, snapshot):
    case_id = at_township_recheck.value
    (row,) = db.open_tasks(case_id)
    village, township = client_for("demo_village"), client_for("demo_township")
    attachment_id = _attachment_id(village, case_id)
    before, counts = snapshot(), _counts(db, case_id)
    refused = village.post(f"/api/v1/cases/{case_id}/cc", json={"to": ["demo_other_township"], "opinion": "供参考"})
    assert refused.status_code == 422
    assert refused.get_json()["errors"]["to"].startswith(OUTSIDE)
    for path, payload in ((f"/api/v1/tasks/{row.id}/delegate", {"to": "demo_other_township"}),
                          (f"/api/v1/tasks/{row.id}/add-sign", {"to": ["demo_other_village"], "position": "before"}),
                          (f"/api/v1/tasks/{row.id}/transfer", {"to": "demo_other_township"})):
        answer = township.post(path, json=payload)
        assert answer.status_code == 422, (path, answer.get_json())
        assert "to" in answer.get_json()["errors"], path
    assert (snapshot(), _counts(db, case_id)) == (before, counts)
    _assert_sees_nothing(client_for("demo_other_township"), case_id, row.id, attachment_id)


@pytest.mark.db_snapshot("at_township_recheck")
def test_the_case_pages_cc_form_refuses_another_township_with_the_reason_and_changes_nothing(
        db, at_township_recheck, client_for, csrf_token, snapshot):
    case_id = at_township_recheck.value
    village = client_for("demo_village")
    token = csrf_token(village, f"/cases/{case_id}")
    before, counts = snapshot(), _counts(db, case_id)
    answer = village.post(f"/cases/{case_id}/cc", data={"csrf_token": token, "to": "demo_other_township",
                                                        "opinion": "供参考"}, follow_redirects=True)
    assert answer.status_code == 200
    assert "未成功:赤城镇乡村振兴办(演示)的辖区不包含本案件" in answer.get_data(as_text=True)
    assert (snapshot(), _counts(db, case_id)) == (before, counts)
    assert client_for("demo_other_township").get(f"/cases/{case_id}").status_code == 404


@pytest.mark.db_snapshot("at_township_recheck")
def test_a_cc_reader_inside_the_jurisdiction_reads_the_case_and_its_attachments_but_acts_on_nothing(
        db, at_township_recheck, client_for, snapshot):
    case_id = at_township_recheck.value
    (row,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    assert village.post(f"/api/v1/cases/{case_id}/cc", json={"to": ["demo_clerk"]}).get_json() == {"added": 1}
    clerk = client_for("demo_clerk")
    inbox = clerk.get("/api/v1/tasks?view=cc").get_json()
    assert inbox["counts"]["cc"] == 1
    assert clerk.get(f"/api/v1/cases/{case_id}").status_code == 200
    page = clerk.get(f"/cases/{case_id}").get_data(as_text=True)
    assert f'action="/tasks/{row.id}"' not in page and "data-testid=\"task-upload-hint\"" not in page
    assert 'data-testid="case-upload-form"' not in page  # case-level uploads: the starter only
    attachment_id = _attachment_id(village, case_id)
    download = clerk.get(f"/attachments/{attachment_id}")
    assert download.status_code == 200 and download.data == PDF  # a reader may read the case's files
    before = snapshot()
    assert clerk.get(f"/api/v1/tasks/{row.id}").status_code == 404  # not their task
    assert clerk.get(f"/tasks/{row.id}").status_code == 404
    completing = clerk.post(f"/api/v1/tasks/{row.id}/complete",
                            json={"action": "approve", "opinion": "同意", "data": D.TOWNSHIP_RECHECK})
    assert completing.status_code == 404
    assert snapshot() == before

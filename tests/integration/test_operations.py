"""Approval operations: 撤回, claim/unclaim, 转办, 抄送, 催办, attachments — engine and API."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from engine import demo_data as D
from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import Attachment, AuditEvent, TaskRow, TaskStatus
from engine.queries.inbox import merged_data
from tests.integration import upload_samples
from tests.integration.dates_support import dated
from web import create_app

PNG = upload_samples.png()  # real files: uploads are decoded and opened, not sniffed (issue 15)
PDF = upload_samples.pdf()


def at_township(db) -> int:
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    db.pass_notice()
    return case_id


def audit(db, action: str) -> list[AuditEvent]:
    with db.uow() as work:
        return list(work.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_the_last_approver_withdraws_while_the_next_step_is_untouched(db):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    (issuance,) = db.open_tasks(case_id)  # 出具村级公示: the notice is not issued yet
    with db.uow() as work:
        work.cases.withdraw(case_id, db.actor("demo_village"), "评议材料需补充")
    (reopened,) = db.open_tasks(case_id)
    assert reopened.spec_name == "village_review"
    with db.uow() as work:
        assert work.session.get(type(issuance), issuance.id).status == TaskStatus.cancelled
    assert [e.opinion for e in audit(db, "withdraw")] == ["评议材料需补充"]
    with db.uow() as work:  # the taken-back approval is shown as 撤回 and its data no longer counts
        rows = list(work.session.scalars(select(TaskRow).where(TaskRow.case_id == case_id).order_by(TaskRow.id)))
        (withdrawn,) = [r for r in rows if r.spec_name == "village_review" and r.status == TaskStatus.completed]
        assert withdrawn.action == "withdraw"
        assert "review_result" not in merged_data(rows)
        assert work.cases.withdrawable(case_id, db.actor("demo_village")) is None
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    db.pass_notice()
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["township_recheck"]


def test_withdraw_is_refused_once_the_next_step_has_acted(db):
    case_id = at_township(db)
    db.complete(case_id, "demo_township", data=D.TOWNSHIP_RECHECK)
    with db.uow() as work, pytest.raises(ConflictError):
        work.cases.withdraw(case_id, db.actor("demo_village"), None)
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["dept_decision"]


def test_someone_who_did_not_act_last_cannot_withdraw(db):
    case_id = at_township(db)
    with db.uow() as work, pytest.raises(ConflictError):
        work.cases.withdraw(case_id, db.actor("demo_township"), None)


def test_a_claimed_task_leaves_the_others_inboxes_and_only_the_claimant_can_complete_it(db):
    case_id = at_township(db)
    with db.uow() as work:
        colleague = work.directory.create_user("township_two", "宝梵镇第二位", "pw-123456789",
                                               [("township_officer", "510921107000")])
    (row,) = db.open_tasks(case_id)
    with db.uow() as work:
        work.operations.claim(row.id, db.actor("township_two"))
    with db.uow() as work:
        assert work.inbox.todo(db.actor("demo_township")) == []
        assert [t.id for t in work.inbox.todo(db.actor("township_two"))] == [row.id]
        with pytest.raises(ConflictError):
            work.operations.claim(row.id, db.actor("demo_township"))
    with db.uow() as work, pytest.raises(ForbiddenError):
        work.cases.complete_task(row.id, db.actor("demo_township"), "approve", "", D.TOWNSHIP_RECHECK)
    with db.uow() as work:
        work.operations.unclaim(row.id, db.actor("township_two"))
    with db.uow() as work:
        assert [t.id for t in work.inbox.todo(db.actor("demo_township"))] == [row.id]
    assert colleague.id
    assert {e.action for e in audit(db, "claim") + audit(db, "unclaim")} == {"claim", "unclaim"}


def test_transfer_goes_only_to_the_same_role_in_the_same_jurisdiction(db):
    case_id = at_township(db)
    with db.uow() as work:
        work.directory.create_user("township_two", "宝梵镇第二位", "pw-123456789", [("township_officer", "510921107000")])
    (row,) = db.open_tasks(case_id)
    with db.uow() as work, pytest.raises(ValidationError):
        work.operations.transfer(row.id, db.actor("demo_township"), "demo_other_township", "请协助")
    with db.uow() as work, pytest.raises(ValidationError):
        work.operations.transfer(row.id, db.actor("demo_township"), "demo_dept", "请协助")
    with db.uow() as work:
        work.operations.transfer(row.id, db.actor("demo_township"), "township_two", "请协助")
    with db.uow() as work:
        assert work.inbox.todo(db.actor("demo_township")) == []
        (note,) = [n for n in work.notifications.recent(db.actor("township_two").user_id) if "转办" in n.title]
        assert note.task_id == row.id
    db.complete(case_id, "township_two", data=D.TOWNSHIP_RECHECK)
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["dept_decision"]


def test_cc_reaches_only_people_whose_jurisdiction_contains_the_case_and_lists_it_under_cc(db):
    case_id = at_township(db)
    village, clerk, other = db.actor("demo_village"), db.actor("demo_clerk"), db.actor("demo_other_township")
    with db.uow() as work, pytest.raises(ValidationError) as refused:  # 赤城镇 is outside: nobody is added
        work.operations.cc(case_id, village, ["demo_clerk", "demo_other_township"], "供参考")
    assert refused.value.errors["to"].startswith("赤城镇乡村振兴办(演示)的辖区不包含本案件;只能选择辖区包含")
    with db.uow() as work:
        assert work.inbox.cc(clerk) == [] and work.inbox.cc(other) == []
        with pytest.raises(NotFoundError):
            work.cases.get_case(case_id, other)
    with db.uow() as work:
        assert work.operations.cc(case_id, village, ["demo_clerk"], "供参考") == 1
    with db.uow() as work:
        assert work.cases.get_case(case_id, clerk).id == case_id
        assert [c.id for c in work.inbox.cc(clerk)] == [case_id]
        assert work.inbox.counts(clerk)["cc"] == 1
        (row,) = db.open_tasks(case_id)
        with pytest.raises(NotFoundError):  # a reader: the task is still not theirs
            work.cases.complete_task(row.id, clerk, "approve", "", D.TOWNSHIP_RECHECK)
    with db.uow() as work, pytest.raises(ValidationError):
        work.operations.cc(case_id, village, ["nobody_here"])


def test_urge_notifies_the_holders_and_is_rate_limited(db):
    case_id = at_township(db)
    (row,) = db.open_tasks(case_id)
    with db.uow() as work:
        assert work.operations.urge(row.id, db.actor("demo_village"), "请尽快复核") == 1
    with db.uow() as work, pytest.raises(ConflictError):
        work.operations.urge(row.id, db.actor("demo_village"))
    db.clock.advance(timedelta(hours=2))
    with db.uow() as work:
        assert work.operations.urge(row.id, db.actor("demo_village")) == 1
    with db.uow() as work:
        urges = [n for n in work.notifications.recent(db.actor("demo_township").user_id) if n.kind == "urge"]
    assert len(urges) == 2
    with db.uow() as work, pytest.raises(NotFoundError):
        work.operations.urge(row.id, db.actor("demo_other_village"))


def test_attachments_are_stored_by_hash_shown_to_later_approvers_and_never_replaced(db):
    case_id = at_township(db)
    with db.uow() as work:
        first = work.operations.add_attachment(case_id, db.actor("demo_village"), "房屋照片.png", PNG, "image/png")
        second = work.operations.add_attachment(case_id, db.actor("demo_village"), "房屋照片.png", PNG, "image/png")
    assert first.id != second.id and first.sha256 == second.sha256
    stored = list(db.storage_dir.rglob(first.sha256))
    assert len(stored) == 1
    with db.uow() as work:
        attachment, content = work.operations.read_attachment(first.id, db.actor("demo_dept"))
        assert content == PNG and attachment.file_name == "房屋照片.png"
        with pytest.raises(NotFoundError):
            work.operations.read_attachment(first.id, db.actor("demo_other_township"))
    with db.uow() as work, pytest.raises(Exception, match="append-only"):
        work.session.execute(text("UPDATE attachment SET file_name = 'x'"))


@pytest.mark.parametrize(("name", "content", "content_type"), [
    ("大文件.pdf", b"%PDF-" + b"0" * (10 * 1024 * 1024), "application/pdf"),
    ("脚本.exe", b"MZ\x90\x00", "application/octet-stream"),
    ("伪装.png", b"<script>alert(1)</script>", "image/png"),
    ("空.pdf", b"", "application/pdf"),
])
def test_an_attachment_too_large_or_of_a_wrong_type_is_refused_and_nothing_is_stored(db, name, content, content_type):
    case_id = at_township(db)
    stored_before = sorted(db.storage_dir.rglob("*"))  # the household's signature of 入户核查
    with db.uow() as work, pytest.raises(ValidationError):
        work.operations.add_attachment(case_id, db.actor("demo_village"), name, content, content_type)
    with db.uow() as work:
        assert work.session.scalar(select(func.count(Attachment.id)).where(Attachment.kind != "signature")) == 0
    assert sorted(db.storage_dir.rglob("*")) == stored_before


@pytest.fixture
def api_app(db):
    app = create_app({"XIANGFLOW_DATABASE_URL": db.url, "XIANGFLOW_SCHEDULER": False, "XIANGFLOW_CLOCK": db.clock,
                      "XIANGFLOW_STORAGE_DIR": str(db.storage_dir), "TESTING": True})
    yield app
    app.extensions["xiangflow"].engine.dispose()


def test_the_operations_work_through_the_json_api(db, api_app):
    app = api_app
    case_id = at_township(db)
    (row,) = db.open_tasks(case_id)
    village, township = app.test_client(), app.test_client()
    assert village.post("/api/v1/session", json={"username": "demo_village", "password": "demo12345"}).status_code == 200
    assert township.post("/api/v1/session", json={"username": "demo_township", "password": "demo12345"}).status_code == 200
    assert village.post(f"/api/v1/tasks/{row.id}/urge", json={"opinion": "请尽快"}).json == {"notified": 1}
    assert village.post(f"/api/v1/tasks/{row.id}/urge", json={}).status_code == 409
    assert township.post(f"/api/v1/tasks/{row.id}/claim", json={}).status_code == 200
    assert township.post(f"/api/v1/tasks/{row.id}/unclaim", json={}).status_code == 200
    res = village.post(f"/api/v1/cases/{case_id}/cc", json={"to": ["demo_clerk"], "opinion": "备案"})
    assert res.json == {"added": 1}
    res = village.post(f"/api/v1/cases/{case_id}/attachments",
                       data={"file": (io.BytesIO(PDF), "评议记录.pdf", "application/pdf")},
                       content_type="multipart/form-data")
    assert res.status_code == 201 and res.json["file_name"] == "评议记录.pdf"
    listed = township.get(f"/api/v1/cases/{case_id}/attachments").json["attachments"]
    assert [a["sha256"] for a in listed if a["kind"] == "file"] == [res.json["sha256"]]
    assert [a["kind"] for a in listed] == ["signature", "file"]  # 入户核查's 农户签字 came first
    # 民主评议 can be withdrawn until its notice is issued (here: already issued, so refused)
    assert village.post(f"/api/v1/cases/{case_id}/withdraw", json={"opinion": "补充材料"}).status_code == 409
    fresh = db.start_case()
    db.complete(fresh, "demo_village", data=dated(db, D.HOUSEHOLD_CHECK))  # started after the clock moved
    db.complete(fresh, "demo_village", data=dated(db, D.VILLAGE_REVIEW))
    res = village.post(f"/api/v1/cases/{fresh}/withdraw", json={"opinion": "补充材料"})
    assert res.status_code == 200 and [s["step_id"] for s in res.json["current_steps"]] == ["village_review"]
    assert village.post(f"/api/v1/cases/{fresh}/withdraw", json={}).status_code == 409

"""委派 (delegate → resolve → the owner decides) and 加签 (co-signers before or after the holder):
engine, JSON API and the task page's HTML forms.

The step under test is 民主评议 (village_review, demo_village's), the first step after 入户核查, so the
tests do not depend on how the 四步法 path continues after it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from engine import demo_data as D
from engine.core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import AuditEvent, CaseStatus, TaskRow, TaskStatus

STEP = "village_review"


def at_review(db) -> int:
    """A 四步法 exit case waiting at 民主评议 (demo_village's step)."""
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    assert [t.spec_name for t in db.open_tasks(case_id)] == [STEP]
    return case_id


def rows(db, case_id: int) -> list[TaskRow]:
    with db.uow() as work:
        return list(work.session.scalars(select(TaskRow).where(TaskRow.case_id == case_id).order_by(TaskRow.id)))


def row_states(db, case_id: int) -> list[tuple[str, str, str | None, int | None]]:
    """(step, status, action, parent row id) of every task row of the case, in order."""
    return [(r.spec_name, r.status.value, r.action, r.parent_task_id) for r in rows(db, case_id)]


def actions(db, case_id: int) -> list[tuple[str, str | None]]:
    with db.uow() as work:
        return [(e.action, e.user.username if e.user else None) for e in work.session.scalars(
            select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.id))]


def todo_ids(db, username: str) -> list[int]:
    with db.uow() as work:
        return [t.id for t in work.inbox.todo(db.actor(username))]


def second_village_cadre(db) -> None:
    village = db.actor("demo_village").grants[0].region_code
    with db.uow() as work:
        work.directory.create_user("village_two", "本村第二位村干部", "pw-123456789", [("village_cadre", village)])


def moved_past_review_once(db, case_id: int) -> None:
    """The review step is done exactly once and whatever follows it is open at most once."""
    states = row_states(db, case_id)
    assert [s for s in states if s[0] == STEP and s[3] is None] == [(STEP, "completed", "approve", None)]
    open_steps = [s[0] for s in states if s[1] == "open"]
    assert STEP not in open_steps and len(open_steps) == len(set(open_steps))
    assert STEP in db.case(case_id).path


# ----------------------------------------------------------------------------------------- 委派
def test_a_delegate_resolves_and_the_owner_approves_with_the_draft_prefilled(db):
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    with db.uow() as work:
        work.operations.delegate(task.id, db.actor("demo_village"), "demo_clerk", "请核对材料")
    assert todo_ids(db, "demo_clerk") == [task.id]
    assert todo_ids(db, "demo_village") == []
    with db.uow() as work:
        work.operations.resolve(task.id, db.actor("demo_clerk"), "材料齐全,建议通过",
                                {**D.VILLAGE_REVIEW, "not_a_field": "dropped"})
    assert todo_ids(db, "demo_clerk") == []
    assert todo_ids(db, "demo_village") == [task.id]
    with db.uow() as work:
        row = work.session.get(TaskRow, task.id)
        assert (row.delegation, row.owner_id, row.assignee_id) == ("resolved", row.owner_id, row.owner_id)
        assert row.pending["draft"]["opinion"] == "材料齐全,建议通过"
        _schema, prefilled = work.cases.task_form(row)
        assert prefilled == D.VILLAGE_REVIEW
        owner = work.notifications.recent(db.actor("demo_village").user_id)
        assert any("委派任务已处理完成" in n.title for n in owner)
        assert any("委派给您" in n.title for n in work.notifications.recent(db.actor("demo_clerk").user_id))
    with db.uow() as work:
        work.cases.complete_task(task.id, db.actor("demo_village"), "approve", "同意", prefilled)
    moved_past_review_once(db, case_id)
    assert [a for a in actions(db, case_id) if a[0] in ("delegate", "resolve", "approve")][-3:] == [
        ("delegate", "demo_village"), ("resolve", "demo_clerk"), ("approve", "demo_village")]


def test_the_delegate_may_only_resolve_and_the_owner_waits_until_it_is_handed_back(db, snapshot):
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    with db.uow() as work:
        work.operations.delegate(task.id, db.actor("demo_village"), "demo_clerk", None)
    before = snapshot()
    for who, action in (("demo_clerk", "approve"), ("demo_clerk", "reject"), ("demo_clerk", "return"),
                        ("demo_village", "approve")):
        with db.uow() as work, pytest.raises(ForbiddenError):
            work.cases.complete_task(task.id, db.actor(who), action, "意见", D.VILLAGE_REVIEW)
    with db.uow() as work, pytest.raises(ForbiddenError):
        work.operations.resolve(task.id, db.actor("demo_village"), "我自己处理", {})
    with db.uow() as work, pytest.raises(ForbiddenError):
        work.operations.transfer(task.id, db.actor("demo_clerk"), "demo_village", None)
    with db.uow() as work, pytest.raises(ForbiddenError):
        work.operations.add_sign(task.id, db.actor("demo_clerk"), ["demo_dept"], "before", None)
    with db.uow() as work, pytest.raises(ValidationError) as err:
        work.operations.resolve(task.id, db.actor("demo_clerk"), "  ", {})
    assert "opinion" in err.value.errors
    assert snapshot() == before


def test_delegation_goes_only_to_someone_whose_jurisdiction_contains_the_case(db, snapshot):
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    before = snapshot()
    for target in ("demo_other_township", "demo_village", "nobody_here", ""):
        with db.uow() as work, pytest.raises(ValidationError) as err:
            work.operations.delegate(task.id, db.actor("demo_village"), target, "请协助")
        assert "to" in err.value.errors
    with db.uow() as work, pytest.raises(NotFoundError):  # another township's officer does not see the task
        work.operations.delegate(task.id, db.actor("demo_other_township"), "demo_clerk", None)
    with db.uow() as work, pytest.raises(NotFoundError):  # sees the case, does not hold the task
        work.operations.delegate(task.id, db.actor("demo_township"), "demo_clerk", None)
    assert snapshot() == before


# ----------------------------------------------------------------------------------------- 加签
def test_before_signers_agree_first_then_the_holder_completes_the_step(db):
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    with db.uow() as work:
        (child,) = work.operations.add_sign(task.id, db.actor("demo_village"), ["demo_clerk"], "before", "请先会商")
        child_id = child.id
    assert todo_ids(db, "demo_village") == []  # the task waits, in nobody's inbox
    assert todo_ids(db, "demo_clerk") == [child_id]
    with db.uow() as work, pytest.raises(ConflictError):
        work.cases.complete_task(task.id, db.actor("demo_village"), "approve", "", D.VILLAGE_REVIEW)
    with db.uow() as work:  # the co-signer agrees with an opinion and no form data
        work.cases.complete_task(child_id, db.actor("demo_clerk"), "approve", "同意复核", {})
    assert row_states(db, case_id)[-2:] == [(STEP, "open", None, None), (STEP, "completed", "approve", task.id)]
    assert todo_ids(db, "demo_village") == [task.id]
    with db.uow() as work:
        work.cases.complete_task(task.id, db.actor("demo_village"), "approve", "同意", D.VILLAGE_REVIEW)
    moved_past_review_once(db, case_id)
    history = actions(db, case_id)
    assert ("add_sign", "demo_village") in history and ("sign_approve", "demo_clerk") in history


def test_after_sign_holds_the_decision_until_every_co_signer_agrees_and_advances_once(db):
    second_village_cadre(db)
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    with db.uow() as work:
        children = work.operations.add_sign(task.id, db.actor("demo_village"), ["village_two", "demo_clerk"],
                                            "after", "本人同意,请加签", D.VILLAGE_REVIEW)
        first, second = (c.id for c in children)
    with db.uow() as work:
        parent = work.session.get(TaskRow, task.id)
        assert parent.status == TaskStatus.waiting
        assert parent.pending["decision"]["data"] == D.VILLAGE_REVIEW
    assert todo_ids(db, "village_two") == [first] and todo_ids(db, "demo_village") == []
    lock = db.case(case_id).lock_version
    with db.uow() as work:
        work.cases.complete_task(first, db.actor("village_two"), "approve", "同意", {})
    assert db.case(case_id).lock_version == lock  # one agreement of two: the workflow did not move
    assert [r.id for r in db.open_tasks(case_id)] == [second]
    with db.uow() as work:  # someone else cannot answer for the second co-signer
        with pytest.raises(ForbiddenError):
            work.cases.complete_task(second, db.actor("village_two"), "approve", "同意", {})
    with db.uow() as work:
        work.cases.complete_task(second, db.actor("demo_clerk"), "approve", "同意", {})
    assert db.case(case_id).lock_version == lock + 1  # the held decision ran, once
    assert [s for s in row_states(db, case_id) if s[0] == STEP] == [
        (STEP, "completed", "approve", None), (STEP, "completed", "approve", task.id),
        (STEP, "completed", "approve", task.id)]
    moved_past_review_once(db, case_id)
    with db.uow() as work:
        parent = work.session.get(TaskRow, task.id)
        assert parent.completed_by.username == "demo_village" and parent.data == D.VILLAGE_REVIEW
        assert parent.opinion == "本人同意,请加签"
    approvals = [a for a in actions(db, case_id) if a[0] in ("add_sign", "sign_approve", "approve")][-4:]
    assert approvals == [("add_sign", "demo_village"), ("sign_approve", "village_two"),
                         ("sign_approve", "demo_clerk"), ("approve", "demo_village")]


def test_an_after_sign_with_invalid_form_data_is_refused_and_changes_nothing(db, snapshot):
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    before = snapshot()
    with db.uow() as work, pytest.raises(ValidationError):
        work.operations.add_sign(task.id, db.actor("demo_village"), ["demo_clerk"], "after", "同意", {})
    with db.uow() as work, pytest.raises(ValidationError) as err:
        work.operations.add_sign(task.id, db.actor("demo_village"), ["demo_clerk"], "sideways", None)
    assert "position" in err.value.errors
    with db.uow() as work, pytest.raises(ValidationError):
        work.operations.add_sign(task.id, db.actor("demo_village"), ["demo_other_village"], "before", None)
    with db.uow() as work, pytest.raises(ValidationError):
        work.operations.add_sign(task.id, db.actor("demo_village"), [], "before", None)
    assert snapshot() == before


def test_a_co_signer_rejects_and_the_case_is_rejected_with_every_row_closed(db):
    second_village_cadre(db)
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    with db.uow() as work:
        first, second = (c.id for c in work.operations.add_sign(
            task.id, db.actor("demo_village"), ["demo_clerk", "village_two"], "after", "同意", D.VILLAGE_REVIEW))
    with db.uow() as work, pytest.raises(ValidationError):  # a rejection needs a reason
        work.cases.complete_task(first, db.actor("demo_clerk"), "reject", "", {})
    with db.uow() as work:
        work.cases.complete_task(first, db.actor("demo_clerk"), "reject", "收入核算有误", {})
    assert db.case(case_id).status == CaseStatus.rejected
    assert db.case(case_id).outcome_reason == "收入核算有误"
    assert db.open_tasks(case_id) == []
    assert {(r.id, r.status.value) for r in rows(db, case_id) if r.id in (task.id, first, second)} == {
        (task.id, "cancelled"), (first, "completed"), (second, "cancelled")}


def test_the_holder_returns_while_before_signers_are_pending_and_the_co_signers_rows_are_cancelled(db):
    second_village_cadre(db)
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    with db.uow() as work:
        first, second = (c.id for c in work.operations.add_sign(
            task.id, db.actor("demo_village"), ["demo_clerk", "village_two"], "before", None))
    with db.uow() as work:
        work.cases.complete_task(first, db.actor("demo_clerk"), "approve", "同意", {})
    assert [r.id for r in db.open_tasks(case_id)] == [second]
    with db.uow() as work:
        work.cases.complete_task(task.id, db.actor("demo_village"), "return", "核查记录不全", {},
                                 return_to="household_check")
    after = rows(db, case_id)
    assert {(r.id, r.status.value, r.action) for r in after if r.id in (task.id, first, second)} == {
        (task.id, "completed", "return"), (first, "completed", "approve"), (second, "cancelled", None)}
    (reopened,) = db.open_tasks(case_id)
    assert reopened.spec_name == "household_check"
    assert [r.spec_name for r in after if r.status == TaskStatus.open] == ["household_check"]
    assert second not in todo_ids(db, "village_two") and reopened.id in todo_ids(db, "village_two")
    # the case runs on normally afterwards: the step opens once, for its role, with no co-signers left over
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    (again,) = db.open_tasks(case_id)
    assert (again.spec_name, again.parent_task_id, again.assignee_id) == (STEP, None, None)


def test_a_co_signer_returns_the_case_and_the_held_decision_is_dropped(db):
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    with db.uow() as work:
        (child,) = work.operations.add_sign(task.id, db.actor("demo_village"), ["demo_dept"], "after", "同意",
                                            D.VILLAGE_REVIEW)
        child_id = child.id
    assert todo_ids(db, "demo_dept") == [child_id]
    with db.uow() as work:
        work.cases.complete_task(child_id, db.actor("demo_dept"), "return", "请村里补充", {})
    states = row_states(db, case_id)
    assert (STEP, "cancelled", None, None) in states
    assert (STEP, "completed", "return", task.id) in states
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["household_check"]
    assert db.case(case_id).return_count == 1


def test_a_waiting_task_cannot_be_claimed_transferred_delegated_or_withdrawn_around(db, snapshot):
    second_village_cadre(db)
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    with db.uow() as work:
        (child,) = work.operations.add_sign(task.id, db.actor("demo_village"), ["demo_clerk"], "before", None)
        child_id = child.id
        assert work.cases.withdrawable(case_id, db.actor("demo_village")) is None
    before = snapshot()
    with db.uow() as work, pytest.raises(ConflictError):
        work.operations.claim(task.id, db.actor("village_two"))
    with db.uow() as work, pytest.raises(ForbiddenError):
        work.operations.transfer(child_id, db.actor("demo_village"), "village_two", None)
    with db.uow() as work, pytest.raises(ForbiddenError):
        work.operations.delegate(child_id, db.actor("demo_clerk"), "demo_dept", None)
    with db.uow() as work, pytest.raises(ForbiddenError):  # another holder of the role is not the co-signer
        work.cases.complete_task(child_id, db.actor("village_two"), "approve", "", {})
    with db.uow() as work, pytest.raises(ConflictError):
        work.cases.withdraw(case_id, db.actor("demo_village"), None)
    assert snapshot() == before


# ----------------------------------------------------------------------------------------- JSON API
def test_delegate_resolve_and_approve_through_the_json_api(db, client_for):
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    village, clerk = client_for("demo_village"), client_for("demo_clerk")
    assert sorted(village.get(f"/api/v1/tasks/{task.id}").json["operations"]) == ["add_sign", "delegate"]
    res = village.post(f"/api/v1/tasks/{task.id}/delegate", json={"to": "demo_clerk", "opinion": "请核对"})
    assert res.status_code == 200, res.json
    assert [t["id"] for t in clerk.get("/api/v1/tasks?view=todo").json["tasks"]] == [task.id]
    detail = clerk.get(f"/api/v1/tasks/{task.id}").json
    assert (detail["actions"], detail["operations"], detail["delegation"]) == ([], ["resolve"], "pending")
    res = clerk.post(f"/api/v1/tasks/{task.id}/complete", json={"action": "approve", "data": D.VILLAGE_REVIEW})
    assert res.status_code == 403
    res = clerk.post(f"/api/v1/tasks/{task.id}/resolve", json={"opinion": "已核对", "data": D.VILLAGE_REVIEW})
    assert res.status_code == 200, res.json
    detail = village.get(f"/api/v1/tasks/{task.id}").json
    assert detail["data"] == D.VILLAGE_REVIEW and detail["delegation"] == "resolved"
    assert "approve" in detail["actions"]
    res = village.post(f"/api/v1/tasks/{task.id}/complete", json={"action": "approve", "opinion": "同意",
                                                                  "data": detail["data"]})
    assert res.status_code == 200, res.json
    history = [(h["action"], h["user"], h["opinion"]) for h in res.json["history"]][-3:]
    assert history == [("delegate", "demo_village", "请核对"), ("resolve", "demo_clerk", "已核对"),
                       ("approve", "demo_village", "同意")]
    moved_past_review_once(db, case_id)


def test_after_sign_through_the_json_api(db, client_for):
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    village, township = client_for("demo_village"), client_for("demo_township")
    res = village.post(f"/api/v1/tasks/{task.id}/add-sign", json={
        "to": ["demo_township"], "position": "after", "opinion": "同意", "data": D.VILLAGE_REVIEW})
    assert res.status_code == 200, res.json
    (child,) = [s for s in res.json["current_steps"]]
    assert child["task_id"] != task.id
    detail = township.get(f"/api/v1/tasks/{child['task_id']}").json
    assert (detail["parent_task_id"], detail["sign_position"], detail["operations"]) == (task.id, "after", [])
    assert village.get(f"/api/v1/tasks/{task.id}").json["status"] == "waiting"
    res = township.post(f"/api/v1/tasks/{child['task_id']}/complete", json={"action": "approve", "opinion": "无异议"})
    assert res.status_code == 200, res.json
    assert [(h["action"], h["user"]) for h in res.json["history"]][-3:] == [
        ("add_sign", "demo_village"), ("sign_approve", "demo_township"), ("approve", "demo_village")]
    moved_past_review_once(db, case_id)


def test_forged_delegate_resolve_and_add_sign_requests_change_nothing(db, client_for, snapshot):
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    other, township, clerk = (client_for(u) for u in ("demo_other_township", "demo_township", "demo_clerk"))
    before = snapshot()
    # another region's user: the task does not exist for them
    assert other.post(f"/api/v1/tasks/{task.id}/delegate", json={"to": "demo_other_village"}).status_code == 404
    assert other.post(f"/api/v1/tasks/{task.id}/add-sign", json={"to": ["demo_other_village"],
                                                                  "position": "before"}).status_code == 404
    assert other.post(f"/api/v1/tasks/{task.id}/resolve", json={"opinion": "x"}).status_code == 404
    # sees the case but does not hold the task
    assert township.post(f"/api/v1/tasks/{task.id}/delegate", json={"to": "demo_clerk"}).status_code == 404
    # bad bodies
    village = client_for("demo_village")
    assert village.post(f"/api/v1/tasks/{task.id}/add-sign", json={"to": "demo_clerk",
                                                                    "position": "before"}).status_code == 422
    assert village.post(f"/api/v1/tasks/{task.id}/add-sign", data="to=demo_clerk").status_code == 415
    assert village.post(f"/api/v1/tasks/{task.id}/delegate", json={"to": "demo_clerk"},
                        headers={"Origin": "https://evil.example"}).status_code == 403
    assert snapshot() == before
    # once delegated, the owner cannot resolve and the delegate cannot delegate further or add co-signers
    assert village.post(f"/api/v1/tasks/{task.id}/delegate", json={"to": "demo_clerk"}).status_code == 200
    before = snapshot()
    assert village.post(f"/api/v1/tasks/{task.id}/resolve", json={"opinion": "x"}).status_code == 403
    assert clerk.post(f"/api/v1/tasks/{task.id}/delegate", json={"to": "demo_dept"}).status_code == 403
    assert clerk.post(f"/api/v1/tasks/{task.id}/add-sign", json={"to": ["demo_dept"],
                                                                  "position": "before"}).status_code == 403
    assert snapshot() == before


# ----------------------------------------------------------------------------------------- HTML forms
def test_the_task_page_forms_delegate_and_add_sign_with_csrf(db, client_for, csrf_token, snapshot):
    case_id = at_review(db)
    (task,) = db.open_tasks(case_id)
    village = client_for("demo_village")
    page = village.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "委派" in page and "加签" in page and "前加签" in page and "后加签" in page
    before = snapshot()
    assert village.post(f"/tasks/{task.id}/delegate", data={"delegate_to": "demo_clerk"}).status_code == 400
    assert snapshot() == before
    token = csrf_token(village, f"/tasks/{task.id}")
    res = village.post(f"/tasks/{task.id}/add-sign", data={
        "csrf_token": token, "sign_position": "before", "sign_to": "demo_clerk demo_township", "opinion": "请会商"})
    assert res.status_code == 302
    children = [r for r in rows(db, case_id) if r.parent_task_id == task.id]
    assert sorted(r.assignee.username for r in children) == ["demo_clerk", "demo_township"]
    clerk = client_for("demo_clerk")
    page = clerk.get(f"/tasks/{children[0].id}").get_data(as_text=True)
    assert "加签(前加签)" in page and 'value="approve"' in page and "处理完成并交还" not in page
    case_page = village.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "等待加签人处理" in case_page

"""批量审批: a step with ``batchApproval="true"`` (四步法 镇复核) lets its holder approve several tasks with one
opinion; each is its own audited completion, a task that cannot go through is reported on its own and the
others still do; a step without the property, mixed steps, or another township's task are refused whole."""

from __future__ import annotations

from sqlalchemy import func, select

from engine import demo_data as D
from engine.core.errors import NotFoundError, ValidationError
from engine.models import AuditEvent, TaskStatus

OPINION = "材料齐全,复核无误"


def _recheck_tasks(db, exit_case, count=3):
    households = []
    with db.uow() as work:
        from engine.models import Subject
        actor = db.actor("demo_village")
        households = [s.name for s in work.session.scalars(select(Subject).where(Subject.kind == "household")
                                                            .order_by(Subject.id)) if actor.covers(s.region_code)]
    # all started on one day and through one 村级公示 (their dates lie in their cases: not before the start)
    case_ids = [exit_case(0, household=name) for name in households[:count]]
    for case_id in case_ids:
        db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
        db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    assert db.pass_notice() == count
    rows = []
    for case_id in case_ids:
        (row,) = db.open_tasks(case_id)
        assert row.spec_name == "township_recheck"
        rows.append(row)
    return rows


def _approvals(db, task_id):
    with db.uow() as work:
        return work.session.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.task_id == task_id, AuditEvent.action == "approve"))


def test_three_tasks_approved_with_one_opinion_each_its_own_completion(db, exit_case):
    rows = _recheck_tasks(db, exit_case)
    with db.uow() as work:
        outcomes = work.batch.approve([r.id for r in rows], db.actor("demo_township"), OPINION,
                                      D.TOWNSHIP_RECHECK, client_addr="127.0.0.1")
    assert [o.ok for o in outcomes] == [True, True, True]
    for row in rows:
        assert _approvals(db, row.id) == 1
        (nxt,) = db.open_tasks(row.case_id)
        assert nxt.spec_name == "dept_decision"
        with db.uow() as work:
            from engine.models import TaskRow
            done = work.session.get(TaskRow, row.id)
            assert done.status == TaskStatus.completed and done.opinion == OPINION


def test_a_task_taken_meanwhile_is_reported_and_the_others_go_through(db, exit_case):
    rows = _recheck_tasks(db, exit_case)
    db.complete(rows[1].case_id, "demo_township", data=D.TOWNSHIP_RECHECK)  # done on its own page first
    with db.uow() as work:
        outcomes = work.batch.approve([r.id for r in rows], db.actor("demo_township"), OPINION, D.TOWNSHIP_RECHECK)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert "已" in outcomes[1].message and outcomes[1].task_id == rows[1].id
    assert _approvals(db, rows[0].id) == 1 and _approvals(db, rows[2].id) == 1


def test_bad_data_is_refused_for_every_task_and_nothing_is_done(db, exit_case):
    rows = _recheck_tasks(db, exit_case, count=2)
    with db.uow() as work:
        outcomes = work.batch.approve([r.id for r in rows], db.actor("demo_township"), OPINION, {})
    assert not any(o.ok for o in outcomes) and all(o.message for o in outcomes)
    assert all(_approvals(db, r.id) == 0 for r in rows)
    assert all(db.open_tasks(r.case_id)[0].spec_name == "township_recheck" for r in rows)


def test_a_step_without_batch_approval_and_foreign_tasks_are_refused(db, exit_case):
    rows = _recheck_tasks(db, exit_case, count=1)
    (check,) = db.open_tasks(exit_case(0))  # 入户核查 (another household: one running case each): no batchApproval
    with db.uow() as work:
        try:
            work.batch.selection([check.id], db.actor("demo_village"))
            raise AssertionError("入户核查 was accepted for a batch")
        except ValidationError as exc:
            assert "不能批量审批" in exc.errors["task_ids"]
        try:
            work.batch.selection([rows[0].id, check.id], db.actor("demo_township"))
            raise AssertionError("a task of another role was accepted")
        except (ValidationError, NotFoundError):
            pass
        try:
            work.batch.approve([rows[0].id], db.actor("demo_other_township"), OPINION, D.TOWNSHIP_RECHECK)
            raise AssertionError("another township approved")
        except NotFoundError:
            pass
    assert _approvals(db, rows[0].id) == 0


def test_the_batch_page_and_its_result_over_http(db, exit_case, client_for, csrf_token):
    rows = _recheck_tasks(db, exit_case)
    township = client_for("demo_township")
    query = "&".join(f"task_ids={r.id}" for r in rows)
    page = township.get(f"/inbox/batch?{query}")
    assert page.status_code == 200
    assert page.get_data(as_text=True).count('data-testid="batch-task"') == 3
    inbox = township.get("/").get_data(as_text=True)
    assert inbox.count('name="task_ids"') == 3  # the inbox offers the three for selection
    token = csrf_token(township, f"/inbox/batch?{query}")
    form = {"csrf_token": token, "task_ids": [str(r.id) for r in rows], "opinion": OPINION,
            **{k: ("true" if v is True else str(v)) for k, v in D.TOWNSHIP_RECHECK.items()}}
    result = township.post("/inbox/batch", data=form)
    assert result.status_code == 200, result.get_data(as_text=True)[:500]
    text = result.get_data(as_text=True)
    assert "已通过 3 项" in text and text.count('data-testid="batch-result" class="ok"') == 3
    assert township.get("/inbox/batch?task_ids=abc").status_code == 422


def test_batch_approval_through_the_api(db, exit_case, client_for):
    rows = _recheck_tasks(db, exit_case, count=2)
    township = client_for("demo_township")
    answer = township.post("/api/v1/tasks/batch-approve",
                           json={"task_ids": [r.id for r in rows], "opinion": OPINION, "data": D.TOWNSHIP_RECHECK})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["approved"] == 2 and body["failed"] == 0
    assert [r["task_id"] for r in body["results"]] == [r.id for r in rows]
    for bad in ({"task_ids": "1"}, {"task_ids": [2**40]}, {"task_ids": [True]}, {"task_ids": []},
                {"task_ids": [rows[0].id], "data": []}):
        assert township.post("/api/v1/tasks/batch-approve", json=bad).status_code == 422, bad

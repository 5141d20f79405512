"""The inbox, the task list API and the case page run a fixed number of SQL statements, however many
rows they show (no query per row: a listed task's case is loaded for the whole page at once)."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.engine.default import CACHE_HIT

from engine import demo_data as D
from engine.core.errors import ConflictError
from engine.models import Case, Notification, Subject, TaskRow, TaskStatus
from engine.models.audit import AuditEvent
from tests.integration.statements_support import counted

PAGES = ("/", "/?view=done", "/api/v1/tasks", "/api/v1/tasks?view=done")


def _statements(app, client, path: str) -> int:
    with counted(app.extensions["xiangflow"].engine) as statements:
        response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return len(statements)


def _households(db, count: int) -> list[int]:
    actor = db.actor("demo_village")
    with db.uow() as work:
        ids = [s.id for s in work.session.scalars(select(Subject).where(Subject.kind == "household")
                                                  .order_by(Subject.id)) if actor.covers(s.region_code)]
    assert len(ids) >= count
    return ids[:count]


def _case_past_household_check(db, subject_id: int) -> int:
    case_id = db.start_case(subject_id=subject_id)
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    return case_id


def test_inbox_tabs_and_task_api_issue_as_many_statements_for_four_tasks_as_for_one(db, app, client_for):
    first, *others = _households(db, 4)
    _case_past_household_check(db, first)
    client = client_for("demo_village")
    one = {path: _statements(app, client, path) for path in PAGES}
    for subject_id in others:
        _case_past_household_check(db, subject_id)
    four = {path: _statements(app, client, path) for path in PAGES}
    assert "已办" in client.get("/?view=done").get_data(as_text=True)
    assert len(client.get("/api/v1/tasks").get_json()["tasks"]) == 4
    assert four == one


def test_case_page_issues_as_many_statements_after_a_return_and_resubmit_as_before(db, app, client_for):
    (subject_id,) = _households(db, 1)
    case_id = _case_past_household_check(db, subject_id)
    client = client_for("demo_village")
    before = _statements(app, client, f"/cases/{case_id}")
    # 民主评议 returns the case to 入户核查, which is done again: two more task rows, events, a signature
    db.complete(case_id, "demo_village", action="return", opinion="请补充收入证明")
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["village_review"]
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert page.count("请补充收入证明") >= 1
    assert _statements(app, client, f"/cases/{case_id}") == before


def test_completing_a_task_runs_at_most_seven_statements(db):
    """A completion through the mutation pipeline: the task read with its case locked, the task row and the
    case saved (compare-and-set), the next task row and its holders' notifications, the audit row — plus,
    on 民主评议, the earlier steps' data its date rule compares with."""
    (subject_id,) = _households(db, 1)
    case_id = _case_past_household_check(db, subject_id)
    (row,) = db.open_tasks(case_id)
    assert row.spec_name == "village_review"
    village = db.actor("demo_village")
    with counted(db.engine) as statements, db.uow() as work:
        work.cases.complete_task(row.id, village, "approve", "同意", D.VILLAGE_REVIEW)
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["issue_village_notice"]
    assert len(statements) <= 7, "\n".join(statements)


def test_a_completion_compiles_no_statement_the_second_time(db):
    """Every statement of a completion comes from SQLAlchemy's compiled cache once a first completion of the
    same step ran: a statement that cannot be cached (e.g. a multi-row VALUES, which SQLAlchemy never caches)
    is compiled again on every completion, milliseconds of CPU each. Checked for the signed 入户核查 (two
    history events in the save) and 民主评议 (one)."""
    first, second = _households(db, 2)
    cases = [db.start_case(subject_id=subject_id) for subject_id in (first, second)]
    village = db.actor("demo_village")
    missed: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if context is not None and context.compiled is not None and context.cache_hit is not CACHE_HIT:
            missed.append(statement)

    for step, data in (("household_check", D.HOUSEHOLD_CHECK), ("village_review", D.VILLAGE_REVIEW)):
        for n, case_id in enumerate(cases):
            (row,) = db.open_tasks(case_id)
            assert row.spec_name == step
            if n:
                event.listen(db.engine, "before_cursor_execute", note)
            try:
                with db.uow() as work:
                    if step == "household_check":
                        work.signatures.complete_signed(row.id, village, D.signature_png(case_id), "approve", "同意",
                                                        data)
                    else:
                        work.cases.complete_task(row.id, village, "approve", "同意", data)
            finally:
                if n:
                    event.remove(db.engine, "before_cursor_execute", note)
    assert [t.spec_name for t in db.open_tasks(cases[1])] == ["issue_village_notice"]
    assert missed == [], "\n\n".join(missed)


def _postgresql_only(db) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the combined save is PostgreSQL's (SQLite has no data-modifying WITH)")


def test_on_postgresql_a_completion_saves_task_row_case_and_audit_row_in_one_statement(db):
    """PostgreSQL: the task row's UPDATE, the case's compare-and-set and the audit row travel in one statement,
    the next task row and its holders' notifications in another (data-modifying WITH): four statements for
    民主评议, and every write is there."""
    _postgresql_only(db)
    (subject_id,) = _households(db, 1)
    case_id = _case_past_household_check(db, subject_id)
    (row,) = db.open_tasks(case_id)
    village = db.actor("demo_village")
    with counted(db.engine) as statements, db.uow() as work:
        work.cases.complete_task(row.id, village, "approve", "同意", D.VILLAGE_REVIEW)
    assert len(statements) <= 4, "\n".join(statements)
    (opened,) = db.open_tasks(case_id)
    with db.uow() as work:
        told = work.session.scalars(select(Notification).where(Notification.task_id == opened.id)).all()
        assert told and {n.title for n in told} == {f"新待办:{opened.title}"}
        assert {n.case_id for n in told} == {case_id}
        done = work.session.get(TaskRow, row.id)
        assert (done.status, done.action, done.opinion) == (TaskStatus.completed, "approve", "同意")
        case = work.session.get(Case, case_id)
        assert case.lock_version == 3 and "village_review" in case.path
        last = work.session.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id)
                                    .order_by(AuditEvent.id.desc())).first()
        assert (last.action, last.task_id, last.opinion) == ("approve", row.id, "同意")


def test_on_postgresql_a_task_row_changed_before_the_combined_save_is_a_conflict(db):
    """The task row is completed by another transaction between the locking read and the save: the combined
    statement's row UPDATE matches nothing, the completion is refused and nothing of it is kept."""
    _postgresql_only(db)
    (subject_id,) = _households(db, 1)
    case_id = _case_past_household_check(db, subject_id)
    (row,) = db.open_tasks(case_id)
    with db.uow() as work:
        before = work.session.get(Case, case_id).lock_version
        events_before = work.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.case_id == case_id))

    def interfere(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("WITH row_0"):
            with db.engine.connect() as other:  # another connection: its own transaction, committed now
                other.execute(update(TaskRow).where(TaskRow.id == row.id).values(status=TaskStatus.cancelled))
                other.commit()

    event.listen(db.engine, "before_cursor_execute", interfere)
    try:
        with pytest.raises(ConflictError, match="该任务已被处理"):
            with db.uow() as work:
                work.cases.complete_task(row.id, db.actor("demo_village"), "approve", "同意", D.VILLAGE_REVIEW)
    finally:
        event.remove(db.engine, "before_cursor_execute", interfere)
    with db.uow() as work:
        assert work.session.get(Case, case_id).lock_version == before
        assert work.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.case_id == case_id)) \
            == events_before

"""Task rows carry copies of their case's title and subject (migration 0017): every writer fills them, the
revision fills the rows that existed, and the 待办 page and its name search use them instead of case rows."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from alembic.config import Config
from sqlalchemy import event, select, text

from engine import demo_data as D
from engine.core import settings
from engine.models import Case, TaskRow

HEAD = "0017"


def copies(db) -> list[tuple]:
    """(task id, its copies, its case's title and subject) for every task row."""
    with db.uow() as work:
        return list(work.session.execute(
            select(TaskRow.id, TaskRow.case_title, TaskRow.subject_id, Case.title, Case.subject_id)
            .join(Case, Case.id == TaskRow.case_id).order_by(TaskRow.id)))


def assert_copies_follow_cases(db) -> None:
    found = copies(db)
    assert found
    assert [(i, t, s) for i, t, s, _ct, _cs in found] == [(i, ct, cs) for i, _t, _s, ct, cs in found]


def test_rows_opened_completed_returned_and_added_signers_copy_their_cases_title_and_subject(db):
    first = db.start_case(subject_id=db.household("张德明"))
    db.complete(first, "demo_village", data=D.HOUSEHOLD_CHECK)  # 入户核查 done, 民主评议 opened
    db.complete(first, "demo_village", "return", "请补充收入材料")  # back to 入户核查: a row opened again
    second = db.start_case(subject_id=db.household("李秀英"))
    db.complete(second, "demo_village", data=D.HOUSEHOLD_CHECK)
    (review,) = db.open_tasks(second)
    with db.uow() as work:  # 加签: the co-signer's row is written by the operations service, not the projections
        work.operations.add_sign(review.id, db.actor("demo_village"), ["demo_clerk"], "before", "请先会商")
    assert_copies_follow_cases(db)
    with db.uow() as work:
        titles = {row.case_id: row.case_title for row in work.session.scalars(select(TaskRow))}
    assert titles[first].startswith("张德明") and titles[second].startswith("李秀英")


def test_the_revision_fills_the_copies_of_rows_written_before_it(db):
    db.complete(db.start_case(), "demo_village", data=D.HOUSEHOLD_CHECK)
    db.start_case(subject_id=db.household("李秀英"))
    cfg = Config(str(settings.ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(settings.ROOT / "migrations"))
    try:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0016")
            assert "case_title" not in {c for c in conn.execute(text("SELECT * FROM task LIMIT 0")).keys()}
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, HEAD)
    finally:  # the database goes back to head whatever happened (on PostgreSQL later tests share it)
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    db.engine.dispose()  # the pooled connections knew the table as it was
    assert_copies_follow_cases(db)


def test_the_todo_page_and_its_name_search_read_no_case_state_and_join_no_cases(db):
    db.start_case(subject_id=db.household("张德明"))
    db.start_case(subject_id=db.household("李秀英"))
    actor = db.actor("demo_village")
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()))

    now, soon = db.clock.now(), timedelta(hours=48)
    with db.uow() as work:
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            listed = work.inbox.page("todo", actor, None, None, 50, now, soon).items
            found = work.inbox.parse_search({"name": "德明"}, actor)
            counted = work.inbox.counts(actor, found, now, soon)["todo"]
            named = work.inbox.page("todo", actor, found, None, 50, now, soon).items
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        assert sorted(r.case_title.split(" · ")[0] for r in listed) == ["张德明", "李秀英"]
        assert counted == 1 and [r.case_title.split(" · ")[0] for r in named] == ["张德明"]
    assert not [s for s in statements if "case_instance.state" in s]  # a case row's workflow state stays unread
    todo = [s for s in statements if "task.status =" in s]  # 待办's page and count (已办 goes through its cases)
    assert len(todo) == 3 and not [s for s in todo if "JOIN case_instance" in s]


def test_a_name_matching_more_subjects_than_are_listed_narrows_the_todo_tab_alike(db, monkeypatch):
    from engine.queries import inbox

    zhang = db.start_case(subject_id=db.household("张德明"))
    db.start_case(subject_id=db.household("李秀英"))
    actor = db.actor("demo_village")
    now, soon = db.clock.now(), timedelta(hours=48)

    def todo_by_name(name: str) -> tuple[int, list[int]]:
        with db.uow() as work:
            found = work.inbox.parse_search({"name": name}, actor)
            return (work.inbox.counts(actor, found, now, soon)["todo"],
                    [r.case_id for r in work.inbox.page("todo", actor, found, None, 50, now, soon).items])

    listed = todo_by_name("德明")
    monkeypatch.setattr(inbox, "MAX_LISTED_SUBJECTS", 0)  # every name now matches "too many": the subquery
    assert todo_by_name("德明") == listed == (1, [zhang])
    assert todo_by_name("没有此人") == (0, [])


def test_a_name_search_pages_its_todo_rows_in_inbox_order_across_the_undated_ones(db):
    from sqlalchemy import update

    from engine.models import Subject, TaskStatus
    from engine.queries.inbox import InboxSearch

    names = ("张德明", "李秀英", "王建国", "刘桂芳", "陈永福")
    ids = [db.start_case(subject_id=db.household(name)) for name in names]
    with db.uow() as work:
        rows = list(work.session.scalars(select(TaskRow).where(TaskRow.case_id.in_(ids),
                                                               TaskRow.status == TaskStatus.open)))
        work.session.execute(update(TaskRow).where(TaskRow.id.in_([rows[1].id, rows[3].id])).values(due_at=None))
        # the registry renames four of them (the search follows the subject's name, the task keeps its id)
        work.session.execute(update(Subject).where(Subject.name.in_(names[:4])).values(name=Subject.name + "明"))
    actor = db.actor("demo_village")
    search = InboxSearch(name="明")
    with db.uow() as work:
        expected = [r.id for r in work.inbox.todo(actor) if not r.case_title.startswith("陈永福")]
        assert len(expected) == 4
    for per_page in (1, 3):
        seen, after, pages = [], None, []
        with db.uow() as work:
            while True:
                page = work.inbox.page("todo", actor, search, after, per_page)
                pages.append(page)
                seen += [r.id for r in page.items]
                if page.next is None:
                    break
                after = page.next
            back = work.inbox.page("todo", actor, search, pages[-1].prev, per_page) if len(pages) > 1 else pages[0]
        assert seen == expected
        assert [r.id for r in back.items] == [r.id for r in pages[-2 if len(pages) > 1 else 0].items]


def test_on_postgresql_todo_by_name_reads_the_named_subjects_open_tasks_not_the_pool(db):
    import random

    import pytest
    from sqlalchemy import insert

    from engine.models import Subject, TaskStatus

    with db.uow() as work:
        if work.session.get_bind().dialect.name != "postgresql":
            pytest.skip("the plan is PostgreSQL's (SQLite has one plan for a few rows)")
    case_id = db.start_case(subject_id=db.household("张德明"))
    (row,) = db.open_tasks(case_id)
    rng = random.Random(17)
    pool = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭"
    names = ["".join(rng.choice(pool) for _ in range(3)) for _ in range(20_000)] + ["欧阳修远", "李修远"]
    with db.uow() as work:
        subjects = list(work.session.scalars(insert(Subject).returning(Subject.id), [
            {"kind": "household", "region_code": row.region_code, "name": n, "id_number": None, "attrs": {},
             "is_active": True, "revision": 1} for n in names]))
        template = {c: getattr(row, c) for c in ("case_id", "spec_name", "title", "lane", "role_code", "region_code",
                                                 "scope_code", "form_key", "actions", "day_kind", "case_title")}
        # one pool of 20,000 open tasks, one per household, in the order a bulk load writes them
        work.session.execute(insert(TaskRow), [
            {**template, "spiff_task_id": f"t{i}", "status": TaskStatus.open, "subject_id": sid,
             "created_at": row.created_at, "due_at": row.due_at + timedelta(minutes=i)}
            for i, sid in enumerate(subjects)])
    with db.uow() as work:
        work.session.execute(text("ANALYZE task"))
        work.session.execute(text("ANALYZE subject"))
    actor = db.actor("demo_village")
    captured: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, *args):
        if "task.status =" in statement:
            captured.append((statement, parameters))

    now, soon = db.clock.now(), timedelta(hours=48)
    with db.uow() as work:
        found = work.inbox.parse_search({"name": "修远"}, actor)
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            assert work.inbox.counts(actor, found, now, soon)["todo"] == 2
            assert len(work.inbox.page("todo", actor, found, None, 50, now, soon).items) == 2
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        assert len(captured) == 2
        cursor = work.session.connection().connection.driver_connection.cursor()
        for statement, parameters in captured:
            cursor.execute("EXPLAIN " + statement, parameters)
            plan = "\n".join(line for (line,) in cursor.fetchall())
            assert "ix_task_open_subject" in plan and "ix_task_open_pool" not in plan, plan

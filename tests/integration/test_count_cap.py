"""Tab counts stop at COUNT_CAP (999): one more row shows「999+」on the tab and the pager, as many shows the number."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import insert, select

from engine.models import TaskRow, TaskStatus
from engine.queries.inbox import InboxSearch
from engine.queries.paging import COUNT_CAP


def open_tasks(db, total: int) -> None:
    """total open 入户核查 tasks in demo_village's pool: one started case's task and copies of its row."""
    case_id = db.start_case(subject_id=db.household("张德明"))
    with db.uow() as work:
        row = work.session.scalars(select(TaskRow).where(TaskRow.case_id == case_id,
                                                         TaskRow.status == TaskStatus.open)).one()
        values = {c.key: getattr(row, c.key) for c in TaskRow.__table__.columns if c.key != "id"}
        work.session.execute(insert(TaskRow), [dict(values) for _ in range(total - 1)])


def badge(html: str, tab: str) -> str:
    found = re.search(rf'data-testid="tab-{tab}">[^<]*<span class="badge">([^<]*)</span>', html)
    assert found, f"no {tab} tab"
    return found.group(1)


@pytest.mark.parametrize(("total", "shown"), [(COUNT_CAP, str(COUNT_CAP)), (COUNT_CAP + 1, f"{COUNT_CAP}+")],
                         ids=["at_the_cap", "one_beyond"])
def test_the_todo_count_stops_at_the_cap(db, client_for, total, shown):
    assert COUNT_CAP == 999
    open_tasks(db, total)
    with db.uow() as work:
        assert work.inbox.counts(db.actor("demo_village"), InboxSearch())["todo"] == min(total, COUNT_CAP + 1)
    html = client_for("demo_village").get("/").get_data(as_text=True)
    assert badge(html, "todo") == shown
    assert f"共 {shown} 条" in html  # the pager's total
    assert badge(html, "started") == "1"

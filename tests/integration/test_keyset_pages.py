"""Keyset pages (issue 16): the inbox tabs and the registry list page by a signed (sort key, id) cursor.

Walking 下一页 to the end lists every row once in the tab's order, 上一页 walks back the same pages, and
a cursor the list did not hand out (edited, garbage, another tab's, another search's) is a 400 in Chinese.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import select, update

from engine.models import TaskRow, TaskStatus
from engine.queries.inbox import InboxSearch

BAD = "翻页参数无效或已过期"


@pytest.fixture
def five(db):
    """Five open 入户核查 tasks of demo_village, two of them undated (the 待办 lists those last)."""
    ids = [db.start_case(subject_id=db.household(name)) for name in ("张德明", "李秀英", "王建国", "刘桂芳", "陈永福")]
    with db.uow() as work:
        rows = list(work.session.scalars(select(TaskRow).where(TaskRow.case_id.in_(ids),
                                                               TaskRow.status == TaskStatus.open)))
        assert len(rows) == 5
        work.session.execute(update(TaskRow).where(TaskRow.id.in_([rows[1].id, rows[3].id])).values(due_at=None))
    return ids


def walk(db, view: str, per_page: int, username: str = "demo_village") -> tuple[list[int], list]:
    """Every row id of the tab, page after page, and the pages."""
    actor = db.actor(username)
    seen, pages, after = [], [], None
    with db.uow() as work:
        while True:
            page = work.inbox.page(view, actor, InboxSearch(), after, per_page)
            pages.append(page)
            seen += [item.id for item in page.items]
            if page.next is None:
                return seen, pages
            after = page.next


def test_walking_next_lists_every_todo_row_once_in_inbox_order_across_the_undated_ones(db, five):
    with db.uow() as work:
        everything = [r.id for r in work.inbox.todo(db.actor("demo_village"))]
        dated = [r.due_at is not None for r in work.inbox.todo(db.actor("demo_village"))]
    assert dated == sorted(dated, reverse=True) and dated.count(False) == 2  # undated last
    for per_page in (1, 2, 3):
        seen, pages = walk(db, "todo", per_page)
        assert seen == everything
        assert [p.number for p in pages] == list(range(1, len(pages) + 1))


def test_previous_walks_back_the_same_pages_and_lands_on_the_first(db, five):
    seen, pages = walk(db, "todo", 2)
    actor = db.actor("demo_village")
    with db.uow() as work:
        page = pages[-1]
        back = []
        while page.prev is not None:
            page = work.inbox.page("todo", actor, InboxSearch(), page.prev, 2)
            back.append([r.id for r in page.items])
    assert back == [[r.id for r in p.items] for p in reversed(pages[:-1])]
    assert page.number == 1 and page.prev is None


def test_the_started_tab_pages_newest_first(db, five):
    seen, _pages = walk(db, "started", 2)
    assert seen == list(reversed(five))


def test_the_api_hands_out_cursors_and_refuses_edited_and_foreign_ones(db, five, client_for):
    village = client_for("demo_village")
    first = village.get("/api/v1/tasks", query_string={"per_page": 2}).json
    assert first["page"] == 1 and first["prev_cursor"] is None and first["next_cursor"]
    second = village.get("/api/v1/tasks", query_string={"per_page": 2, "cursor": first["next_cursor"]}).json
    assert second["page"] == 2 and not {t["id"] for t in first["tasks"]} & {t["id"] for t in second["tasks"]}
    token = first["next_cursor"]
    edited = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    for query in ({"cursor": edited}, {"cursor": "!!!"}, {"cursor": "x" * 5000}, {"cursor": "e30"},
                  {"cursor": token, "view": "started"},  # another tab's
                  {"cursor": token, "per_page": 3},  # another page size
                  {"cursor": token, "name": "张德明"}):  # another search
        response = village.get("/api/v1/tasks", query_string={"per_page": 2, **query})
        assert response.status_code == 400, (query, response.status_code)
        assert BAD in response.json["message"]
    other = client_for("demo_township").get("/api/v1/tasks", query_string={"per_page": 2, "cursor": token})
    assert other.status_code in (200, 400)  # a cursor leads nowhere outside the caller's own visibility


def test_the_inbox_page_links_next_previous_and_first_and_refuses_a_bad_cursor(db, five, client_for, monkeypatch):
    monkeypatch.setattr("web.inbox.PER_PAGE", 2)
    village = client_for("demo_village")
    html = village.get("/").get_data(as_text=True)
    assert "第 1 页,共 5 条" in html and "上一页" not in html and "page=" not in html
    names = []
    for number in (2, 3):
        link = unescape(re.search(r'href="([^"]+)" rel="next"', html).group(1))
        html = village.get(link).get_data(as_text=True)
        assert f"第 {number} 页,共 5 条" in html and 'rel="prev"' in html
        names.append(html)
    assert 'rel="next"' not in html and 'data-testid="pager-first"' in html
    prev = unescape(re.search(r'href="([^"]+)" rel="prev"', html).group(1))
    assert "第 2 页" in village.get(prev).get_data(as_text=True)
    bad = village.get("/", query_string={"cursor": "AAAA"})
    assert bad.status_code == 400 and BAD in bad.get_data(as_text=True)
    link = unescape(re.search(r'href="([^"]+)" rel="prev"', names[0]).group(1))
    assert village.get(link + "&name=%E8%B5%B5").status_code == 400  # the search changed under the cursor


def test_the_registry_list_pages_by_region_and_name_and_refuses_a_bad_cursor(db, client_for):
    village = client_for("demo_village")
    everything = village.get("/api/v1/subjects", query_string={"per_page": 200}).json
    assert everything["total"] == len(everything["subjects"]) >= 6 and everything["next_cursor"] is None
    names, query = [], {"per_page": 2}
    while True:
        body = village.get("/api/v1/subjects", query_string=query).json
        names += [s["name"] for s in body["subjects"]]
        if body["next_cursor"] is None:
            break
        query = {"per_page": 2, "cursor": body["next_cursor"]}
    assert names == [s["name"] for s in everything["subjects"]]
    assert body["page"] == (len(names) + 1) // 2 and body["prev_cursor"]
    back = village.get("/api/v1/subjects", query_string={"per_page": 2, "cursor": body["prev_cursor"]}).json
    assert back["page"] == body["page"] - 1
    for query in ({"cursor": "AAAA"}, {"cursor": body["prev_cursor"], "kind": "project"}):
        refused = village.get("/api/v1/subjects", query_string={"per_page": 2, **query})
        assert refused.status_code == 400 and BAD in refused.json["message"]
    html = village.get("/registry/", query_string={"per_page": 2}).get_data(as_text=True)
    link = unescape(re.search(r'href="([^"]+)" rel="next"', html).group(1))
    assert "第 2 页" in village.get(link).get_data(as_text=True)
    assert village.get("/registry/", query_string={"cursor": "AAAA"}).status_code == 400

"""Inbox search (姓名, 身份证号, 地区, 事项, 状态, 起止日期 + due filters) over all four tabs, with counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event

from engine import demo_data as D
from engine.core.errors import ValidationError
from engine.queries.inbox import InboxSearch
from tests.integration.dates_support import dated

VILLAGE = "510921107001"  # 宝梵镇's first village (demo_village)
TOWNSHIP = "510921107000"  # 宝梵镇
OTHER_VILLAGE_IN_TOWNSHIP = "510921107003"  # 莲花社区, also 宝梵镇
OTHER_TOWNSHIP = "510921100000"  # 赤城镇
ZHANG_ID = "510921196503120011"  # 张德明
LI_ID = "510921197208230028"  # 李秀英


@pytest.fixture
def cases(db):
    """Three 宝梵镇 cases on three days plus one in 赤城镇:
    day 0 张德明 exit (waits at 入户核查), day 2 李秀英 exit (入户核查 done, 民主评议 rejected),
    day 4 王建国 identification (waits at its first step); 赤城镇 赵大山 exit on day 0.
    demo_village copies the first two to demo_township (抄送)."""
    ids = {}
    ids["zhang"] = db.start_case(subject_id=db.household("张德明"))
    ids["zhao"] = db.start_case("demo_other_village", subject_id=db.household("赵大山", "demo_other_village"))
    db.clock.advance(timedelta(days=2))
    ids["li"] = db.start_case(subject_id=db.household("李秀英"))
    db.complete(ids["li"], "demo_village", data=dated(db, D.HOUSEHOLD_CHECK))  # checked the day it started
    db.complete(ids["li"], "demo_village", "reject", "收入核实未达标")
    db.clock.advance(timedelta(days=2))
    ids["wang"] = db.start_case(procedure="monitoring_identification", subject_id=db.household("王建国"))
    with db.uow() as work:
        for key in ("zhang", "li"):
            work.operations.cc(ids[key], db.actor("demo_village"), ["demo_township"])
    return ids


def search(db, username: str, view: str = "todo", **fields):
    """(counts, the case ids listed on the tab) for username searching with fields as query parameters."""
    actor = db.actor(username)
    with db.uow() as work:
        found = work.inbox.parse_search({k: str(v) for k, v in fields.items()}, actor)
        counts = work.inbox.counts(actor, found, db.clock.now(), timedelta(hours=48))
        items = work.inbox.page(view, actor, found, None, 50, db.clock.now(), timedelta(hours=48)).items
        return counts, sorted({getattr(i, "case_id", None) or i.id for i in items})


def refused(db, username: str = "demo_village", **fields) -> dict[str, str]:
    with db.uow() as work, pytest.raises(ValidationError) as info:
        work.inbox.parse_search(fields, db.actor(username))
    return info.value.errors


def test_without_filters_each_tab_counts_what_it_lists(db, cases):
    counts, todo = search(db, "demo_village")
    assert counts == {"todo": 2, "done": 2, "started": 3, "cc": 0}
    assert todo == sorted([cases["zhang"], cases["wang"]])
    assert search(db, "demo_village", "started")[1] == sorted([cases["zhang"], cases["li"], cases["wang"]])
    assert search(db, "demo_village", "done")[1] == [cases["li"]]


def test_name_contains_narrows_every_tab(db, cases):
    counts, todo = search(db, "demo_village", name="德明")
    assert (counts, todo) == ({"todo": 1, "done": 0, "started": 1, "cc": 0}, [cases["zhang"]])
    assert search(db, "demo_village", "done", name="秀")[0] == {"todo": 0, "done": 2, "started": 1, "cc": 0}
    assert search(db, "demo_township", "cc", name="李秀英")[1] == [cases["li"]]
    assert search(db, "demo_village", name="%")[0] == {"todo": 0, "done": 0, "started": 0, "cc": 0}  # no wildcard


def test_id_number_is_an_exact_match(db, cases):
    counts, started = search(db, "demo_village", "started", id_number=ZHANG_ID)
    assert (counts, started) == ({"todo": 1, "done": 0, "started": 1, "cc": 0}, [cases["zhang"]])
    assert search(db, "demo_village", "done", id_number=LI_ID)[1] == [cases["li"]]
    assert search(db, "demo_township", "cc", id_number=LI_ID)[0]["cc"] == 1


def test_procedure_and_status_filters(db, cases):
    counts, todo = search(db, "demo_village", procedure="monitoring_identification")
    assert (counts, todo) == ({"todo": 1, "done": 0, "started": 1, "cc": 0}, [cases["wang"]])
    counts, done = search(db, "demo_village", "done", status="rejected")
    assert (counts, done) == ({"todo": 0, "done": 2, "started": 1, "cc": 0}, [cases["li"]])
    assert search(db, "demo_township", "cc", status="rejected")[1] == [cases["li"]]
    assert search(db, "demo_village", status="running", procedure="monitoring_exit")[1] == [cases["zhang"]]


def test_date_range_is_inclusive_in_china_days(db, cases):
    # day 0 = 2026-09-01, 李秀英 day 2 = 09-03, 王建国 day 4 = 09-05 (all 09:00 China time)
    counts, started = search(db, "demo_village", "started", date_from="2026-09-03", date_to="2026-09-03")
    assert (counts["started"], started) == (1, [cases["li"]])
    assert search(db, "demo_village", "started", date_from="2026-09-03")[1] == sorted([cases["li"], cases["wang"]])
    assert search(db, "demo_village", date_to="2026-09-01")[1] == [cases["zhang"]]  # todo: by arrival
    assert search(db, "demo_village", "done", date_from="2026-09-04")[0]["done"] == 0


def test_region_includes_sub_regions_and_stays_inside_the_jurisdiction(db, cases):
    assert search(db, "demo_township", "cc", region=TOWNSHIP)[1] == sorted([cases["zhang"], cases["li"]])
    assert search(db, "demo_township", "cc", region=VILLAGE)[0]["cc"] == 2
    assert search(db, "demo_township", "cc", region=OTHER_VILLAGE_IN_TOWNSHIP)[0]["cc"] == 0
    assert refused(db, "demo_township", region=OTHER_TOWNSHIP) == {"region": "只能选择本辖区内的地区"}
    assert refused(db, "demo_village", region=TOWNSHIP) == {"region": "只能选择本辖区内的地区"}


def test_the_due_filters_combine_with_the_search(db, cases):
    db.clock.advance(timedelta(days=7))  # 张德明's 入户核查 (P10D from day 0) is overdue, 王建国's not yet
    counts, todo = search(db, "demo_village", due="overdue")
    assert (counts["todo"], todo) == (1, [cases["zhang"]])
    assert search(db, "demo_village", due="overdue", name="王建国")[0]["todo"] == 0


def test_another_countys_or_townships_user_finds_nothing_by_name_or_id(db, cases):
    for username in ("demo_other_village", "demo_other_township"):
        assert search(db, username, id_number=ZHANG_ID)[0] == {"todo": 0, "done": 0, "started": 0, "cc": 0}
        assert search(db, username, "started", name="德明")[1] == []
        assert refused(db, username, region=VILLAGE) == {"region": "只能选择本辖区内的地区"}
    counts, todo = search(db, "demo_other_village", name="赵大山")
    assert (counts["todo"], todo) == (1, [cases["zhao"]])


@pytest.mark.parametrize(("fields", "errors"), [
    ({"id_number": "12345"}, {"id_number"}),
    ({"id_number": ZHANG_ID[:-1] + "2"}, {"id_number"}),  # wrong check digit
    ({"id_number": "51092119651312001X"}, {"id_number"}),  # no 13th month
    ({"date_from": "2026-13-01"}, {"date_from"}),
    ({"date_from": "2026-09-05", "date_to": "2026-09-01"}, {"date_to"}),
    ({"status": "paused"}, {"status"}),
    ({"procedure": "no_such_procedure"}, {"procedure"}),
    ({"region": "abc"}, {"region"}),
    ({"name": "长" * 41}, {"name"}),
    ({"due": "later"}, {"due"}),
    ({"id_number": "1", "date_to": "x", "status": "?"}, {"id_number", "date_to", "status"}),
], ids=["short_id", "check_digit", "bad_birth_date", "bad_date", "inverted_range", "status", "procedure", "region",
        "long_name", "due", "several"])
def test_invalid_search_input_is_a_field_error(db, fields, errors):
    assert set(refused(db, **fields)) == errors


def test_a_lowercase_x_check_digit_is_accepted(db):
    with db.uow() as work:
        found = work.inbox.parse_search({"id_number": " 11010519491231002x "}, db.actor("demo_village"))
    assert found == InboxSearch(id_number="11010519491231002X")


def test_counts_take_one_count_query_per_tab(db, cases):
    actor = db.actor("demo_village")
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    with db.uow() as work:
        found = work.inbox.parse_search({"name": "德明", "status": "running", "procedure": "monitoring_exit"}, actor)
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            counts = work.inbox.counts(actor, found, db.clock.now(), timedelta(hours=48))
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    assert counts == {"todo": 1, "done": 0, "started": 1, "cc": 0}
    counting = [s for s in statements if s.lstrip().upper().startswith("SELECT COUNT")]
    # and the one lookup of the named subjects that 待办 filters its task rows by (a list its planner can count)
    assert len(counting) == 4 and len(statements) == 5 and "FROM subject" in (set(statements) - set(counting)).pop()


def test_pages_split_a_tab_in_order(db, cases):
    actor = db.actor("demo_village")
    with db.uow() as work:
        first = work.inbox.page("started", actor, InboxSearch(), None, 2)
        second = work.inbox.page("started", actor, InboxSearch(), first.next, 2)
        assert [c.id for c in first.items + second.items] == [cases["wang"], cases["li"], cases["zhang"]]
        assert (first.number, second.number, second.next) == (1, 2, None) and first.prev is None
        back = work.inbox.page("started", actor, InboxSearch(), second.prev, 2)
        assert [c.id for c in back.items] == [cases["wang"], cases["li"]] and back.number == 1


# ----------------------------------------------------------------------------- API and page
def test_api_inbox_takes_the_same_filters_and_returns_counts(db, cases, client_for):
    village = client_for("demo_village")
    body = village.get("/api/v1/tasks", query_string={"view": "started", "name": "德明"}).json
    assert body["counts"] == {"todo": 1, "done": 0, "started": 1, "cc": 0}
    assert [c["id"] for c in body["cases"]] == [cases["zhang"]] and body["filters"] == {"name": "德明"}
    body = village.get("/api/v1/tasks", query_string={"id_number": ZHANG_ID}).json
    assert [t["case_id"] for t in body["tasks"]] == [cases["zhang"]]
    paged = village.get("/api/v1/tasks", query_string={"view": "started", "per_page": 1}).json
    for _ in range(2):
        paged = village.get("/api/v1/tasks", query_string={"view": "started", "per_page": 1,
                                                           "cursor": paged["next_cursor"]}).json
    assert [c["id"] for c in paged["cases"]] == [cases["zhang"]] and paged["counts"]["started"] == 3
    assert paged["page"] == 3 and paged["next_cursor"] is None and paged["prev_cursor"]
    bad = village.get("/api/v1/tasks", query_string={"id_number": "123", "date_from": "2026-09-05",
                                                     "date_to": "2026-09-01"})
    assert bad.status_code == 422 and set(bad.json["errors"]) == {"id_number", "date_to"}
    other = client_for("demo_other_township").get("/api/v1/tasks", query_string={"id_number": ZHANG_ID}).json
    assert other["counts"] == {"todo": 0, "done": 0, "started": 0, "cc": 0} and other["tasks"] == []


def test_the_inbox_page_has_the_search_form_and_keeps_the_filters_across_tabs(db, cases, client_for):
    village = client_for("demo_village")
    html = village.get("/", query_string={"name": "德明"}).get_data(as_text=True)
    for label in ("姓名", "身份证号", "地区", "事项", "状态", "起止日期", "查询", "重置"):
        assert label in html
    assert 'data-testid="tab-todo">待办 <span class="badge">1<' in html
    assert 'data-testid="tab-started">我发起的 <span class="badge">1<' in html
    assert "张德明" in html and "王建国" not in html
    assert "view=started&amp;name=%E5%BE%B7%E6%98%8E" in html or "name=%E5%BE%B7%E6%98%8E&amp;view=started" in html
    bad = village.get("/", query_string={"id_number": "123"})
    assert bad.status_code == 422 and "身份证号应为 18 位" in bad.get_data(as_text=True)


def test_a_name_search_pages_every_tab_forward_and_back(db, client_for):
    """Pages after a keyset split the 待办 range into several parts, each narrowed by the same found subjects."""
    from tests.integration.registry_support import household, region_of

    village = client_for("demo_village")
    for serial, name in enumerate(("张德华", "张德福"), start=1):
        assert village.post("/api/v1/subjects", json=household(region_of(db, "demo_village"), serial, name)).status_code == 201
    started = [db.start_case(subject_id=db.household(name)) for name in ("张德明", "张德华", "张德福")]
    db.start_case(subject_id=db.household("李秀英"))  # not named
    actor = db.actor("demo_village")
    found = InboxSearch(name="张德")
    with db.uow() as work:
        for view in ("todo", "started"):
            first = work.inbox.page(view, actor, found, None, 2, db.clock.now(), timedelta(hours=48))
            second = work.inbox.page(view, actor, found, first.next, 2, db.clock.now(), timedelta(hours=48))
            listed = [getattr(i, "case_id", None) or i.id for i in first.items + second.items]
            assert sorted(listed) == sorted(started) and len(set(listed)) == 3, view
            back = work.inbox.page(view, actor, found, second.prev, 2, db.clock.now(), timedelta(hours=48))
            assert [i.id for i in back.items] == [i.id for i in first.items], view
        assert work.inbox.counts(actor, found, db.clock.now(), timedelta(hours=48))["todo"] == 3

"""批量发起's 地区: the inbox's cascading picker (one level at a time), not every region of the jurisdiction."""

from __future__ import annotations

import re

from sqlalchemy import select

from engine.models import Region, Subject

PAGE = "/cases/batch-start/"
STATUS_OUTSIDE = 422  # refused as the inbox's picker refuses it


def _selects(page: str) -> list[list[str]]:
    """The option values of each region select on the page, in order."""
    found = []
    for body in re.findall(r'<select[^>]*name="region"[^>]*>(.*?)</select>', page, re.S):
        found.append(re.findall(r'<option value="([^"]*)"', body))
    return found


def _children(db, code: str) -> list[str]:
    with db.uow() as work:
        return list(work.session.scalars(select(Region.code).where(Region.parent_code == code).order_by(Region.code)))


def test_a_county_user_picks_a_township_then_one_of_its_villages(db, client_for):
    (county,) = {g.region_code for g in db.actor("demo_county").grants}
    townships = _children(db, county)
    county_client = client_for("demo_county")
    first = county_client.get(PAGE)
    assert first.status_code == 200
    assert _selects(first.get_data(as_text=True)) == [["", *townships]]  # townships only, no villages
    township = next(t for t in townships if _children(db, t))
    villages = _children(db, township)
    second = county_client.get(PAGE, query_string={"region": township})
    assert _selects(second.get_data(as_text=True)) == [["", *townships], ["", *villages]]
    assert f'<option value="{township}" selected' in second.get_data(as_text=True)


def test_the_preview_takes_the_deepest_consistent_choice(db, client_for):
    (county,) = {g.region_code for g in db.actor("demo_county").grants}
    with db.uow() as work:
        subjects = [(s.region_code, s.id) for s in work.session.scalars(
            select(Subject).where(Subject.kind == "household", Subject.is_active.is_(True)))
            if s.region_code.startswith(county[:6])]
    village = subjects[0][0]
    township = village[:9] + "000"
    expected = sorted(i for code, i in subjects if code == village)
    client = client_for("demo_county")
    preview = client.get(PAGE, query_string=[("preview", "1"), ("procedure", "monitoring_exit"),
                                             ("region", township), ("region", village)])
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200
    shown = sorted(int(i) for i in re.findall(r'name="subject_id" value="(\d+)"', page))
    assert shown and shown == expected
    # a village select left over from another township (no script) is ignored: the township counts
    other = next(t for t in _children(db, county) if t != township)
    stale = client.get(PAGE, query_string=[("preview", "1"), ("procedure", "monitoring_exit"),
                                           ("region", other), ("region", village)])
    assert stale.status_code == 200
    assert not set(re.findall(r'name="subject_id" value="(\d+)"', stale.get_data(as_text=True))) & set(map(str, expected))


def test_a_region_outside_the_jurisdiction_lists_nothing_of_it(db, client_for):
    (village_code,) = {g.region_code for g in db.actor("demo_village").grants}
    (county,) = {g.region_code for g in db.actor("demo_county").grants}
    outside = next(c for c in _children(db, county) if not village_code.startswith(c[:9]))
    client = client_for("demo_village")
    page = client.get(PAGE, query_string=[("preview", "1"), ("procedure", "monitoring_exit"), ("region", outside)])
    assert page.status_code == STATUS_OUTSIDE
    with db.uow() as work:
        foreign = {str(s.id) for s in work.session.scalars(select(Subject).where(Subject.region_code.startswith(outside[:9])))}
    assert not set(re.findall(r'name="subject_id" value="(\d+)"', page.get_data(as_text=True))) & foreign
    assert "只能选择本辖区内的地区" in page.get_data(as_text=True)
    assert _selects(page.get_data(as_text=True)) == [[""]]  # a village has nothing below it to pick


def test_a_township_filter_holds_that_township_only_not_those_whose_code_extends_it(db):
    """510921100 (a township) must not match 510921101… or 510921110…: the filter is the township's
    9-digit prefix, not the code with its zeros stripped (``5109211`` matched ten townships)."""
    from engine.registry.service import SubjectSearch

    (county,) = {g.region_code for g in db.actor("demo_county").grants}
    townships = _children(db, county)
    base = next(t for t in townships if t[6:9].endswith("0") and _children(db, t)
                and any(o != t and o.startswith(t.rstrip("0")) and _children(db, o) for o in townships))
    neighbour = next(o for o in townships if o != base and o.startswith(base.rstrip("0")) and _children(db, o))
    with db.uow() as work:
        inside = Subject(kind="household", region_code=_children(db, base)[0], name="前缀测试甲", attrs={})
        beside = Subject(kind="household", region_code=_children(db, neighbour)[0], name="前缀测试乙", attrs={})
        work.session.add_all([inside, beside])
        work.session.flush()
        ids = {inside.id, beside.id}
        found = work.registry.search(db.actor("demo_county"),
                                     SubjectSearch(kind="household", name="前缀测试", region_code=base))
        assert {s.id for s in found.items} & ids == {inside.id}

"""The inbox's region picker: cascading selects fed by /regions/<code>/children, never the county's 343
regions at once; every select submits ``region`` and the deepest one inside the one above it is searched."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from engine.models import Region
from engine.queries.inbox import chosen_region

COUNTY = "510921000000"  # 蓬溪县
TOWNSHIP = "510921107000"  # 宝梵镇
VILLAGE = "510921107001"  # 冬笋街社区 (demo_village)
OTHER_TOWNSHIP = "510921100000"  # 赤城镇


def selects(html: str) -> list[tuple[list[str], str]]:
    """The picker's selects: (their option values, the selected one) each, top down."""
    picker = re.search(r"data-region-picker.*?</div>", html, re.S)
    assert picker, "no region picker"
    out = []
    for body in re.findall(r'<select[^>]*name="region"[^>]*>(.*?)</select>', picker.group(0), re.S):
        values = re.findall(r'<option value="(\d*)"', body)
        chosen = re.findall(r'<option value="(\d+)" selected', body)
        out.append((values, chosen[0] if chosen else ""))
    return out


def children(db, code: str) -> list[str]:
    with db.uow() as work:
        return list(work.session.scalars(select(Region.code).where(Region.parent_code == code).order_by(Region.code)))


def test_a_county_user_is_offered_its_townships_then_the_chosen_townships_villages(db, client_for):
    county = client_for("demo_county")
    with db.uow() as work:
        inside = work.session.scalar(select(func.count()).where(Region.code.startswith("510921")))
    assert inside > 300  # what the old picker rendered on every inbox
    (top,) = selects(county.get("/").get_data(as_text=True))
    assert top == ([""] + children(db, COUNTY), "")

    html = county.get("/", query_string={"region": TOWNSHIP}).get_data(as_text=True)
    assert selects(html) == [([""] + children(db, COUNTY), TOWNSHIP), ([""] + children(db, TOWNSHIP), "")]
    assert "全部(宝梵镇)" in html

    html = county.get("/", query_string={"region": VILLAGE}).get_data(as_text=True)  # a link to a village
    assert selects(html) == [([""] + children(db, COUNTY), TOWNSHIP), ([""] + children(db, TOWNSHIP), VILLAGE)]


def test_the_deepest_consistent_select_is_searched(db, client_for):
    county = client_for("demo_county")
    both = county.get("/?region=" + TOWNSHIP + "&region=" + VILLAGE).get_data(as_text=True)
    assert selects(both)[1][1] == VILLAGE
    # another township chosen above a village left over from the first (no script): that township
    stale = county.get("/?region=" + OTHER_TOWNSHIP + "&region=" + VILLAGE).get_data(as_text=True)
    assert [s[1] for s in selects(stale)] == [OTHER_TOWNSHIP, ""]
    assert chosen_region(["", VILLAGE]) == ""  # 全部 above: the whole jurisdiction
    assert chosen_region([TOWNSHIP, ""]) == TOWNSHIP
    assert chosen_region([TOWNSHIP, VILLAGE]) == VILLAGE
    assert chosen_region([OTHER_TOWNSHIP, VILLAGE]) == OTHER_TOWNSHIP
    assert chosen_region(["abc", VILLAGE]) == "abc"  # parse_search refuses it by name


def test_a_region_outside_the_jurisdiction_is_still_refused(db, client_for):
    township = client_for("demo_township")  # 宝梵镇
    response = township.get("/", query_string={"region": OTHER_TOWNSHIP})
    assert response.status_code == 422
    assert "只能选择本辖区内的地区" in response.get_data(as_text=True)
    top = selects(response.get_data(as_text=True))
    assert top[0] == ([""] + children(db, TOWNSHIP), "")


def test_the_children_endpoint_answers_inside_the_jurisdiction_only(db, client_for, app):
    county = client_for("demo_county")
    body = county.get(f"/regions/{TOWNSHIP}/children").json
    assert [r["code"] for r in body["regions"]] == children(db, TOWNSHIP)
    assert body["regions"][0]["name"] == "冬笋街社区居民委员会"
    township = client_for("demo_township")
    assert township.get(f"/regions/{OTHER_TOWNSHIP}/children").json == {"regions": []}
    assert township.get(f"/regions/{COUNTY}/children").json == {"regions": []}  # above it: nothing
    village = client_for("demo_village")
    assert village.get(f"/regions/{VILLAGE}/children").json == {"regions": []}  # no region below a village
    assert village.get("/regions/junk/children").json == {"regions": []}
    assert app.test_client().get(f"/regions/{TOWNSHIP}/children").status_code in (302, 401)  # not logged in


def test_a_village_user_gets_one_select_offering_its_whole_village_only(db, client_for):
    html = client_for("demo_village").get("/").get_data(as_text=True)
    assert selects(html) == [([""], "")]

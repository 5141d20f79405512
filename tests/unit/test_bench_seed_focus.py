"""bench/seed.py's focus: the 10 k seed gives the simulated users' regions the open work they hold at 1 M.

``_focus`` turns closed cases into open ones of the kind a (kind, region) asks for; bench/http.py's
"same load at both scales" rests on it. It once stopped with "too few cases" as soon as every county was
a focus region (50 users), because it only took closed cases from outside the focus regions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench.seed import OPEN_MIX, Template, _focus, _Plan

# two counties, two townships each, three villages each (normalized 12-digit codes)
COUNTIES = ("510921000000", "510922000000")
VILLAGES = [f"{county[:6]}{t:03d}{v:03d}" for county in COUNTIES for t in (100, 101) for v in (1, 2, 3)]
KINDS = ["closed", *(kind for kind, _n in OPEN_MIX)]


def _plan() -> _Plan:
    templates = {kind: Template(case={"id": 1, "title": kind}, state="{}", tasks=[{"id": 1, "spec": kind}],
                                audits=[{"id": 1, "event": kind}], timers=[]) for kind in KINDS}
    return _Plan(templates, {}, VILLAGES, {}, datetime(2026, 12, 4, tzinfo=UTC))


def _open_held(plan: _Plan, cases: int, kind: str, prefix: str) -> int:
    return sum(1 for i in range(cases) if plan.kind(i) == kind and plan.village(i).startswith(prefix))


def test_each_focus_region_then_holds_the_open_cases_it_asks_for_and_only_closed_cases_moved():
    plan = _plan()
    cases = 2_000
    focus = {("review", "510921100000"): 40, ("announce", "510921000000"): 30}
    assert _open_held(plan, cases, "review", "510921100") < 40  # the plain spread holds fewer: something has to move
    plan.moved = _focus(plan, cases, focus)
    assert plan.moved
    assert all(i % 10 for i in plan.moved)  # open cases of the plain spread are never taken
    assert _open_held(plan, cases, "review", "510921100") >= 40
    assert _open_held(plan, cases, "announce", "510921") >= 30
    for village, kind in plan.moved.values():
        assert kind in ("review", "announce") and village in VILLAGES


def test_donors_come_from_outside_the_focus_regions_first():
    plan = _plan()
    focus = {("review", "510921100000"): 40}
    moved = _focus(plan, 2_000, focus)
    donors_from = {_plan().village(i) for i in moved}  # where each taken case was before it moved
    assert donors_from and not any(v.startswith("510921100") for v in donors_from)


def test_when_every_region_is_a_focus_region_closed_cases_inside_them_are_taken():
    plan = _plan()
    focus = {("recheck", county): 25 for county in COUNTIES}  # every village lies in a focus region
    plan.moved = _focus(plan, 1_000, focus)
    for county in COUNTIES:
        assert _open_held(plan, 1_000, "recheck", county[:6]) >= 25


def test_too_few_cases_stop_with_a_message_naming_the_region():
    plan = _plan()
    with pytest.raises(SystemExit, match="too few to give 510921100000"):
        _focus(plan, 100, {("review", "510921100000"): 500})


def test_a_region_that_already_holds_enough_takes_nothing():
    plan = _plan()
    cases = 2_000
    held = _open_held(plan, cases, "review", "510921")
    assert held > 0
    assert _focus(plan, cases, {("review", "510921000000"): held}) == {}

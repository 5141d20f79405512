"""A dry run has a wall-time budget (issue 15: bounded cost of what admins write): past it the run stops
with a clear Chinese message, also inside one engine-steps call, and nothing is stored."""

from __future__ import annotations

import time

from engine.studio import sandbox
from tests.integration.studio_support import EDU_SAMPLE, admin, draft_with, edu_files, new_code, studio


def test_a_dry_run_past_its_budget_stops_with_a_message(db, monkeypatch):
    draft_id = draft_with(db, edu_files(new_code()))
    monkeypatch.setattr(sandbox, "DRY_RUN_SECONDS", 0.0)
    started = time.monotonic()
    with db.uow() as work:
        result = studio(work).dry_run(admin(db), draft_id, {"data": EDU_SAMPLE})
    assert not result.completed
    assert result.error.startswith("试运行超过 0 秒仍未结束,已停止")
    assert time.monotonic() - started < 10


def test_the_budget_stops_inside_one_engine_steps_call(monkeypatch):
    ticks = iter([0.0, 0.0, 10.0])
    monkeypatch.setattr(sandbox.time, "monotonic", lambda: next(ticks, 10.0))
    check = sandbox._budget(5.0)
    check()  # within the budget
    try:
        check(object())  # as do_engine_steps' did_complete_task callback, after a task
        raise AssertionError("the budget did not stop the run")
    except sandbox.DryRunTimeout as exc:
        assert "5 秒" in str(exc)


def test_a_normal_dry_run_is_well_inside_the_budget(db):
    draft_id = draft_with(db, edu_files(new_code()))
    with db.uow() as work:
        result = studio(work).dry_run(admin(db), draft_id, {"data": EDU_SAMPLE})
    assert result.completed and result.error is None

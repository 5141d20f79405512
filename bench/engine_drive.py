"""bench/engine.py's harness: the steps every path completes and the rounds that time them (usage there)."""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone

from sqlalchemy.exc import OperationalError

from engine import demo_data
from engine.bootstrap import DEMO_TOWNSHIP, first_village
from engine.core.clock import FixedClock
from engine.core.db import make_engine, make_session_factory
from engine.core.errors import ConflictError
from engine.models import Subject
from engine.uow import UnitOfWork

START = datetime(2026, 9, 1, 1, 0, tzinfo=timezone.utc)
PROCEDURE = "monitoring_exit"
OPINION = "情况属实,同意。"
# (username, form data) for each user task, in order, as the engine's smoke test walks the case:
# 入户核查, then the four-step chain (demo_data.REVIEW_STEPS), then 退出告知 where the procedure has it
STEPS = [("demo_village", demo_data.HOUSEHOLD_CHECK), *demo_data.REVIEW_STEPS]
if hasattr(demo_data, "EXIT_NOTICE"):
    STEPS.append(("demo_village", demo_data.EXIT_NOTICE))
MAX_RETRIES = 5
MAX_NOTICE_DAYS = 60  # how far the clock may move to let a public-notice period run out
BENCH_SERIAL = "BENCH-NOTICE"  # the notice serial an issuance step records (no PDF is made)


def add_households(url: str, count: int, tag: str) -> list[int]:
    """Create count households in the demo village; return their ids."""
    engine = make_engine(url)
    try:
        with UnitOfWork(make_session_factory(engine), FixedClock(START)) as work:
            village = first_village(work, DEMO_TOWNSHIP)
            subjects = [
                Subject(kind="household", region_code=village, name=f"{tag}户{i:05d}", id_number=None,
                        attrs={"members": 3 + i % 3, "category": "脱贫不稳定户"})
                for i in range(count)
            ]
            work.session.add_all(subjects)
            work.session.flush()
            return [s.id for s in subjects]
    finally:
        engine.dispose()


def retrying(fn, *args):
    """Call fn; on a conflict or a database lock error retry. Return (result, retries)."""
    for attempt in range(MAX_RETRIES + 1):
        try:
            return fn(*args), attempt
        except (ConflictError, OperationalError):
            if attempt == MAX_RETRIES:
                raise
            time.sleep(0.001 * (attempt + 1))
    raise AssertionError("unreachable")


def pass_notice_periods(path, case_ids: list[int]) -> int:
    """Where a case has no open user task (a public-notice timer runs), move the clock day by day
    and fire due timers until every case has one again. Not timed. Return the days passed.

    XiangFlow's timer tick fires every due timer in the database, so with several processes one
    may fire another's timers: once none of ours is still in the future, wait for them.
    """
    waiting = path.waiting(case_ids)
    days = 0
    deadline = time.monotonic() + 300
    while waiting:
        if time.monotonic() > deadline or days > MAX_NOTICE_DAYS:
            raise RuntimeError(f"{len(waiting)} cases still have no open task after {days} days")
        advance = path.future_timers(waiting)
        if advance:
            days += 1
        else:
            time.sleep(0.02)
        path.pass_day(waiting, advance)
        waiting = path.waiting(sorted(waiting))
    return days


def drive(path, case_ids: list[int], barrier=None, profiler=None) -> dict:
    """Complete every case's user tasks, one step for all cases at a time.

    Only the completion rounds are timed (and profiled); the processes meet at the barrier
    before and after each round so that their timed rounds overlap.
    """
    rounds, latencies, titles = [], [], []
    retries = notice_days = 0
    cpu = 0.0
    if hasattr(path, "prepare"):
        path.prepare(case_ids)  # not timed
    for step in range(len(STEPS)):
        if step:
            path.issue_notices(case_ids)
            notice_days += pass_notice_periods(path, case_ids)
        if hasattr(path, "before_round"):
            path.before_round(case_ids)  # not timed
        if barrier is not None:
            barrier.wait()
        if profiler is not None:
            profiler.enable()
        cpu0 = time.process_time()
        t0 = time.time()
        for case_id in case_ids:
            s = time.perf_counter()
            title, n = retrying(path.complete, case_id, step)
            latencies.append(time.perf_counter() - s)
            retries += n
        t1 = time.time()
        cpu += time.process_time() - cpu0
        if profiler is not None:
            profiler.disable()
        rounds.append((t0, t1))
        titles.append(title)
        if barrier is not None:
            barrier.wait()
    return {"rounds": rounds, "latencies": latencies, "cpu_seconds": cpu, "retries": retries,
            "titles": titles, "notice_days": notice_days}


def cleanup(tmp: str | None) -> None:
    """Remove the bench's temporary directory (the SQLite file), if it made one."""
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)

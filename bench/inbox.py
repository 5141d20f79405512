"""Inbox search with tab counts over N open tasks: how long one inbox page takes (four COUNTs + one page).

Uses the configured database (DATABASE_URL → PostgreSQL, else a fresh SQLite file). Starts N 四步法
exit cases (each opens its 入户核查 task for demo_village) for the demo households of the village,
on N different days, then times, for each search, the four tab counts plus the first page of 待办 —
exactly what the inbox page and GET /api/v1/tasks run, after ANALYZE. Prints p50/p95 per search. For the
inbox at province scale over HTTP (a million cases, many users) see bench/http.py.

    .venv/bin/python bench/inbox.py --tasks 5000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select, text  # noqa: E402

from bench.support import fresh_database  # noqa: E402
from engine.bootstrap import DEMO_HOUSEHOLDS  # noqa: E402
from engine.core.clock import FixedClock  # noqa: E402
from engine.core.db import make_session_factory  # noqa: E402
from engine.core.settings import database_url  # noqa: E402
from engine.models import Subject, User  # noqa: E402
from engine.uow import UnitOfWork  # noqa: E402
from tests.conftest import START  # noqa: E402

SEARCHES = {
    "no filter": {},
    "name contains": {"name": "德明"},
    "ID number (exact)": {"id_number": DEMO_HOUSEHOLDS[0][1]},
    "region + procedure + status": {"region": "510921107001", "procedure": "monitoring_exit", "status": "running"},
    "date range (30 days)": {"date_from": "2026-10-01", "date_to": "2026-10-30"},
    "overdue": {"due": "overdue"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    clock = FixedClock(START)
    url, engine = fresh_database(database_url() if "DATABASE_URL" in os.environ else None, clock, "bench_inbox")
    factory = make_session_factory(engine)
    with UnitOfWork(factory, clock) as work:
        user = work.session.scalar(select(User).where(User.username == "demo_village"))
        actor = work.directory.actor(user)
        demo = [s for s in work.session.scalars(select(Subject).where(Subject.kind == "household"))
                if actor.covers(s.region_code)]
        # one running exit case per household (the duplicate guard): the demo households, then copies of
        # them named after them (张德明17 …), so the name search still matches one case in six
        extra = [Subject(kind="household", region_code=demo[i % len(demo)].region_code,
                         name=f"{demo[i % len(demo)].name}{i}", id_number=None,
                         attrs={"members": 3, "category": "脱贫不稳定户"}) for i in range(max(args.tasks - len(demo), 0))]
        work.session.add_all(extra)
        work.session.flush()
        subjects = [s.id for s in demo + extra]
    began = time.perf_counter()
    per_day = max(args.tasks // 120, 1)  # spread over about four months
    for i in range(args.tasks):
        if i and i % per_day == 0:
            clock.advance(timedelta(days=1))
        with UnitOfWork(factory, clock) as work:
            work.cases.start_case("monitoring_exit", subjects[i % len(subjects)], actor)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))  # the planner's statistics, as autovacuum would have them by now
    print(f"{engine.dialect.name}: {args.tasks} open tasks for demo_village in {time.perf_counter() - began:.1f} s")
    soon = timedelta(hours=48)
    print(f"{'search':32} {'todo':>6} {'started':>7} {'p50 ms':>7} {'p95 ms':>7}   (4 COUNTs + first page of 50)")
    for label, fields in SEARCHES.items():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            with UnitOfWork(factory, clock) as work:
                found = work.inbox.parse_search(fields, actor)
                counts = work.inbox.counts(actor, found, clock.now(), soon)
                rows = work.inbox.page("todo", actor, found, None, 50, clock.now(), soon).items
                _ = [r.case.title for r in rows]
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        print(f"{label:32} {counts['todo']:>6} {counts['started']:>7} {statistics.median(times):>7.1f} {p95:>7.1f}")
    engine.dispose()


if __name__ == "__main__":
    main()

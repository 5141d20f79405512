"""How long N due timers take to fire, with one worker process and with two.

    .venv/bin/python bench/timers.py [--timers 10000] [--workers 1,2]

Uses the configured database (DATABASE_URL → PostgreSQL, else a fresh SQLite file). For each
worker count it builds a fresh database, starts N cases of a one-timer procedure (start →
one-day timer → 回访), moves the workers' clock two days on and runs `python -m engine.runtime.timers`
processes until every timer has fired. Prints timers/s and checks each fired exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bench.support import fresh_database as new_database  # noqa: E402
from engine.access.directory import ROLES  # noqa: E402
from engine.core.clock import FixedClock  # noqa: E402
from engine.core.db import make_engine, make_session_factory  # noqa: E402
from engine.core.settings import database_url  # noqa: E402
from engine.models import AuditEvent, Subject, TimerRow, TimerStatus, User  # noqa: E402
from engine.procedures.definitions import bundle_from_files  # noqa: E402
from engine.uow import UnitOfWork  # noqa: E402

START = datetime(2026, 9, 1, 1, 0, tzinfo=timezone.utc)
BPMN = (ROOT / "tests" / "integration" / "test_timer_processes.py").read_text(encoding="utf-8")
BPMN = BPMN[BPMN.index('BPMN = """') + len('BPMN = """'):]
BPMN = BPMN[:BPMN.index('"""')]
FORM = json.dumps({"type": "default", "components": [{"type": "textfield", "key": "note", "label": "说明"}]})


def fresh_database(url: str | None) -> str:
    clock = FixedClock(START)
    url, engine = new_database(url, clock, "bench_timers")
    factory = make_session_factory(engine)
    with UnitOfWork(factory, clock) as work:
        work.definitions.deploy(bundle_from_files({
            "procedure.json": json.dumps({"code": "t_many", "name": "批量定时", "process_id": "t_many"}),
            "bpmn/t_many.bpmn": BPMN, "form/t_many/form": FORM}), "bench", {c for c, _n, _l in ROLES})
    engine.dispose()
    return url


def make_timers(url: str, count: int) -> float:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    clock = FixedClock(START)
    began = time.perf_counter()
    with UnitOfWork(factory, clock) as work:
        user = work.session.scalar(select(User).where(User.username == "demo_village"))
        actor = work.directory.actor(user)
        subject_id = next(s.id for s in work.session.scalars(select(Subject).where(Subject.kind == "household"))
                          if actor.covers(s.region_code))
    done = 0
    while done < count:
        with UnitOfWork(factory, clock) as work:
            for _ in range(min(500, count - done)):
                work.cases.start_case("t_many", subject_id, actor)
                done += 1
    engine.dispose()
    return time.perf_counter() - began


def fire(url: str, workers: int) -> float:
    at = (START + timedelta(days=2)).isoformat()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "engine.runtime.timers", "--url", url, "--at", at, "--batch", "100",
                               "--name", f"w{i}"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
             for i in range(workers)]
    for proc in procs:
        proc.communicate()
        if proc.returncode:
            raise SystemExit(f"worker failed with {proc.returncode}")
    return time.perf_counter() - began


def check(url: str, count: int) -> None:
    engine = make_engine(url)
    with engine.connect() as conn:
        fired = conn.scalar(select(func.count(TimerRow.id)).where(TimerRow.status == TimerStatus.fired))
        audited = conn.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "timer_fired"))
    engine.dispose()
    if fired != count or audited != count:
        raise SystemExit(f"exactly-once violated: {fired} fired rows, {audited} audit events for {count} timers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    configured = database_url() if os.environ.get("DATABASE_URL") or os.environ.get("XIANGFLOW_DATABASE_URL") else None
    kind = "PostgreSQL" if configured and configured.startswith("postgresql") else "SQLite"
    print(f"XiangFlow timer bench: {args.timers} due timers on {kind}, {os.cpu_count()} CPUs")
    results = {}
    for workers in (int(w) for w in args.workers.split(",")):
        url = fresh_database(configured)
        setup = make_timers(url, args.timers)
        seconds = fire(url, workers)
        check(url, args.timers)
        results[workers] = seconds
        print(f"  {workers} worker(s): fired {args.timers} in {seconds:6.1f} s = {args.timers / seconds:7.0f} timers/s"
              f"  (setting up the cases took {setup:.1f} s); each fired exactly once")
    print(json.dumps({"bench": "timers", "database": kind, "timers": args.timers,
                      "seconds": results, "timers_per_second": {w: round(args.timers / s) for w, s in results.items()}}))


if __name__ == "__main__":
    main()

"""Excel import of N households (default 10,000, each with 3 members on the 家庭成员 sheet): time and peak memory.

Uses the configured database (DATABASE_URL → PostgreSQL, else a fresh SQLite file) with the demo data.
Builds the workbook as a county would fill in the downloaded template (not timed), then times, in one
process, ``RegistryExcel.import_file`` as ``POST /api/v1/subjects/import`` runs it (read the workbook, check
every row, look up duplicates, store all in one transaction):
  1. the same file with ONE bad row (a wrong check digit near the end): refused, nothing stored;
  2. the good file, checked only (dry run, the page's 校验);
  3. the good file, stored.
Peak memory: the Python heap's peak during the checking steps (tracemalloc, in a separate run so the timed
run is not slowed by tracing; ``--trace-store`` traces the store run too) and the process's peak RSS.

    .venv/bin/python bench/import.py --households 10000
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openpyxl import Workbook  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.support import fresh_database  # noqa: E402
from engine.bootstrap import DEMO_TOWNSHIP, first_village  # noqa: E402
from engine.core.clock import FixedClock  # noqa: E402
from engine.core.db import make_session_factory  # noqa: E402
from engine.core.errors import XiangFlowError  # noqa: E402
from engine.core.settings import database_url  # noqa: E402
from engine.models import Subject, User  # noqa: E402
from engine.models.registry import SubjectMember  # noqa: E402
from engine.registry.catalog import _CHECK, _WEIGHTS  # noqa: E402
from engine.registry.excel import HOUSEHOLD_COLUMNS, MEMBER_COLUMNS  # noqa: E402
from engine.uow import UnitOfWork  # noqa: E402
from tests.conftest import START  # noqa: E402

CATEGORIES = ("脱贫不稳定户", "边缘易致贫户", "突发严重困难户", "脱贫户")


def id_number(k: int) -> str:
    """The k-th distinct valid ID number: a birth date from 1950 on and a 3-digit sequence."""
    born = date(1950, 1, 1) + timedelta(days=k // 1000)
    seventeen = f"510921{born:%Y%m%d}{k % 1000:03d}"
    return seventeen + _CHECK[sum(int(d) * w for d, w in zip(seventeen, _WEIGHTS, strict=True)) % 11]


def workbook(n: int, village: str, bad_row: int | None = None) -> bytes:
    wb = Workbook(write_only=True)
    households = wb.create_sheet("农户")
    households.append([h for h, _ in HOUSEHOLD_COLUMNS])
    members = wb.create_sheet("家庭成员")
    members.append([h for h, _ in MEMBER_COLUMNS])
    for i in range(n):
        head = id_number(3 * i)
        shown = head[:17] + ("0" if head[17] != "0" else "1") if i == bad_row else head
        households.append([f"户主{i:05d}", shown, village, 3, CATEGORIES[i % 4], f"138{i:08d}",
                           "低保" if i % 10 == 0 else None, None, f"{i % 12 + 1} 组"])
        members.append([shown, f"户主{i:05d}", shown, "户主", "普通劳动力", "健康", "非在校生"])
        members.append([shown, f"配偶{i:05d}", id_number(3 * i + 1), "配偶", "弱劳动力或半劳动力", "长期慢性病", None])
        members.append([shown, f"子女{i:05d}", id_number(3 * i + 2), "子女", None, "健康", "初中"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def run(factory, clock, content: bytes, store: bool, trace: bool) -> tuple[float, float, str]:
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    outcome = ""
    try:
        with UnitOfWork(factory, clock) as work:
            actor = work.directory.actor(work.session.scalar(select(User).where(User.username == "demo_village")))
            result = work.registry_excel.import_file(actor, "household", content, store=store)
            outcome = f"{'stored' if store else 'checked'} {result.count} households, {result.member_count} members"
            if trace:
                work.session.rollback()  # the traced run only measures; the timed run stores
    except XiangFlowError as exc:
        outcome = f"refused: {str(exc)[:90]}"
    elapsed = time.perf_counter() - started
    peak = 0.0
    if trace:
        peak = tracemalloc.get_traced_memory()[1] / 1024 / 1024
        tracemalloc.stop()
    return elapsed, peak, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=10_000)
    parser.add_argument("--trace-store", action="store_true", help="also trace the Python heap of the store run")
    args = parser.parse_args()
    url = database_url() if "DATABASE_URL" in __import__("os").environ else None
    clock = FixedClock(START)
    url, engine = fresh_database(url, clock, "bench_import")
    factory = make_session_factory(engine)
    with UnitOfWork(factory, clock) as work:
        village = first_village(work, DEMO_TOWNSHIP)
    n = args.households
    t = time.perf_counter()
    good, bad = workbook(n, village), workbook(n, village, bad_row=n - 7)
    print(f"database: {engine.dialect.name}; workbook of {n} households + {3 * n} member rows: "
          f"{len(good) / 1024 / 1024:.2f} MB (built in {time.perf_counter() - t:.1f} s)", flush=True)

    def count() -> tuple[int, int]:
        with UnitOfWork(factory, clock) as work:
            return (work.session.scalar(select(func.count(Subject.id))),
                    work.session.scalar(select(func.count(SubjectMember.id))))

    before = count()
    print(f"process peak RSS before importing: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    for label, content, store in (("one bad row", bad, True), ("good file, check only", good, False),
                                  ("good file, store", good, True)):
        heap = "not traced"
        if content is bad or not store or args.trace_store:  # tracing a store run slows it several times
            heap = f"{run(factory, clock, content, store, trace=True)[1]:6.1f} MB"
        elapsed, _, outcome = run(factory, clock, content, store, trace=False)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{label:<24} {elapsed:6.1f} s   Python heap peak {heap}   process peak RSS {rss:6.0f} MB   {outcome}",
              flush=True)
        if label == "one bad row" or not store:
            assert count() == before, "a refused file stored something"
    after = count()
    assert after == (before[0] + n, before[1] + 3 * n), (before, after)
    print(f"registry: {before} → {after} (subjects, members)")
    engine.dispose()


if __name__ == "__main__":
    main()

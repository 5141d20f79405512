"""Benchmark: signed PDF notices — ms per one-page signed notice (p50/p95) and a batch of 1,000.

Run from the repository root::

    .venv/bin/python bench/notices.py                    # fresh SQLite file in a temp dir
    .venv/bin/python bench/notices.py --samples 50 --batch 200   # quicker

What is timed:

* **one notice**: ``NoticeService.issue`` of a 退出告知书 (one page, one household) in its own
  transaction, as the web page does it: jurisdiction and due checks, context from the case's task
  rows, Jinja, WeasyPrint layout and PDF (Noto Serif CJK subset by HarfBuzz), PAdES signature with
  pyHanko, SHA-256, the immutable row and the ``notice_issued`` audit event, commit. The first
  notices (font loading, CSS parsing, key loading) are warm-up and not counted. Render-only and
  sign-only times are measured separately on the same notice.
* **batch**: ``run_batch`` over N exited cases (one 退出告知书 each, one transaction each), as the
  background job and ``flask notices batch`` run it; then the zip of the signed originals and the
  merged print PDF are assembled from the stored files.

Setting up (N exited cases through the real engine, office keys) is not timed.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p and Path(p).resolve() != _BENCH_DIR]

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

from sqlalchemy import func, select  # noqa: E402

from engine import demo_data as D  # noqa: E402
from engine.bootstrap import DEMO_TOWNSHIP, demo_office_keys, first_village, setup_database  # noqa: E402
from engine.core.clock import FixedClock  # noqa: E402
from engine.core.db import make_engine, make_session_factory  # noqa: E402
from engine.models import IssuedNotice, Subject, User  # noqa: E402
from engine.notices.batches import merge_pdfs, run_batch, write_zip  # noqa: E402
from engine.notices.pki import KeyStore  # noqa: E402
from engine.notices.render import RENDERER  # noqa: E402
from engine.notices.sign import sign_pdf  # noqa: E402
from engine.procedures.notice_catalog import load_catalog  # noqa: E402
from engine.uow import UnitOfWork  # noqa: E402

FIELDS = {"contact_phone": "0825-5421234"}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def exited_cases(factory, clock, village: str, n: int) -> list[int]:
    """n households of the village taken through the whole 四步法 exit by the demo users, stage by stage:
    入户核查, 民主评议 → 出具村级公示 (issued, which starts the 公示 week) → 镇复核, 部门审定, 县级公告 →
    出具县级公告 (issued, the 公告 week) → 退出告知. The two public notices are issued for chunks of cases
    (one notice per chunk) so that none of them runs to hundreds of pages."""
    from datetime import timedelta

    from engine.models import Case, CaseStatus, TaskRow, TaskStatus

    with UnitOfWork(factory, clock) as work:
        actors = {u.username: work.directory.actor(u) for u in work.session.scalars(select(User))}
        for i in range(n):
            work.session.add(Subject(kind="household", region_code=village, name=f"测试户{i:04d}",
                                     id_number=f"510921198001{i % 10000:04d}01"[:18],
                                     attrs={"members": 3, "category": "脱贫不稳定户"}))
        work.session.flush()
        subjects = list(work.session.scalars(select(Subject.id).where(Subject.name.like("测试户%"))
                                             .order_by(Subject.id)))
    ids = []
    for subject_id in subjects:
        with UnitOfWork(factory, clock) as work:
            ids.append(work.cases.start_case("monitoring_exit", subject_id, actors["demo_village"]).id)

    def complete(steps):
        for case_id in ids:
            for who, data in steps:
                with UnitOfWork(factory, clock) as work:
                    row = work.session.scalar(select(TaskRow).where(TaskRow.case_id == case_id,
                                                                    TaskRow.status == TaskStatus.open))
                    if work.signatures.rule_for(row) is not None:  # 入户核查: 农户签字 first
                        work.signatures.add_signature(row.id, actors[who], D.signature_png(row.id))
                    work.cases.complete_task(row.id, actors[who], "approve", "情况属实,同意。", data)

    def issue(who: str, kind: str, chunk: int = 50):
        """Issue the public notice whose step is open on every case (completing that step)."""
        for start in range(0, len(ids), chunk):
            with UnitOfWork(factory, clock) as work:
                work.notices.issue(
                    actors[who], "monitoring_exit", kind, ids[start:start + chunk], D.NOTICE_FIELDS[kind])

    def pass_period():
        clock.advance(timedelta(days=D.NOTICE_DAYS, hours=1))
        while True:
            with UnitOfWork(factory, clock) as work:
                if not work.cases.fire_due_timers(limit=200):
                    return

    complete([("demo_village", D.HOUSEHOLD_CHECK), D.REVIEW_STEPS[0]])
    issue("demo_village", "village_public_notice")
    pass_period()
    complete(D.REVIEW_STEPS[1:])
    issue("demo_county", "county_announcement")
    pass_period()
    complete([("demo_village", D.EXIT_NOTICE)])
    with UnitOfWork(factory, clock) as work:
        exited = work.session.scalar(select(func.count(Case.id)).where(Case.status == CaseStatus.exited))
        assert exited == n, f"{exited} of {n} cases exited"
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100, help="single notices timed (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000, help="notices in the batch")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="xf-bench-notices-"))
    engine = make_engine(f"sqlite:///{workdir / 'bench.sqlite3'}")
    clock = FixedClock(datetime(2026, 9, 1, 1, 0, tzinfo=timezone.utc))
    setup_database(engine, clock, demo=True, demo_cases=False)
    factory = make_session_factory(engine)
    with UnitOfWork(factory, clock) as work:
        village = first_village(work, DEMO_TOWNSHIP)
        demo_office_keys(work, village)  # the village committee, 宝梵镇 and 蓬溪县
        clerk = work.directory.actor(work.session.scalar(select(User).where(User.username == "demo_clerk")))

    total = args.warmup + args.samples + args.batch
    started = time.perf_counter()
    cases = exited_cases(factory, clock, village, total)
    setup_s = time.perf_counter() - started
    print(f"setup: {total} exited cases through the engine in {setup_s:.1f} s (not counted)")

    single, sizes, pages = [], [], set()
    serial = None
    for i, case_id in enumerate(cases[:args.warmup + args.samples]):
        t0 = time.perf_counter()
        with UnitOfWork(factory, clock) as work:
            notice = work.notices.issue(clerk, "monitoring_exit", "exit_notice", [case_id],
                                                               FIELDS)
            sizes.append(notice.size_bytes)
            pages.add(notice.page_count)
            serial = notice.serial
        if i >= args.warmup:
            single.append((time.perf_counter() - t0) * 1000)

    # the two expensive parts alone, on the same notice's HTML
    with UnitOfWork(factory, clock) as work:
        catalog = load_catalog(work.definitions, "monitoring_exit")
        stored = work.session.scalar(select(IssuedNotice).where(IssuedNotice.serial == serial))
        office = KeyStore(work.session, clock).signer(stored.office)
        service = work.notices
        kind = service.kind("monitoring_exit", "exit_notice")
        case = service.eligibility.cases(clerk, [cases[0]])
        group = service.groups(kind, case)[0]
        context = service.issuer.contexts.build(kind, group, stored.office, stored.params, serial, clock.now(), {})
        context["notice"]["title"] = stored.title
        html = RENDERER.jinja(catalog).get_template(kind.template).render(**context)
    render_ms, sign_ms = [], []
    for _ in range(20):
        t0 = time.perf_counter()
        rendered = RENDERER.render(html, catalog)
        t1 = time.perf_counter()
        sign_pdf(rendered.pdf, office, page=rendered.seal_page, box=rendered.seal_box, reason="bench", location="x")
        t2 = time.perf_counter()
        render_ms.append((t1 - t0) * 1000)
        sign_ms.append((t2 - t1) * 1000)

    print(f"one-page signed notice (退出告知书, issue = checks + render + sign + store + audit + commit), "
          f"n={len(single)}: p50 {percentile(single, 50):.0f} ms, p95 {percentile(single, 95):.0f} ms, "
          f"mean {statistics.mean(single):.0f} ms")
    print(f"  of which WeasyPrint layout+PDF p50 {percentile(render_ms, 50):.0f} ms, "
          f"pyHanko PAdES signature p50 {percentile(sign_ms, 50):.0f} ms; "
          f"pages {sorted(pages)}, size p50 {percentile(sizes, 50) / 1024:.0f} KB")

    batch_cases = cases[args.warmup + args.samples:]
    with UnitOfWork(factory, clock) as work:
        batch_id = work.notices.create_batch(
            clerk, "monitoring_exit", "exit_notice", batch_cases, FIELDS).id
    t0 = time.perf_counter()
    status = run_batch(factory, clock, batch_id)
    batch_s = time.perf_counter() - t0
    with UnitOfWork(factory, clock) as work:
        service = work.notices
        batch = service.get_batch(clerk, batch_id)
        notices = service.batch_notices(batch, with_pdf=True)
        t1 = time.perf_counter()
        archive = io.BytesIO()
        write_zip(notices, archive)
        t2 = time.perf_counter()
        merged = merge_pdfs(notices)
        t3 = time.perf_counter()
    print(f"batch of {len(batch_cases):,} notices (run_batch, one transaction each): {batch_s:.1f} s "
          f"({len(batch_cases) / batch_s:.1f} notices/s), status {status.value if status else '?'}, "
          f"{batch.done_count} done, {batch.failed_count} failed")
    print(f"  zip of the signed originals {t2 - t1:.1f} s ({len(archive.getvalue()) / 2**20:.0f} MB), "
          f"merged print PDF {t3 - t2:.1f} s ({len(merged) / 2**20:.0f} MB)")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    engine.dispose()


if __name__ == "__main__":
    main()

"""Benchmark: signed PDF notices — XiangFlow's cost per notice against a bare render + sign of the same HTML.

Run from the repository root (after ``make setup``, which builds the notice fonts)::

    .venv/bin/python bench/notices.py                             # fresh SQLite file in a temp dir
    .venv/bin/python bench/notices.py --samples 30 --batch 200    # quicker
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/xf_bench .venv/bin/python bench/notices.py  # schema dropped first

A batch runs over several processes on PostgreSQL only (SQLite has one writer: one process there).

What is timed:

* **one notice**: ``work.notices.issue`` of a 退出告知书 (one page, one household) in its own unit of
  work, as the web page does it: jurisdiction and due checks, context from the case's task rows, Jinja,
  WeasyPrint layout and PDF (the notice fonts, engine/notices/fonts.py), PAdES signature with pyHanko,
  SHA-256, the immutable row and the ``notice_issued`` audit event, commit.
* **bare**, interleaved with it in the same run: the same HTML rendered by WeasyPrint alone (its own warm
  FontConfiguration, the same stylesheets parsed once) and signed by pyHanko alone with the same key —
  what any program must do to make this PDF. The ratio XiangFlow / bare is the cost of everything else.
  The same bare render with the installed fonts (no notice fonts) is shown for the size it gives.
* **batch**: ``run_batch`` over N cases at 退出告知 (one 退出告知书 each, one transaction each) over
  ``--workers`` processes (default: the cores), as the background job and ``flask notices batch`` run it;
  then the zip of the signed originals and the merged print PDF are assembled from the stored files.

The first notices (imports, fonts, CSS, keys) are warm-up and not counted. Setting up (N cases taken to
退出告知 through the real engine, office keys) is not timed. The cases wait at 退出告知 because that is where
the village issues the 退出告知书: the step cannot be completed before it (``requiresNotice``).
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
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

from sqlalchemy import func, select  # noqa: E402

from bench.support import fresh_database  # noqa: E402
from engine import demo_data as D  # noqa: E402
from engine.bootstrap import DEMO_TOWNSHIP, demo_office_keys, first_village  # noqa: E402
from engine.core import settings  # noqa: E402
from engine.core.clock import FixedClock  # noqa: E402
from engine.core.db import make_session_factory  # noqa: E402
from engine.models import Subject, User  # noqa: E402
from engine.notices import fonts  # noqa: E402
from engine.notices.batches import default_workers, merge_pdfs, run_batch, write_zip  # noqa: E402
from engine.notices.render import RENDERER  # noqa: E402
from engine.procedures.notice_catalog import load_catalog  # noqa: E402
from engine.uow import UnitOfWork  # noqa: E402

FIELDS = {"contact_phone": "0825-5421234"}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def exit_notice_cases(factory, clock, village: str, n: int) -> list[int]:
    """n households of the village taken through the 四步法 exit by the demo users, stage by stage, to
    退出告知: 入户核查, 民主评议 → 出具村级公示 (issued, which starts the 公示 week) → 镇复核, 部门审定, 县级公告 →
    出具县级公告 (issued, the 公告 week) → 退出告知 open, its 退出告知书 due. The two public notices are issued for chunks of cases
    (one notice per chunk) so that none of them runs to hundreds of pages."""
    from datetime import timedelta

    from engine.models import TaskRow, TaskStatus

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
    with UnitOfWork(factory, clock) as work:
        waiting = work.session.scalar(select(func.count(TaskRow.id)).where(
            TaskRow.case_id.in_(ids), TaskRow.spec_name == "exit_notice", TaskRow.status == TaskStatus.open))
        assert waiting == n, f"{waiting} of {n} cases at 退出告知"
    return ids


def catalog_css(factory, clock) -> list[str]:
    """The exit notice's stylesheets as its procedure version holds them."""
    with UnitOfWork(factory, clock) as work:
        catalog = load_catalog(work.definitions, "monitoring_exit")
        return [catalog.file(name) for name in catalog.stylesheets]


class BareRenderer:
    """WeasyPrint and pyHanko alone: one warm FontConfiguration, the stylesheets parsed once, nothing else."""

    def __init__(self, css_texts: list[str], notice_fonts: bool = True):
        import weasyprint
        from weasyprint.text.fonts import FontConfiguration

        self.weasyprint = weasyprint
        self.font_config = FontConfiguration()
        rules, aliases = "", {}
        for font, path in (fonts.installed() if notice_fonts else []):
            rules += (f'@font-face {{ font-family: "{font.notice_family}"; src: url("{path.as_uri()}"); '
                      f"font-weight: {font.weight}; }}\n")
            aliases[f'"{font.family}"'] = f'"{font.notice_family}", "{font.family}"'
        texts = [rules] + [_replace_all(text, aliases) for text in css_texts]
        self.sheets = [weasyprint.CSS(string=text, font_config=self.font_config) for text in texts if text]

    def render_and_sign(self, html: str, office) -> tuple[bytes, float]:
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers

        t0 = time.perf_counter()
        pdf = self.weasyprint.HTML(string=html).write_pdf(stylesheets=self.sheets, font_config=self.font_config)
        render_s = time.perf_counter() - t0
        meta = signers.PdfSignatureMetadata(field_name="Signature", md_algorithm="sha256",
                                            subfilter=fields.SigSeedSubFilter.PADES)
        signed = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), meta, signer=office.signer)
        return signed.getvalue(), render_s


def _replace_all(text: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        text = text.replace(old, new)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100, help="single notices timed (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000, help="notices in the batch")
    parser.add_argument("--workers", type=int, default=None, help="batch processes (default: the cores, at most 4)")
    args = parser.parse_args()

    clock = FixedClock(datetime(2026, 9, 1, 1, 0, tzinfo=timezone.utc))
    configured = os.environ.get("XIANGFLOW_DATABASE_URL") or os.environ.get("DATABASE_URL")
    url, engine = fresh_database(settings.database_url() if configured else None, clock, "bench_notices")
    factory = make_session_factory(engine)
    print(f"database: {engine.dialect.name}")
    with UnitOfWork(factory, clock) as work:
        village = first_village(work, DEMO_TOWNSHIP)
        demo_office_keys(work, village)  # the village committee, 宝梵镇 and 蓬溪县
        # the village committee issues the 退出告知书 at the 退出告知 step, where the bench's cases wait
        issuer = work.directory.actor(work.session.scalar(select(User).where(User.username == "demo_village")))

    total = args.warmup + args.samples + args.batch
    started = time.perf_counter()
    cases = exit_notice_cases(factory, clock, village, total)
    setup_s = time.perf_counter() - started
    print(f"setup: {total} cases taken to 退出告知 through the engine in {setup_s:.1f} s (not counted)")

    bare = BareRenderer(catalog_css(factory, clock))
    with UnitOfWork(factory, clock) as work:  # the village committee's key, which signs every 退出告知书 here
        office = work.keys.signer(work.notices.offices_for(work.notices.kind("monitoring_exit", "exit_notice"),
                                                           village)[0])
    captured: dict = {}
    xiangflow_render = RENDERER.render

    def recording(html, catalog, stylesheet_names=None):  # keep the HTML XiangFlow renders, for the bare run
        captured["html"] = html
        return xiangflow_render(html, catalog, stylesheet_names)

    RENDERER.render = recording
    single, bare_ms, bare_render_ms, sizes, bare_sizes, pages = [], [], [], [], [], set()
    for i, case_id in enumerate(cases[:args.warmup + args.samples]):
        t0 = time.perf_counter()
        with UnitOfWork(factory, clock) as work:
            notice = work.notices.issue(issuer, "monitoring_exit", "exit_notice", [case_id], FIELDS)
            sizes.append(notice.size_bytes)
            pages.add(notice.page_count)
        t1 = time.perf_counter()
        pdf, render_s = bare.render_and_sign(captured["html"], office)
        t2 = time.perf_counter()
        if i >= args.warmup:
            single.append((t1 - t0) * 1000)
            bare_ms.append((t2 - t1) * 1000)
            bare_render_ms.append(render_s * 1000)
            bare_sizes.append(len(pdf))
    RENDERER.render = xiangflow_render
    installed_pdf, _ = BareRenderer(catalog_css(factory, clock), notice_fonts=False).render_and_sign(
        captured["html"], office)

    ratio = percentile(single, 50) / percentile(bare_ms, 50)
    print(f"one-page signed notice (退出告知书), n={len(single)}, interleaved in the same run:")
    print(f"  XiangFlow issue (checks + context + render + sign + store + audit + commit): "
          f"p50 {percentile(single, 50):.0f} ms, p95 {percentile(single, 95):.0f} ms")
    print(f"  bare WeasyPrint render + pyHanko signature of the same HTML: p50 {percentile(bare_ms, 50):.0f} ms "
          f"(render {percentile(bare_render_ms, 50):.0f} ms), p95 {percentile(bare_ms, 95):.0f} ms")
    print(f"  XiangFlow / bare: {ratio:.2f}x (p50)")
    print(f"  size per notice: XiangFlow p50 {percentile(sizes, 50) / 1024:.0f} KB, max {max(sizes) / 1024:.0f} KB "
          f"(bare, same fonts: {percentile(bare_sizes, 50) / 1024:.0f} KB; bare with the installed fonts: "
          f"{len(installed_pdf) / 1024:.0f} KB); pages {sorted(pages)}; notice fonts: "
          f"{', '.join(RENDERER.notice_fonts) or 'NOT BUILT (make setup)'}")

    batch_cases = cases[args.warmup + args.samples:]
    with UnitOfWork(factory, clock) as work:
        batch_id = work.notices.create_batch(
            issuer, "monitoring_exit", "exit_notice", batch_cases, FIELDS).id
    workers = (args.workers or default_workers()) if engine.dialect.name == "postgresql" else 1
    t0 = time.perf_counter()
    status = run_batch(factory, clock, batch_id, workers=workers)
    batch_s = time.perf_counter() - t0
    with UnitOfWork(factory, clock) as work:
        service = work.notices
        batch = service.get_batch(issuer, batch_id)
        notices = service.batch_notices(batch, with_pdf=True)
        t1 = time.perf_counter()
        archive = io.BytesIO()
        write_zip(notices, archive)
        t2 = time.perf_counter()
        merged = merge_pdfs(notices)
        t3 = time.perf_counter()
    batch_sizes = [n.size_bytes for n in notices]
    print(f"batch of {len(batch_cases):,} notices (run_batch, one transaction each, {workers} process{'es' if workers > 1 else ''}): "
          f"{batch_s:.1f} s ({len(batch_cases) / batch_s:.1f} notices/s, {batch_s * 1000 / len(batch_cases):.0f} ms "
          f"per notice), status {status.value if status else '?'}, {batch.done_count} done, "
          f"{batch.failed_count} failed; size p50 {percentile(batch_sizes, 50) / 1024:.0f} KB, "
          f"max {max(batch_sizes) / 1024:.0f} KB")
    print(f"  zip of the signed originals {t2 - t1:.1f} s ({len(archive.getvalue()) / 2**20:.0f} MB), "
          f"merged print PDF {t3 - t2:.1f} s ({len(merged) / 2**20:.0f} MB)")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    engine.dispose()


if __name__ == "__main__":
    main()

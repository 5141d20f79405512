"""Running notice batches: one notice per group, one transaction each, over several processes; and their output.

A batch is queued by ``NoticeService.create_batch`` (every group checked up front) and run by
``run_batch``: the batch row is claimed with a lease, the groups not yet issued are issued — in this
process, or on PostgreSQL spread over ``workers`` processes (``XIANGFLOW_NOTICE_WORKERS``, default the
number of cores, at most 4) each with its own database connection and its own warm renderer — and the progress
is kept in ``notice_batch``. A batch interrupted half-way is resumed by the next claim once its lease
ran out: groups already issued are skipped. Rendering and signing hold the GIL, so processes, not
threads, are what use several cores.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing import get_context
from typing import Any

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine.core import settings
from engine.core.errors import XiangFlowError
from engine.models import Case, IssuedNotice, NoticeBatch, NoticeBatchStatus, User

log = logging.getLogger(__name__)

BATCH_LEASE = timedelta(minutes=5)
WORKERS_ENV = "XIANGFLOW_NOTICE_WORKERS"
MAX_WORKERS = 4
MIN_GROUPS_PER_WORKER = 4  # below this a process start (≈1 s: imports, fonts) costs more than it saves


def default_workers() -> int:
    """XIANGFLOW_NOTICE_WORKERS, else the number of cores (at most 4)."""
    try:
        return max(1, int(os.environ[WORKERS_ENV]))
    except (KeyError, ValueError):
        return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


@dataclass(frozen=True)
class _Job:
    """What a worker needs to issue the notices of one batch (picklable)."""

    batch_id: int
    user_id: int
    procedure_code: str
    kind_code: str
    values: dict[str, Any] | None
    base_url: str | None
    keys_passphrase: bytes | None


@dataclass(frozen=True)
class _Outcome:
    key: str
    error: str | None = None


def _services(session: Session, clock, job: _Job) -> Any:
    """The services of one batch transaction, from the composition root (as web, CLI and tests get them)."""
    from engine.uow import Services  # the composition root sits above the notices: imported when run

    return Services(session, clock, settings.STORAGE_DIR, base_url=job.base_url, keys_passphrase=job.keys_passphrase)


def _issue_group(factory: sessionmaker, clock, job: _Job, key: str, case_ids: list[int]) -> _Outcome:
    """Issue one group's notice in its own transaction and count it done; a failure is returned, not raised."""
    try:
        with factory() as session, session.begin():
            services = _services(session, clock, job)
            actor = services.directory.actor(session.get(User, job.user_id))
            services.notices.issue(actor, job.procedure_code, job.kind_code, case_ids, job.values,
                          batch_id=job.batch_id, group_key=key)
            session.execute(update(NoticeBatch).where(NoticeBatch.id == job.batch_id).values(
                done_count=NoticeBatch.done_count + 1, claimed_until=clock.now() + BATCH_LEASE))
        return _Outcome(key)
    except Exception as exc:  # one notice failing (bad data, a template error) must not stop the others
        if not isinstance(exc, XiangFlowError):
            log.exception("notice batch %s: group %s failed", job.batch_id, key)
        return _Outcome(key, _message(exc)[:500])


# ---------------------------------------------------------------------------- worker processes

_WORKER: dict[str, Any] = {}


def _worker_start(url: str, clock) -> None:
    """Each worker process: its own engine and session factory, and a renderer warmed once."""
    from engine.core.db import make_engine, make_session_factory
    from engine.notices.render import RENDERER

    engine = make_engine(url)
    _WORKER.update(factory=make_session_factory(engine), clock=clock)
    RENDERER.warm_up()


def _worker_issue(job: _Job, key: str, case_ids: list[int]) -> _Outcome:
    return _issue_group(_WORKER["factory"], _WORKER["clock"], job, key, case_ids)


def _shared_url(factory: sessionmaker) -> str | None:
    """The database URL worker processes open, or None: only PostgreSQL writes from several processes at
    once. (SQLite has one writer, and a notice's transaction reads before it writes: in WAL mode a second
    process's commit in between makes the upgrade fail at once, "database is locked", so SQLite batches
    run in one process.)"""
    engine = factory.kw.get("bind")
    if not isinstance(engine, Engine) or engine.dialect.name != "postgresql":
        return None
    return engine.url.render_as_string(hide_password=False)


def _outcomes(factory: sessionmaker, clock, job: _Job, pending: list[tuple[str, list[int]]],
              workers: int) -> Iterator[_Outcome]:
    url = _shared_url(factory) if workers > 1 else None
    workers = min(workers, len(pending) // MIN_GROUPS_PER_WORKER) if url else 1
    if url is None or workers <= 1:
        for key, case_ids in pending:
            yield _issue_group(factory, clock, job, key, case_ids)
        return
    # spawn, not fork: the parent may be a threaded web process holding database connections
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=_worker_start, initargs=(url, clock)) as pool:
        futures = [pool.submit(_worker_issue, job, key, case_ids) for key, case_ids in pending]
        for future in futures:
            yield future.result()


# ---------------------------------------------------------------------------- running batches


def run_batch(factory: sessionmaker, clock, batch_id: int, progress: Callable[[int, int], None] | None = None,
              keys_passphrase: bytes | None = None, workers: int | None = None) -> NoticeBatchStatus | None:
    """Claim a queued batch and issue its notices, one transaction each, over ``workers`` processes
    (default ``default_workers()``); return its final status.

    Returns None when another worker holds the batch. A batch interrupted half-way is resumed by
    the next claim once its lease ran out: groups already issued are skipped.
    """
    now = clock.now()
    with factory() as session, session.begin():
        claimed = session.execute(
            update(NoticeBatch).where(NoticeBatch.id == batch_id)
            .where(or_(NoticeBatch.status == NoticeBatchStatus.queued,
                       (NoticeBatch.status == NoticeBatchStatus.running) & (NoticeBatch.claimed_until < now)))
            .values(status=NoticeBatchStatus.running, started_at=now, claimed_until=now + BATCH_LEASE)
        ).rowcount
    if claimed != 1:
        return None
    with factory() as session:
        batch = session.get(NoticeBatch, batch_id)
        params = dict(batch.params)
        errors = list(batch.errors or [])
        job = _Job(batch_id, batch.created_by_id, batch.procedure_code, batch.kind, params.get("values"),
                   params.get("base_url"), keys_passphrase)
        try:
            services = _services(session, clock, job)
            services.directory.actor(session.get(User, job.user_id))
            service = services.notices
            kind = service.kind(job.procedure_code, job.kind_code)
        except XiangFlowError as exc:
            session.rollback()
            _finish_batch(factory, clock, batch_id, NoticeBatchStatus.failed, 0, 0,
                          [*errors, {"group": "", "message": str(exc)[:500]}])
            return NoticeBatchStatus.failed
        cases = list(session.scalars(select(Case).where(Case.id.in_(params["case_ids"]))
                                     .order_by(Case.region_code, Case.id)))
        groups = [(g.key, [c.id for c in g.cases]) for g in service.groups(kind, cases)]
        done_keys = set(session.scalars(select(IssuedNotice.group_key).where(IssuedNotice.batch_id == batch_id)))
        session.rollback()
    with factory() as session, session.begin():  # the count the workers add to
        session.execute(update(NoticeBatch).where(NoticeBatch.id == batch_id).values(done_count=len(done_keys)))
    done, failed, total = len(done_keys), 0, len(groups)
    if progress:
        progress(done, total)
    pending = [(key, case_ids) for key, case_ids in groups if key not in done_keys]
    for outcome in _outcomes(factory, clock, job, pending, workers or default_workers()):
        if outcome.error is None:
            done += 1
        else:
            failed += 1
            errors.append({"group": outcome.key, "message": outcome.error})
            with factory() as session, session.begin():
                session.execute(update(NoticeBatch).where(NoticeBatch.id == batch_id).values(
                    failed_count=failed, errors=errors, claimed_until=clock.now() + BATCH_LEASE))
        if progress:
            progress(done + failed, total)
    status = NoticeBatchStatus.failed if total and failed == total else NoticeBatchStatus.done
    _finish_batch(factory, clock, batch_id, status, done, failed, errors)
    return status


def _message(exc: Exception) -> str:
    detail = "；".join(getattr(exc, "errors", {}).values())
    return f"{exc}：{detail}" if detail else str(exc)


def _finish_batch(factory, clock, batch_id: int, status: NoticeBatchStatus, done: int, failed: int,
                  errors: list) -> None:
    with factory() as session, session.begin():
        session.execute(update(NoticeBatch).where(NoticeBatch.id == batch_id).values(
            status=status, finished_at=clock.now(), claimed_until=None, done_count=done, failed_count=failed,
            errors=errors))


def run_queued_batches(factory: sessionmaker, clock, limit: int = 10) -> int:
    """Run queued (or abandoned) batches; return how many ran."""
    now = clock.now()
    with factory() as session:
        ids = list(session.scalars(
            select(NoticeBatch.id).where(or_(NoticeBatch.status == NoticeBatchStatus.queued,
                                             (NoticeBatch.status == NoticeBatchStatus.running)
                                             & (NoticeBatch.claimed_until < now)))
            .order_by(NoticeBatch.id).limit(limit)))
    return sum(1 for batch_id in ids if run_batch(factory, clock, batch_id) is not None)


# ---------------------------------------------------------------------------- batch output


def _safe_filename(text: str) -> str:
    return re.sub(r'[\\/:*?"<>|\s]+', "_", text)[:80]


def write_zip(notices: list[IssuedNotice], out) -> None:
    """Write the signed PDFs (each verifiable on its own) and a list with their SHA-256 to a zip."""
    listing = io.StringIO()
    writer = csv.writer(listing)
    writer.writerow(["编号", "公文", "标题", "签发单位", "成文日期", "SHA-256", "文件"])
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, notice in enumerate(notices, 1):
            name = f"{index:04d}_{notice.serial}_{_safe_filename(notice.title)}.pdf"
            archive.writestr(name, notice.pdf)
            writer.writerow([notice.serial, notice.kind_name, notice.title, notice.office_name,
                             notice.document_date, notice.sha256, name])
        archive.writestr("清单.csv", "\ufeff" + listing.getvalue())


def merge_pdfs(notices: list[IssuedNotice]) -> bytes:
    """One PDF for printing, the notices one after another.

    Merging drops the individual signatures (a signature covers exactly one file); each printed
    page still carries its serial number and QR code, and the signed originals are in the zip.
    """
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for notice in notices:
        writer.append(PdfReader(io.BytesIO(notice.pdf)), import_outline=False)
    writer.add_metadata({"/Title": f"公文合并打印({len(notices)} 份)", "/Producer": "XiangFlow"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()

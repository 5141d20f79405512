"""Benchmark: XiangFlow task completions against a naive "whole blob per case" baseline.

Run from the repository root::

    .venv/bin/python bench/engine.py                     # fresh SQLite file in a temp dir
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/xf_bench .venv/bin/python bench/engine.py

The PostgreSQL database must exist; the bench DROPs and re-creates its ``public`` schema.

Both paths run the "monitoring_exit" procedure for N households (N split evenly over the
processes): every case is started (timed separately), then its user tasks are completed one
step for all cases at a time, one transaction per completion, with the form data of
``engine.demo_data``: 入户核查 (HOUSEHOLD_CHECK), the four-step chain (REVIEW_STEPS), and
退出告知 (EXIT_NOTICE) where the procedure has it. Where a public-notice period (a timer)
separates two steps, the clock is moved and due timers fired between the timed rounds.
The issuance steps that start those periods (出具村级公示, 出具县级公告: ``noticeKind`` steps) are
completed between the rounds too, not timed: XiangFlow by ``CaseService.complete_issuance`` with
a bench serial (what ``NoticeService.issue`` does for each covered case, without rendering and
signing the PDF), the naive path by running the ready issuance task with the same serial.
Each XiangFlow case gets its 退出告知书 row before the rounds (退出告知 ``requiresNotice``s one; a row
without a PDF, not timed). Only the completion rounds are measured ("completions/s", latencies, CPU per completion);
the processes meet at a barrier before and after each round so their rounds overlap.

* XiangFlow: one ``UnitOfWork`` per completion, as the web layer does: ``CaseService.complete_task``
  on the case's open task (case lock, spec-free state, spec cache, task/timer row sync, audit event),
  commit. The task ids are looked up before each round, not timed, as the inbox lists them (a
  completion request has its task id from the link). 入户核查 sends the household's signature with the
  decision (``SignatureService.complete_signed``: one mutation stores it and completes the task).
  Actors are resolved once per process (the web layer's per-request user load is not counted).
* XF cold: the same with the per-process live-workflow cache off (``LIVE_WORKFLOWS.capacity = 0``), so
  every mutation deserializes the stored state, as when consecutive requests for one case land on
  different web processes.
* naive: a table with one ``Text`` blob per case holding the whole workflow serialized
  *with its spec* by ``FULL_SERIALIZER``. Per step: ORM load, ``deserialize_json``, complete
  the ready user task, ``do_engine_steps``, ``serialize_json``, ORM save, commit. No task
  rows, no audit, no lock, no spec cache.

``--cpu`` additionally runs each path once more in this process (no profiler) and prints its CPU and
wall ms per completion: with ``--processes ""`` a quick before/after comparison.

``--profile`` additionally runs each path once more in this process under cProfile (process
CPU time; not counted in the figures) and prints the top functions.

``--sql`` additionally runs the XiangFlow path once more in this process with an SQLAlchemy
``before_cursor_execute`` listener and prints the SQL statements per completion, by kind (verb and
first table; "+join" when the statement joins) and by step. Only the timed completions count.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_BENCH_DIR = Path(__file__).resolve().parent
# bench/engine.py must not shadow the engine package: repository root first, bench dir out.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p and Path(p).resolve() != _BENCH_DIR]

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import queue as queue_mod  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

from SpiffWorkflow.bpmn import BpmnWorkflow  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402
from sqlalchemy import Integer, Text, bindparam, event, func, select, text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

from bench.support import ensure_database  # noqa: E402
from engine import demo_data  # noqa: E402
from engine.bootstrap import first_village, setup_database  # noqa: E402
from engine.core import clock as clock_mod  # noqa: E402
from engine.core.clock import FixedClock  # noqa: E402
from engine.core.db import make_engine, make_session_factory  # noqa: E402
from engine.core.errors import ConflictError  # noqa: E402
from engine.core.settings import database_url  # noqa: E402
from engine.models import (  # noqa: E402
    Case,
    CaseStatus,
    IssuedNotice,
    IssuedNoticeCase,
    OfficeKey,
    ProcedureVersion,
    Subject,
    TaskRow,
    TaskStatus,
    TimerRow,
    TimerStatus,
    User,
)
from engine.procedures.expressions import SCRIPT_ENGINE  # noqa: E402
from engine.procedures.serialization import FULL_SERIALIZER, spec_from_json  # noqa: E402
from engine.procedures.step_rules import spec_properties  # noqa: E402
from engine.runtime.live_cache import LIVE_WORKFLOWS  # noqa: E402
from engine.runtime.projections import is_timer, timer_due  # noqa: E402
from engine.uow import UnitOfWork  # noqa: E402

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


# the open task of each case (a web request has its id from the inbox link; the bench looks them up before
# each round, untimed), built once
_OPEN_TASKS = select(TaskRow.case_id, TaskRow.id, TaskRow.title).where(
    TaskRow.case_id.in_(bindparam("case_ids", expanding=True)), TaskRow.status == TaskStatus.open)


class NaiveBase(DeclarativeBase):
    pass


class NaiveCase(NaiveBase):
    __tablename__ = "naive_case"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob: Mapped[str] = mapped_column(Text)


# ---------------------------------------------------------------------------------- setup
def resolve_url() -> tuple[str, str | None]:
    """(SQLAlchemy URL, temp dir to clean up or None)."""
    if os.environ.get("XIANGFLOW_DATABASE_URL") or os.environ.get("DATABASE_URL"):
        return database_url(), None
    tmp = tempfile.mkdtemp(prefix="xf_bench_")
    return f"sqlite:///{tmp}/bench.sqlite3", tmp


def fresh_database(url: str) -> None:
    ensure_database(url)  # a PostgreSQL URL may name a database that does not exist yet
    engine = make_engine(url)
    try:
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        setup_database(engine, FixedClock(START), demo=True, demo_cases=False)
        NaiveBase.metadata.create_all(engine)
    finally:
        engine.dispose()


def add_households(url: str, count: int, tag: str) -> list[int]:
    """Create count households in the demo village; return their ids."""
    from engine.bootstrap import DEMO_TOWNSHIP

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


# ---------------------------------------------------------------------------------- XiangFlow
class XiangFlowPath:
    name = "XiangFlow"

    def __init__(self, url: str):
        self.engine = make_engine(url)
        self.factory = make_session_factory(self.engine)
        self.clock = FixedClock(START)
        self.signatures: dict[int, bytes] = {}
        self.open_tasks: dict[int, tuple[int, str]] = {}  # case id → (open task id, title), before each round
        with UnitOfWork(self.factory, self.clock) as work:
            self.actors = {}
            for username in {u for u, _ in STEPS}:
                user = work.session.scalar(select(User).where(User.username == username))
                self.actors[username] = work.directory.actor(user)

    def start(self, subject_id: int) -> int:
        with UnitOfWork(self.factory, self.clock) as work:
            return work.cases.start_case(PROCEDURE, subject_id, self.actors["demo_village"]).id

    def prepare(self, case_ids: list[int]) -> None:
        """Draw each household's signature PNG before the timed rounds (test data: the tablet sends the
        drawn PNG, the server does not draw it), and give each case its 退出告知书 (not timed)."""
        self.signatures = {case_id: demo_data.signature_png(case_id) for case_id in case_ids}
        self.add_exit_notices(case_ids)

    def add_exit_notices(self, case_ids: list[int]) -> None:
        """A 退出告知书 row for each case, as the village issues it before 退出告知 (``requiresNotice``), without
        rendering or signing a PDF (bench/notices.py measures that): the timed rounds measure completions only."""
        if STEPS[-1][1] is not getattr(demo_data, "EXIT_NOTICE", None):
            return
        with UnitOfWork(self.factory, self.clock) as work:
            cases = work.session.scalars(select(Case).where(Case.id.in_(case_ids))).all()
            keys = {k.region_code: k for k in work.session.scalars(
                select(OfficeKey).where(OfficeKey.retired_at.is_(None)))}
            issuer = self.actors["demo_village"].user_id
            for case in cases:
                key = keys[case.region_code]  # the village committee's key (demo_office_keys)
                notice = IssuedNotice(
                    serial=f"{BENCH_SERIAL}-{case.id}", procedure_code=PROCEDURE, kind="exit_notice",
                    kind_name="退出告知书", title="防止返贫监测对象风险消除退出告知书", public=False,
                    region_code=case.region_code, office_key_id=key.id, office_name=key.office_name,
                    issued_by_id=issuer, issued_at=self.clock.now(), document_date=self.clock.now().date().isoformat(),
                    params={}, covers=[], template_sha256="0" * 64, sha256="0" * 64, size_bytes=0, page_count=0,
                    pdf=b"")
                work.session.add(notice)
                work.session.flush()
                work.session.add(IssuedNoticeCase(notice_id=notice.id, case_id=case.id))

    def before_round(self, case_ids: list[int]) -> None:
        """Look up the open task of every case at once (not timed), as the inbox lists them: a completion
        request has the task id from its link (``/tasks/<id>``) and does not look it up."""
        with UnitOfWork(self.factory, self.clock) as work:
            self.open_tasks = {row.case_id: (row.id, row.title) for row in work.session.execute(_OPEN_TASKS, {
                "case_ids": case_ids})}

    def complete(self, case_id: int, step: int) -> str:
        """Complete the case's open task as the web layer does; return the task's title."""
        username, data = STEPS[step]
        found = self.open_tasks.get(case_id)
        if found is None:
            raise RuntimeError(f"case {case_id}: no open task at step {step + 1}")
        task_id, title = found
        with UnitOfWork(self.factory, self.clock) as work:
            if step == 0:  # 入户核查: the household's signature (农户签字), sent with the decision
                work.signatures.complete_signed(task_id, self.actors[username], self.signatures[case_id],
                                                "approve", OPINION, data)
            else:
                work.cases.complete_task(task_id, self.actors[username], "approve", OPINION, data)
            return title

    def issue_notices(self, case_ids: list[int]) -> int:
        """Complete the open issuance steps (出具公示/公告) of these cases; return how many (not timed)."""
        with UnitOfWork(self.factory, self.clock) as work:
            rows = work.session.scalars(select(TaskRow).where(
                TaskRow.case_id.in_(case_ids), TaskRow.status == TaskStatus.open, TaskRow.actions == "issue")).all()
            pending = [(row.case_id, work.cases.issuance_kind(row)) for row in rows]
        for case_id, kind in pending:
            with UnitOfWork(self.factory, self.clock) as work:
                if work.cases.complete_issuance(case_id, kind, self.actors["demo_village"], BENCH_SERIAL) is None:
                    raise RuntimeError(f"case {case_id}: no open issuance step {kind}")
        return len(pending)

    def waiting(self, case_ids: list[int]) -> set[int]:
        """The cases without an open task (a public-notice period is running)."""
        with UnitOfWork(self.factory, self.clock) as work:
            busy = set(work.session.scalars(
                select(TaskRow.case_id).where(TaskRow.case_id.in_(case_ids), TaskRow.status == TaskStatus.open)))
        return set(case_ids) - busy

    def future_timers(self, case_ids: set[int]) -> bool:
        """Whether a waiting timer of these cases is not yet strictly past due (timers fire after their due time)."""
        with UnitOfWork(self.factory, self.clock) as work:
            return work.session.scalar(
                select(func.count(TimerRow.id)).where(TimerRow.case_id.in_(case_ids),
                                                      TimerRow.status == TimerStatus.waiting,
                                                      TimerRow.due_at >= self.clock.now())) > 0

    def pass_day(self, case_ids: set[int], advance: bool = True) -> None:
        """Move the clock a day and fire the timers due (the scheduler's tick)."""
        if advance:
            self.clock.advance(timedelta(days=1))
        while True:
            with UnitOfWork(self.factory, self.clock) as work:
                if not work.cases.fire_due_timers(limit=200):
                    return

    def close(self) -> None:
        self.engine.dispose()


class XiangFlowColdPath(XiangFlowPath):
    """XiangFlow with the live-workflow cache off: every mutation deserializes the stored state, as when
    consecutive requests for one case land on different web processes."""

    name = "XF cold"

    def __init__(self, url: str):
        LIVE_WORKFLOWS.capacity = 0
        LIVE_WORKFLOWS.clear()
        super().__init__(url)


# ---------------------------------------------------------------------------------- naive
class NaivePath:
    name = "naive"

    def __init__(self, url: str):
        self.engine = make_engine(url)
        self.clock = FixedClock(START)
        with Session(self.engine) as session:
            version = session.scalar(select(ProcedureVersion).where(ProcedureVersion.process_id == PROCEDURE)
                                     .order_by(ProcedureVersion.version.desc()).limit(1))
            # a naive system parses its BPMN once at startup to create new cases
            self.spec, self.subprocess_specs = spec_from_json(version.spec_json)
            self.settings = json.loads(version.files["procedure.json"]).get("settings", {})
        self._waiting: dict[int, datetime | None] = {}  # case id → next timer due, while no user task is ready
        self._issuing: set[int] = set()  # cases whose ready user task is an issuance step (noticeKind)

    def start(self, subject_id: int) -> int:
        with Session(self.engine) as session:
            subject = session.get(Subject, subject_id)
            row = NaiveCase(blob="{}")
            session.add(row)
            session.flush()
            initial = {
                "case_id": row.id,
                "subject_name": subject.name,
                "subject_kind": subject.kind,
                "region_code": subject.region_code,
                "region_name": "",
                "settings": self.settings,
                **{f"subject_{k}": v for k, v in (subject.attrs or {}).items()},
            }
            with clock_mod.using(self.clock):
                wf = BpmnWorkflow(self.spec, self.subprocess_specs, script_engine=SCRIPT_ENGINE)
                for task in wf.get_tasks(state=TaskState.READY):
                    task.data.update(initial)
                wf.do_engine_steps()
            row.blob = FULL_SERIALIZER.serialize_json(wf)
            session.commit()
            return row.id

    def complete(self, case_id: int, step: int) -> str:
        """Load the blob, complete the ready user task, save the blob; return the task's name."""
        _username, data = STEPS[step]
        with Session(self.engine) as session:
            row = session.get(NaiveCase, case_id)
            wf = FULL_SERIALIZER.deserialize_json(row.blob)
            wf.script_engine = SCRIPT_ENGINE
            with clock_mod.using(self.clock):
                ready = wf.get_tasks(state=TaskState.READY, manual=True)
                if len(ready) != 1:
                    raise RuntimeError(f"naive case {case_id}: {len(ready)} ready user tasks at step {step + 1}")
                task = ready[0]
                # the same data XiangFlow puts into the task, so state sizes compare like for like
                task.data.update(data)
                task.data["decision"] = "approve"
                task.data["last_opinion"] = OPINION
                task.data["opinions"] = {**task.data.get("opinions", {}), task.task_spec.bpmn_id: OPINION}
                task.run()
                wf.do_engine_steps()
                self._note(case_id, wf)
            row.blob = FULL_SERIALIZER.serialize_json(wf)
            session.commit()
            return task.task_spec.bpmn_name or task.task_spec.bpmn_id

    def _note(self, case_id: int, wf) -> None:
        """Remember whether the case now waits for a timer or for an issuance step."""
        ready = wf.get_tasks(state=TaskState.READY, manual=True)
        if not ready:
            self._waiting[case_id] = _next_due(wf)
        else:
            self._waiting.pop(case_id, None)
        if any(_notice_kind(t) for t in ready):
            self._issuing.add(case_id)
        else:
            self._issuing.discard(case_id)

    def issue_notices(self, case_ids: list[int]) -> int:
        """Run the ready issuance steps of these cases with the bench serial (load, run, save; not timed)."""
        issued = 0
        for case_id in sorted(self._issuing & set(case_ids)):
            with Session(self.engine) as session:
                row = session.get(NaiveCase, case_id)
                wf = FULL_SERIALIZER.deserialize_json(row.blob)
                wf.script_engine = SCRIPT_ENGINE
                with clock_mod.using(self.clock):
                    for task in wf.get_tasks(state=TaskState.READY, manual=True):
                        if _notice_kind(task):
                            task.data["notice_serial"] = BENCH_SERIAL
                            task.run()
                            issued += 1
                    wf.do_engine_steps()
                    self._note(case_id, wf)
                row.blob = FULL_SERIALIZER.serialize_json(wf)
                session.commit()
        return issued

    def waiting(self, case_ids: list[int]) -> set[int]:
        return set(self._waiting) & set(case_ids)

    def future_timers(self, case_ids: set[int]) -> bool:
        now = self.clock.now()
        return any(self._waiting.get(c) is None or self._waiting[c] >= now for c in case_ids)

    def pass_day(self, case_ids: set[int], advance: bool = True) -> None:
        """Move the clock a day and let due timers fire in the waiting cases (load, fire, save)."""
        if advance:
            self.clock.advance(timedelta(days=1))
        for case_id in case_ids:
            due = self._waiting.get(case_id)
            if due is not None and due > self.clock.now():
                continue
            with Session(self.engine) as session:
                row = session.get(NaiveCase, case_id)
                wf = FULL_SERIALIZER.deserialize_json(row.blob)
                wf.script_engine = SCRIPT_ENGINE
                with clock_mod.using(self.clock):
                    wf.refresh_timers()
                    wf.do_engine_steps()
                    self._note(case_id, wf)
                row.blob = FULL_SERIALIZER.serialize_json(wf)
                session.commit()

    def close(self) -> None:
        self.engine.dispose()


def _notice_kind(task) -> str | None:
    return spec_properties(task.task_spec).get("noticeKind")


def _next_due(wf) -> datetime | None:
    """The earliest due time of the workflow's waiting timers (frozen when they started waiting)."""
    dues = [timer_due(task) for task in wf.get_tasks(state=TaskState.WAITING) if is_timer(task)]
    return min((due for due in dues if due is not None), default=None)


PATHS = {"xiangflow": XiangFlowPath, "xiangflow-cold": XiangFlowColdPath, "naive": NaivePath}


# ---------------------------------------------------------------------------------- running
def _retrying(fn, *args):
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
            title, n = _retrying(path.complete, case_id, step)
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


def run_path(kind: str, url: str, subject_ids: list[int], barrier=None) -> dict:
    """Start a case per subject (timed apart), then complete every case's user tasks."""
    path = PATHS[kind](url)
    try:
        retries = 0
        t = time.perf_counter()
        case_ids = []
        for sid in subject_ids:
            case_id, n = _retrying(path.start, sid)
            case_ids.append(case_id)
            retries += n
        start_seconds = time.perf_counter() - t
        result = drive(path, case_ids, barrier)
        result.update(case_ids=case_ids, start_seconds=start_seconds, retries=result["retries"] + retries)
        return result
    finally:
        path.close()


def _worker(kind, url, subject_ids, barrier, queue) -> None:
    try:
        queue.put(("ok", run_path(kind, url, subject_ids, barrier)))
    except BaseException:  # report any failure to the parent instead of hanging it
        queue.put(("error", traceback.format_exc()))
        try:
            barrier.abort()
        except Exception:
            pass


def run_processes(kind: str, url: str, subject_ids: list[int], processes: int) -> dict:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    queue = ctx.Queue()
    chunks = [subject_ids[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_worker, args=(kind, url, chunk, barrier, queue)) for chunk in chunks]
    for p in procs:
        p.start()
    results = []
    while len(results) < len(procs):
        try:
            status, payload = queue.get(timeout=5)
        except queue_mod.Empty:
            # a worker that died before it could report (killed, or an import failure) must not hang the bench
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                barrier.abort()
                for p in procs:
                    p.join(timeout=10)
                raise SystemExit(f"{kind} worker exited with code {dead[0].exitcode} without a result") from None
            continue
        if status != "ok":
            for p in procs:
                p.join(timeout=10)
            raise SystemExit(f"{kind} worker failed:\n{payload}")
        results.append(payload)
    for p in procs:
        p.join()
    latencies = [x for r in results for x in r["latencies"]]
    wall = sum(max(r["rounds"][i][1] for r in results) - min(r["rounds"][i][0] for r in results)
               for i in range(len(STEPS)))
    starts = sum(len(r["case_ids"]) for r in results)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "path": kind,
        "processes": processes,
        "cases": starts,
        "completions": len(latencies),
        "wall_s": wall,
        "completions_per_s": len(latencies) / wall,
        "p50_ms": q[49] * 1000,
        "p95_ms": q[94] * 1000,
        "max_ms": max(latencies) * 1000,
        # CPU time of the bench processes per completion: robust to other load on the machine
        "cpu_ms": sum(r["cpu_seconds"] for r in results) / len(latencies) * 1000,
        "starts_per_s": starts / max(r["start_seconds"] for r in results),
        "retries": sum(r["retries"] for r in results),
        "notice_days": max(r["notice_days"] for r in results),
        "case_ids": [c for r in results for c in r["case_ids"]],
        "titles": results[0]["titles"],
    }


# ---------------------------------------------------------------------------------- checks
def check_and_measure(url: str, kind: str, case_ids: list[int]) -> float:
    """Check every case reached the follow-up timer; return the average stored state in bytes."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            if kind.startswith("xiangflow"):
                rows = session.execute(select(Case.status, Case.state).where(Case.id.in_(case_ids))).all()
                bad = [s for s, _ in rows if s != CaseStatus.exited]
                sizes = [len(state.encode("utf-8")) for _, state in rows]
            else:
                blobs = session.scalars(select(NaiveCase.blob).where(NaiveCase.id.in_(case_ids))).all()
                bad = []
                for blob in blobs:
                    wf = FULL_SERIALIZER.deserialize_json(blob)
                    waiting = {t.task_spec.bpmn_id for t in wf.get_tasks(state=TaskState.WAITING)}
                    if "follow_up_timer" not in waiting:
                        bad.append(sorted(waiting))
                sizes = [len(b.encode("utf-8")) for b in blobs]
        if len(sizes) != len(case_ids) or bad:
            raise SystemExit(f"{kind}: {len(bad)} of {len(case_ids)} cases did not finish as expected: {bad[:3]}")
        return sum(sizes) / len(sizes)
    finally:
        engine.dispose()


def count_rows(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(select(func.count()).select_from(text(t))).scalar_one()
                    for t in ("case_instance", "task", "timer", "audit_event", "naive_case")}
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------- profiling
def profile(url: str, kind: str, cases: int, top: int) -> str:
    """cProfile the completion phase of one path in this process, timed in process CPU time.

    CPU time, not wall time, so that other load on the machine does not smear the figures;
    time spent waiting for the database server (PostgreSQL) is therefore not included.
    """
    subject_ids = add_households(url, cases, f"prof-{kind}-")
    path = PATHS[kind](url)
    prof = cProfile.Profile(time.process_time)
    try:
        case_ids = [path.start(s) for s in subject_ids]
        drive(path, case_ids, profiler=prof)
    finally:
        path.close()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    out.write("-- functions in engine/*.py by cumulative CPU time --\n")
    stats.sort_stats("cumulative").print_stats(re.escape(str(ROOT / "engine")) + r"/", top)
    out.write("-- all functions by cumulative CPU time --\n")
    stats.sort_stats("cumulative").print_stats(top)
    out.write("-- all functions by own CPU time --\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# ---------------------------------------------------------------------------------- SQL statements
_VERB_TABLE = re.compile(r"^\s*(?:(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\b"
                         r"|(INSERT INTO|UPDATE|DELETE FROM)\s+\"?(\w+)"
                         r"|(SELECT)\b.*?\bFROM\s+\"?(\w+))", re.IGNORECASE | re.DOTALL)


def statement_kind(statement: str) -> str:
    """'SELECT task', 'UPDATE case_instance', 'SELECT task +join', 'SAVEPOINT' … for one SQL statement."""
    m = _VERB_TABLE.match(statement)
    if m is None:
        return statement.split(None, 1)[0].upper() if statement.strip() else "?"
    if m.group(1):
        return m.group(1).upper()
    verb, table = (m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5))
    kind = f"{verb.upper().replace(' INTO', '').replace(' FROM', '')} {table}"
    return kind + " +join" if re.search(r"\bJOIN\b", statement, re.IGNORECASE) else kind


class StatementCounter:
    """Counts the statements an engine executes while enabled (the same enable/disable as cProfile),
    per kind and per timed round."""

    def __init__(self, engine):
        self.by_kind: dict[str, int] = {}
        self.by_round: list[int] = []
        self.active = False
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.active:
            kind = statement_kind(statement)
            self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            self.by_round[-1] += 1

    def enable(self) -> None:
        self.by_round.append(0)
        self.active = True

    def disable(self) -> None:
        self.active = False


def count_statements(url: str, cases: int) -> str:
    """Run the XiangFlow path once in this process and report its SQL statements per completion."""
    subject_ids = add_households(url, cases, "sql-")
    path = XiangFlowPath(url)
    counter = StatementCounter(path.engine)
    try:
        case_ids = [path.start(s) for s in subject_ids]
        result = drive(path, case_ids, profiler=counter)
    finally:
        path.close()
    completions = len(result["latencies"])
    total = sum(counter.by_kind.values())
    out = io.StringIO()
    out.write(f"SQL statements per completion: {total / completions:.2f} "
              f"({total} statements, {completions} completions, {cases} cases)\n")
    out.write("-- by kind (per completion) --\n")
    for kind, n in sorted(counter.by_kind.items(), key=lambda kv: (-kv[1], kv[0])):
        out.write(f"{n / completions:8.2f}  {kind}\n")
    out.write("-- by step (per completion) --\n")
    for title, n in zip(result["titles"], counter.by_round, strict=True):
        out.write(f"{n / len(case_ids):8.2f}  {title}\n")
    summary = {"statements_per_completion": round(total / completions, 2),
               "by_kind": {k: round(v / completions, 2) for k, v in sorted(counter.by_kind.items())},
               "by_step": {t: round(n / len(case_ids), 2) for t, n in zip(result["titles"], counter.by_round, strict=True)}}
    out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    return out.getvalue()


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200, help="cases per run, split over the processes")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts (default 1,2)")
    parser.add_argument("--profile", action="store_true", help="also cProfile each path in-process")
    parser.add_argument("--profile-cases", type=int, default=100)
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--sql", action="store_true",
                        help="also count the XiangFlow path's SQL statements per completion, by kind and step")
    parser.add_argument("--sql-cases", type=int, default=50)
    parser.add_argument("--cpu", action="store_true",
                        help="also run each path once in this process and print its CPU ms per completion")
    parser.add_argument("--cpu-cases", type=int, default=40)
    args = parser.parse_args(argv)
    process_counts = [int(p) for p in args.processes.split(",") if p.strip()]

    url, tmp = resolve_url()
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    shown = url if dialect == "sqlite" else url.split("@")[-1]
    print(f"XiangFlow engine benchmark — {dialect} ({shown})")
    print(f"procedure {PROCEDURE}: {len(STEPS)} user tasks per case (by {', '.join(u for u, _ in STEPS)}), "
          f"{args.cases} cases per run split over the processes, {os.cpu_count()} CPUs")
    load_before = os.getloadavg()
    print("load average before: " + " ".join(f"{x:.2f}" for x in load_before)
          + ("  (busy machine: figures are depressed and noisy)" if load_before[0] > 1 else ""))
    t = time.perf_counter()
    fresh_database(url)
    print(f"fresh database set up in {time.perf_counter() - t:.1f} s")

    if not process_counts:  # --processes "": only the in-process measurements (--sql, --profile)
        return _extras(url, args, tmp)
    results = []
    sizes: dict[str, float] = {}
    for procs in process_counts:
        for kind in ("xiangflow", "xiangflow-cold", "naive"):
            subject_ids = add_households(url, args.cases, f"{kind}-{procs}p-")
            res = run_processes(kind, url, subject_ids, procs)
            sizes.setdefault(kind.removesuffix("-cold"), check_and_measure(url, kind, res["case_ids"]))
            results.append(res)

    print(f"\nuser tasks completed per case: {' → '.join(results[0]['titles'])}")
    if results[0]["notice_days"]:
        print(f"public-notice periods between tasks: the clock moved {results[0]['notice_days']} days and due "
              "timers fired between timed rounds (not timed)")
    header = f"{'path':<10} {'procs':>5} {'cases':>6} {'compl.':>7} {'wall s':>7} {'compl/s':>8} " \
             f"{'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'CPU ms':>7} {'starts/s':>8} {'retries':>7}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{PATHS[r['path']].name:<10} {r['processes']:>5} {r['cases']:>6} {r['completions']:>7} "
              f"{r['wall_s']:>7.2f} {r['completions_per_s']:>8.1f} {r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} "
              f"{r['max_ms']:>7.1f} {r['cpu_ms']:>7.2f} {r['starts_per_s']:>8.1f} {r['retries']:>7}")
    print()
    ratios: dict[int, float] = {}
    cold_ratios: dict[int, float] = {}
    for procs in process_counts:
        xf = next(r for r in results if r["path"] == "xiangflow" and r["processes"] == procs)
        cold = next(r for r in results if r["path"] == "xiangflow-cold" and r["processes"] == procs)
        nv = next(r for r in results if r["path"] == "naive" and r["processes"] == procs)
        ratios[procs] = xf["completions_per_s"] / nv["completions_per_s"]
        cold_ratios[procs] = cold["completions_per_s"] / nv["completions_per_s"]
        for label, ratio, row in (("warm (live-workflow cache on)", ratios[procs], xf),
                                  ("cold (cache off)", cold_ratios[procs], cold)):
            verdict = "faster" if ratio >= 1 else "SLOWER"
            print(f"throughput XiangFlow/naive, {procs} process(es), {label}: {ratio:.2f}x "
                  f"(XiangFlow is {verdict} than the naive baseline); client CPU per completion "
                  f"{row['cpu_ms']:.2f} ms vs {nv['cpu_ms']:.2f} ms")
    print(f"state size at the end (waiting for 回访): XiangFlow case.state {sizes['xiangflow']:.0f} B (spec-free), "
          f"naive blob {sizes['naive']:.0f} B (with spec), ratio {sizes['xiangflow'] / sizes['naive']:.2f}")
    rows = count_rows(url)
    print("rows: " + ", ".join(f"{k} {v}" for k, v in rows.items()))
    load_after = os.getloadavg()
    print("load average after: " + " ".join(f"{x:.2f}" for x in load_after))

    _extras(url, args, None)

    summary = {
        "database": dialect,
        "cases": args.cases,
        "tasks_per_case": len(STEPS),
        "results": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                     if k not in ("case_ids", "titles")} for r in results],
        "throughput_ratio_xiangflow_over_naive": {str(k): round(v, 3) for k, v in ratios.items()},
        "throughput_ratio_cold_over_naive": {str(k): round(v, 3) for k, v in cold_ratios.items()},
        "state_bytes": {"xiangflow": round(sizes["xiangflow"]), "naive": round(sizes["naive"])},
        "loadavg_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
    }
    print(json.dumps(summary, ensure_ascii=False))
    _cleanup(tmp)
    return 0


def cpu_in_process(url: str, cases: int) -> str:
    """Each path once in this process, as ``--profile`` runs it without the profiler: CPU and wall ms per
    completion (a quick before/after comparison; fewer moving parts than the process runs)."""
    out = io.StringIO()
    capacity = LIVE_WORKFLOWS.capacity
    for kind in ("xiangflow", "xiangflow-cold", "naive"):
        LIVE_WORKFLOWS.capacity = capacity
        LIVE_WORKFLOWS.clear()
        subject_ids = add_households(url, cases, f"cpu-{kind}-")
        path = PATHS[kind](url)
        try:
            case_ids = [path.start(s) for s in subject_ids]
            result = drive(path, case_ids)
        finally:
            path.close()
        n = len(result["latencies"])
        wall = sum(t1 - t0 for t0, t1 in result["rounds"])
        out.write(f"{PATHS[kind].name:<10} CPU {result['cpu_seconds'] / n * 1000:6.2f} ms  "
                  f"wall {wall / n * 1000:6.2f} ms per completion ({n} completions)\n")
    LIVE_WORKFLOWS.capacity = capacity
    return out.getvalue()


def _extras(url: str, args, tmp: str | None) -> int:
    """The in-process measurements: CPU per completion, SQL statement counts and cProfile."""
    if args.cpu:
        print(f"\n==== CPU per completion, in this process, {args.cpu_cases} cases per path ====")
        print(cpu_in_process(url, args.cpu_cases))
    if args.sql:
        print(f"\n==== SQL statements: {PATHS['xiangflow'].name}, {args.sql_cases} cases × {len(STEPS)} completions, "
              "1 process ====")
        print(count_statements(url, args.sql_cases))

    if args.profile:
        for kind in ("xiangflow", "naive"):
            print(f"\n==== cProfile: {PATHS[kind].name}, {args.profile_cases} cases × {len(STEPS)} completions, "
                  "1 process ====")
            print(profile(url, kind, args.profile_cases, args.profile_top))

    _cleanup(tmp)
    return 0


def _cleanup(tmp: str | None) -> None:
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

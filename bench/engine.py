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

The code: ``bench/engine_drive.py`` (the steps and the timed rounds), ``bench/engine_xiangflow.py`` and
``bench/engine_naive.py`` (the paths), ``bench/engine_report.py`` (``--cpu``, ``--sql``, ``--profile``); this
file runs the processes, checks the cases and prints the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_BENCH_DIR = Path(__file__).resolve().parent
# bench/engine.py must not shadow the engine package: repository root first, bench dir out.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p and Path(p).resolve() != _BENCH_DIR]

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import queue as queue_mod  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from SpiffWorkflow.util.task import TaskState  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.engine_drive import PROCEDURE, START, STEPS, add_households, cleanup, drive, retrying  # noqa: E402
from bench.engine_naive import NaiveBase, NaiveCase  # noqa: E402
from bench.engine_report import extras  # noqa: E402
from bench.engine_xiangflow import PATHS  # noqa: E402
from bench.support import ensure_database  # noqa: E402
from engine.bootstrap import setup_database  # noqa: E402
from engine.core.clock import FixedClock  # noqa: E402
from engine.core.db import make_engine  # noqa: E402
from engine.core.settings import database_url  # noqa: E402
from engine.models import Case, CaseStatus  # noqa: E402
from engine.procedures.serialization import FULL_SERIALIZER  # noqa: E402


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


def run_path(kind: str, url: str, subject_ids: list[int], barrier=None) -> dict:
    """Start a case per subject (timed apart), then complete every case's user tasks."""
    path = PATHS[kind](url)
    try:
        retries = 0
        t = time.perf_counter()
        case_ids = []
        for sid in subject_ids:
            case_id, n = retrying(path.start, sid)
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
        return extras(url, args, tmp)
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

    extras(url, args, None)

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
    cleanup(tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""bench/engine.py's in-process measurements: ``--cpu``, ``--sql`` and ``--profile`` (usage there)."""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import re
import time
from pathlib import Path

from sqlalchemy import event

from bench.engine_drive import STEPS, add_households, cleanup, drive
from bench.engine_xiangflow import PATHS, XiangFlowPath
from engine.runtime.live_cache import LIVE_WORKFLOWS

ROOT = Path(__file__).resolve().parent.parent


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


def extras(url: str, args, tmp: str | None) -> int:
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

    cleanup(tmp)
    return 0


"""Seed a PostgreSQL database with N 四步法 exit cases that look like the engine's own, fast (COPY).

The engine runs five template cases first (in one village, on a fixed clock): open at 民主评议, at 镇复核,
at 部门审定, at 县级公告, and one rejected at 民主评议. Every seeded case is a copy of one of them — its
serialized workflow (with the case's own id, household and village written into its data), its task rows
(scope recomputed for the case's village) and its audit rows — for its own household in one of the
villages of the five seed counties; a tenth of the cases are open. Each village, township and county gets
its own users (village cadre, township officer, county department, county leader), who started or
completed the seeded cases' steps there. Plain indexes are dropped during the COPY and rebuilt after it,
foreign-key triggers are off for the load (the rows are consistent by construction), then ANALYZE.
"""

from __future__ import annotations

import enum
import io
import itertools
import json
import multiprocessing
import random
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from engine import demo_data as D
from engine.access.assignment import scope_for
from engine.access.directory import hash_password
from engine.access.regions import level_of as regions_level_of
from engine.core.clock import FixedClock
from engine.core.db import make_session_factory
from engine.models import (
    AuditEvent,
    Case,
    Region,
    RegionLevel,
    Role,
    TaskRow,
    TimerRow,
)
from engine.procedures.expressions import CHINA_TZ
from tests.conftest import Database

BENCH_PASSWORD = "bench12345"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "德明秀英建国桂芳永福玉兰志强丽华春梅海军红霞国庆文杰小平金凤天佑家豪淑珍云飞立新美玲光辉思远子涵雨欣宏伟成林学军兴旺长生"
CATEGORIES = ("脱贫不稳定户", "边缘易致贫户", "突发严重困难户")
OPEN_MIX = (("review", 4), ("recheck", 2), ("dept", 2), ("announce", 2))  # of every 10 open cases
# which seeded user stands for each demo user of the template cases
USER_KIND = {"demo_village": "v", "demo_township": "t", "demo_dept": "d", "demo_county": "l"}
KIND_ROLE = {"v": ("village_cadre", RegionLevel.village), "t": ("township_officer", RegionLevel.township),
             "d": ("county_department", RegionLevel.county), "l": ("county_leader", RegionLevel.county)}
SEEDED_TABLES = ("user_account", "user_role", "subject", "case_instance", "task", "audit_event", "timer")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


@dataclass
class Template:
    """One engine-made case to copy: its rows as column dicts, the state with placeholders."""

    case: dict
    state: str
    tasks: list[dict]
    audits: list[dict]
    timers: list[dict]


def username(kind: str, region_code: str) -> str:
    """The seeded user of a kind (v, t, d, l) for the region: ``v510921107001``."""
    return f"{kind}{region_code}"


def _rows(conn, table, where) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(select(table).where(where).order_by(table.c.id))]


def make_templates(db: Database) -> dict[str, Template]:
    """Run the five template cases through the engine; their rows, read back."""
    made: dict[str, int] = {}

    # every step dated on the day the template cases start: not before the case (notBefore: caseStart) and not
    # after the clock's today, also once pass_notice has moved it on
    day = db.clock.now().astimezone(CHINA_TZ).date()

    def on_day(data: dict) -> dict:
        return D.on_day(data, day)

    def new() -> int:
        case_id = db.start_case("demo_village")
        db.complete(case_id, "demo_village", data=on_day(D.HOUSEHOLD_CHECK))
        return case_id

    rejected = new()
    db.complete(rejected, "demo_village", action="reject", opinion="收入未达标,不予通过", data=on_day(D.VILLAGE_REVIEW))
    made["closed"] = rejected
    made["review"] = new()
    recheck, dept, announce = new(), new(), new()
    for case_id in (recheck, dept, announce):
        db.complete(case_id, "demo_village", data=on_day(D.VILLAGE_REVIEW))
    db.pass_notice()
    made["recheck"] = recheck
    for case_id in (dept, announce):
        db.complete(case_id, "demo_township", data=on_day(D.TOWNSHIP_RECHECK))
    made["dept"] = dept
    db.complete(announce, "demo_dept", data=on_day(D.DEPT_DECISION))
    made["announce"] = announce

    templates = {}
    users = {}
    with db.engine.connect() as conn:
        for name, uid in conn.execute(text("SELECT username, id FROM user_account")):
            users[uid] = name
        for kind, case_id in made.items():
            case = _rows(conn, Case.__table__, Case.__table__.c.id == case_id)[0]
            subject = conn.execute(text("SELECT name, region_code FROM subject WHERE id = :id"),
                                   {"id": case["subject_id"]}).one()
            region_name = conn.execute(text("SELECT name FROM region WHERE code = :c"), {"c": subject.region_code}).scalar()
            state = case.pop("state")
            for token, mark in ((f'"case_id": {case_id},', '"case_id": \x00C\x00,'),
                                (f'"subject_name": "{subject.name}"', '"subject_name": "\x00N\x00"'),
                                (f'"region_code": "{subject.region_code}"', '"region_code": "\x00R\x00"'),
                                (f'"region_name": "{region_name}"', '"region_name": "\x00G\x00"')):
                if token not in state:
                    raise SystemExit(f"template {kind}: {token!r} not in its state; the seeder needs updating")
                state = state.replace(token, mark)
            tasks = _rows(conn, TaskRow.__table__, TaskRow.__table__.c.case_id == case_id)
            audits = _rows(conn, AuditEvent.__table__, AuditEvent.__table__.c.case_id == case_id)
            timers = _rows(conn, TimerRow.__table__, TimerRow.__table__.c.case_id == case_id)
            for row in tasks:
                for key in ("completed_by_id", "assignee_id", "owner_id"):
                    row[key] = users.get(row[key]) if row[key] else None
            for row in audits:
                row["user_id"] = users.get(row["user_id"]) if row["user_id"] else None
            case["started_by_id"] = users[case["started_by_id"]]
            templates[kind] = Template(case, state, tasks, audits, timers)
    return templates


# ---------------------------------------------------------------------------- COPY text format
def _esc(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    s = str(value)
    if "\\" in s or "\t" in s or "\n" in s or "\r" in s:
        s = s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return s


class CopyBuffer:
    """Rows for one table, flushed to COPY in chunks."""

    def __init__(self, cursor, table: str, columns: list[str], chunk_bytes: int = 8 << 20):
        self.cursor, self.table, self.columns, self.chunk = cursor, table, columns, chunk_bytes
        self.buf = io.StringIO()
        self.rows = 0

    def add(self, values: list) -> None:
        self.add_line("\t".join(_esc(v) for v in values))

    def add_line(self, line: str) -> None:
        self.buf.write(line)
        self.buf.write("\n")
        self.rows += 1
        if self.buf.tell() > self.chunk:
            self.flush()

    def flush(self) -> None:
        data = self.buf.getvalue()
        if not data:
            return
        with self.cursor.copy(f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN") as copy:
            copy.write(data.encode("utf-8"))
        self.buf = io.StringIO()


def _id_number(county: str, i: int) -> str:
    """A valid resident ID number, unique per case number (sequence 100–999 by birth date)."""
    born = datetime(1940, 1, 1) + timedelta(days=(i // 900) * 7919 % 21900)  # 7919 is prime to 21900
    body = f"{county}{born:%Y%m%d}{100 + i % 900:03d}"
    return body + ID_CHECK[sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True)) % 11]


TASK_DYNAMIC = ("id", "case_id", "region_code", "scope_code", "created_at", "due_at", "completed_at", "reminded_at",
                "completed_by_id", "assignee_id", "owner_id", "parent_task_id", "case_title", "subject_id")
AUDIT_DYNAMIC = ("id", "case_id", "created_at", "task_id", "user_id")
CASE_DYNAMIC = ("id", "subject_id", "region_code", "title", "started_by_id", "created_at", "updated_at",
                "finished_at", "state")


class _Plan:
    """What every loading process needs: the templates as escaped columns, regions, users, the time."""

    def __init__(self, templates: dict[str, Template], region_names: dict[str, str], villages: list[str],
                 user_ids: dict[str, int], now: datetime):
        self.region_names, self.villages, self.user_ids, self.now = region_names, villages, user_ids, now
        first = templates["closed"]
        self.case_cols = list(first.case) + ["state"]
        self.task_cols = list(first.tasks[0])
        self.audit_cols = list(first.audits[0])
        self.templates = {kind: (t.case, t.state, t.tasks, t.audits,
                                 [_esc(t.case.get(c)) for c in self.case_cols],
                                 [[_esc(r[c]) for c in self.task_cols] for r in t.tasks],
                                 [[_esc(r[c]) for c in self.audit_cols] for r in t.audits])
                          for kind, t in templates.items()}
        self.open_kinds = [k for k, n in OPEN_MIX for _ in range(n)]
        self.moved: dict[int, tuple[str, str]] = {}  # case number → (village, template kind): _focus

    def kind(self, i: int) -> str:
        if i in self.moved:
            return self.moved[i][1]
        return self.open_kinds[(i // 10) % len(self.open_kinds)] if i % 10 == 0 else "closed"

    def village(self, i: int) -> str:
        if i in self.moved:
            return self.moved[i][0]
        return self.villages[i % len(self.villages)]


def _focus(plan: _Plan, cases: int, focus: dict[tuple[str, str], int]) -> dict[int, tuple[str, str]]:
    """Closed cases turned into open ones in the focus regions, so that each (template kind, region) of focus
    holds at least its number of open cases of that kind: case number → (village, kind).

    The cases taken are the last closed ones outside every focus region, then the last closed ones inside; they move to the focus region's
    villages in turn. A region that already holds enough (every one, at a million cases) takes none."""
    inside: dict[str, list[str]] = {}  # focus region → its villages
    for _kind, code in focus:
        level = regions_level_of(code)
        inside[code] = [v for v in plan.villages if scope_for(v, level) == code]
    by_village: dict[str, list[tuple[str, str]]] = {}
    for key in focus:
        for v in inside[key[1]]:
            by_village.setdefault(v, []).append(key)
    held = dict.fromkeys(focus, 0)
    for i in range(0, cases, 10):  # the open cases, as the plain spread places them
        kind = plan.kind(i)
        for key in by_village.get(plan.village(i), ()):
            if key[0] == kind:
                held[key] += 1
    wanted = [(key, n - held[key]) for key, n in focus.items() if n > held[key]]
    # closed cases count towards no one's open work, so any may move; those outside the focus regions go first
    # (with many users every county is a focus region, and then only closed cases inside them are left)
    donors = itertools.chain(
        (i for i in range(cases - 1, -1, -1) if i % 10 and plan.village(i) not in by_village),
        (i for i in range(cases - 1, -1, -1) if i % 10 and plan.village(i) in by_village))
    moved: dict[int, tuple[str, str]] = {}
    for (kind, code), missing in wanted:
        villages = inside[code]
        for j in range(missing):
            i = next(donors, None)
            if i is None:
                raise SystemExit(f"{cases:,} cases are too few to give {code} {missing} open {kind} cases")
            moved[i] = (villages[j % len(villages)], kind)
    return moved


def _split(cases: int, processes: int, plan: _Plan, next_id: dict[str, int]):
    """Contiguous ranges of case numbers, one per process, with the first ids each range uses."""
    size = -(-cases // max(processes, 1))
    ranges = [(a, min(a + size, cases)) for a in range(0, cases, size)]
    starts, ids = [], dict(next_id)
    counts = {k: (len(t[2]), len(t[3])) for k, t in plan.templates.items()}
    for a, b in ranges:
        starts.append(dict(ids))
        ids["subject"] += b - a
        ids["case_instance"] += b - a
        for i in range(a, b):
            n_tasks, n_audits = counts[plan.kind(i)]
            ids["task"] += n_tasks
            ids["audit_event"] += n_audits
    return ranges, starts


def _load_range(conninfo: str, plan: _Plan, first: int, last: int, ids: dict[str, int]) -> None:
    """COPY cases first..last-1 (with their households, task rows and audit rows) in one transaction."""
    import psycopg

    rng = random.Random(first)
    with psycopg.connect(conninfo) as conn:
        cur = conn.cursor()
        cur.execute("SET session_replication_role = replica")
        subjects = CopyBuffer(cur, "subject", ["id", "kind", "region_code", "name", "id_number", "attrs"])
        case_rows = CopyBuffer(cur, "case_instance", plan.case_cols)
        task_rows = CopyBuffer(cur, "task", plan.task_cols)
        audit_rows = CopyBuffer(cur, "audit_event", plan.audit_cols)
        ci = {c: plan.case_cols.index(c) for c in CASE_DYNAMIC}
        ti = {c: plan.task_cols.index(c) for c in TASK_DYNAMIC}
        ai = {c: plan.audit_cols.index(c) for c in AUDIT_DYNAMIC}
        role_level = {"village_cadre": "v", "township_officer": "t"}
        uid = plan.user_ids
        sid, cid, tid, aid = ids["subject"], ids["case_instance"], ids["task"], ids["audit_event"]
        for i in range(first, last):
            village = plan.village(i)
            township, county = scope_for(village, RegionLevel.township), scope_for(village, RegionLevel.county)
            scope = {"v": village, "t": township, "c": county}
            kind = plan.kind(i)
            case, state, tasks, audits, case_esc, tasks_esc, audits_esc = plan.templates[kind]
            name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
            subjects.add_line(f"{sid}\thousehold\t{village}\t{name}\t{_id_number(county[:6], i)}\t"
                              f'{{"members": {rng.randint(1, 7)}, "category": "{rng.choice(CATEGORIES)}"}}')
            # open cases started in the last 60 days, closed ones over the three years before
            started = plan.now - (timedelta(minutes=rng.randrange(60, 60 * 24 * 60)) if kind != "closed"
                                  else timedelta(minutes=rng.randrange(60 * 24 * 60, 60 * 24 * 365 * 3)))
            shift = started - case["created_at"]
            users = {"demo_village": uid[username("v", village)], "demo_township": uid[username("t", township)],
                     "demo_dept": uid[username("d", county)], "demo_county": uid[username("l", county)]}

            def at(value, shift=shift) -> str:
                return "\\N" if value is None else (value + shift).isoformat()

            def who(template_user, users=users) -> str:
                return str(users[template_user]) if template_user in users else "\\N"

            row = list(case_esc)
            row[ci["id"]], row[ci["subject_id"]], row[ci["region_code"]] = str(cid), str(sid), village
            title = _esc(f"{name} · 防返贫监测对象退出")  # COPY text, for the case row and its tasks' copies
            row[ci["title"]] = title
            row[ci["started_by_id"]] = who(case["started_by_id"])
            row[ci["created_at"]] = started.isoformat()
            row[ci["updated_at"]], row[ci["finished_at"]] = at(case["updated_at"]), at(case["finished_at"])
            row[ci["state"]] = _esc(state.replace("\x00C\x00", str(cid)).replace("\x00N\x00", name)
                                    .replace("\x00R\x00", village).replace("\x00G\x00", plan.region_names[village]))
            case_rows.add_line("\t".join(row))
            task_ids = {}
            for t, esc in zip(tasks, tasks_esc, strict=True):
                task_ids[t["id"]] = tid
                row = list(esc)
                row[ti["id"]], row[ti["case_id"]], row[ti["region_code"]] = str(tid), str(cid), village
                row[ti["scope_code"]] = scope[role_level.get(t["role_code"], "c")]
                row[ti["created_at"]], row[ti["due_at"]] = at(t["created_at"]), at(t["due_at"])
                row[ti["completed_at"]], row[ti["reminded_at"]] = at(t["completed_at"]), "\\N"
                row[ti["completed_by_id"]], row[ti["assignee_id"]] = who(t["completed_by_id"]), who(t["assignee_id"])
                row[ti["owner_id"]] = who(t["owner_id"])
                parent = task_ids.get(t["parent_task_id"])
                row[ti["parent_task_id"]] = str(parent) if parent else "\\N"
                row[ti["case_title"]], row[ti["subject_id"]] = title, str(sid)  # the case's, as the engine copies
                task_rows.add_line("\t".join(row))
                tid += 1
            for a, esc in zip(audits, audits_esc, strict=True):
                row = list(esc)
                row[ai["id"]], row[ai["case_id"]], row[ai["created_at"]] = str(aid), str(cid), at(a["created_at"])
                task = task_ids.get(a["task_id"])
                row[ai["task_id"]] = str(task) if task else "\\N"
                row[ai["user_id"]] = who(a["user_id"])
                audit_rows.add_line("\t".join(row))
                aid += 1
            sid += 1
            cid += 1
        for buf in (subjects, case_rows, task_rows, audit_rows):
            buf.flush()
        conn.commit()


def seed(engine: Engine, cases: int, now: datetime, storage_dir: Path, processes: int = 2,
         focus: dict[tuple[str, str], int] | None = None) -> dict[str, float]:
    """Fill a database set up with the demo data (no cases) with cases; seconds per phase.

    focus: (template kind — review, recheck, dept, announce —, region code) → at least that many open
    cases of the kind in the region (``_focus``); without it the cases spread evenly over the villages."""
    if engine.dialect.name != "postgresql":
        raise SystemExit("bench/http.py seeds PostgreSQL only (COPY); set DATABASE_URL")
    timings: dict[str, float] = {}
    began = time.perf_counter()
    db = Database(engine.url.render_as_string(hide_password=False), engine, make_session_factory(engine),
                  FixedClock(now - timedelta(days=30)), storage_dir)
    templates = make_templates(db)
    timings["templates_s"] = time.perf_counter() - began

    with engine.connect() as conn:
        regions = {r.code: r for r in conn.execute(select(Region.__table__))}
        roles = {r.code for r in conn.execute(select(Role.__table__.c.code))}
        next_id = {t: conn.execute(text(f"SELECT coalesce(max(id), 0) + 1 FROM {t}")).scalar_one()
                   for t in SEEDED_TABLES if t != "timer"}
    assert {"village_cadre", "township_officer", "county_department", "county_leader"} <= roles
    villages = sorted(c for c, r in regions.items() if r.level == RegionLevel.village)
    password = hash_password(BENCH_PASSWORD)

    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SET session_replication_role = replica")  # no FK triggers during the load
        cur.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' "
            "AND i.tablename = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)",
            (list(SEEDED_TABLES),))
        indexes = cur.fetchall()
        for name, _definition in indexes:
            cur.execute(f'DROP INDEX "{name}"')

        t0 = time.perf_counter()
        user_ids: dict[str, int] = {}
        users = CopyBuffer(cur, "user_account", ["id", "username", "display_name", "password_hash", "is_active",
                                                 "is_demo", "email"])
        grants = CopyBuffer(cur, "user_role", ["id", "user_id", "role_code", "region_code"])
        for code, region in sorted(regions.items()):
            for kind, (role, level) in KIND_ROLE.items():
                if region.level != level:
                    continue
                uid = next_id["user_account"]
                next_id["user_account"] += 1
                name = username(kind, code)
                user_ids[name] = uid
                users.add([uid, name, f"{region.name}{ {'v': '村干部', 't': '乡村振兴办', 'd': '行业部门', 'l': '领导小组'}[kind]}",
                           password, True, False, None])
                grants.add([next_id["user_role"], uid, role, code])
                next_id["user_role"] += 1
        users.flush()
        grants.flush()

        raw.commit()
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        plan = _Plan(templates, {c: r.name for c, r in regions.items()}, villages, user_ids, now)
        plan.moved = _focus(plan, cases, focus) if focus else {}
        timings["focus_moved"] = len(plan.moved)
        ranges, starts = _split(cases, processes, plan, next_id)
        # the workers take the default SIGTERM back: the pool ends them with it once their work is done, and the
        # caller's handler (bench/http.py turns SIGTERM into Ctrl-C) would print a traceback from each
        with multiprocessing.get_context("fork").Pool(len(ranges), _default_sigterm) as pool:
            pool.starmap(_load_range, [(conninfo, plan, a, b, start) for (a, b), start in zip(ranges, starts,
                                                                                           strict=True)])
        timings["copy_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute("SET maintenance_work_mem = '256MB'")
        for _name, definition in indexes:
            cur.execute(definition)
        for table in SEEDED_TABLES:
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
        timings["indexes_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw.driver_connection.autocommit = True
        cur.execute("VACUUM ANALYZE")
        timings["analyze_s"] = time.perf_counter() - t0
        cur.execute(f"COMMENT ON TABLE case_instance IS 'bench/http.py seed {cases}'")
    finally:
        raw.close()
    timings["total_s"] = time.perf_counter() - began
    return timings


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def seeded_marker(engine: Engine) -> str | None:
    """What bench/http.py wrote on the case table after its last complete seeding, if anything."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT obj_description('case_instance'::regclass, 'pg_class')")).scalar()

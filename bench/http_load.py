"""XiangFlow over HTTP at province scale: the driver behind bench/http.py (usage and what it measures there)."""

from __future__ import annotations

import argparse
import html
import http.client
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import make_url, text

from bench.seed import BENCH_PASSWORD, GIVEN, KIND_ROLE, SURNAMES, seed, seeded_marker, username
from bench.support import ensure_database, fresh_database
from engine import demo_data as D
from engine.core.clock import FixedClock
from engine.core.db import make_engine
from engine.core.settings import database_url
from engine.procedures.expressions import CHINA_TZ
from engine.queries.inbox import PER_PAGE

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = ("login", "inbox", "inbox_next", "search_name", "task", "complete", "case")
# the step each kind of user decides, with the data that passes it
DECIDES = {"v": ("民主评议", D.VILLAGE_REVIEW), "t": ("镇复核", D.TOWNSHIP_RECHECK),
           "d": ("部门审定", D.DEPT_DECISION), "l": ("县级公告", D.COUNTY_ANNOUNCEMENT)}
TEMPLATE_KIND = {"v": "review", "t": "recheck", "d": "dept", "l": "announce"}  # bench/seed.py's open cases
USER_MIX = ("v", "v", "t", "v", "d", "t", "v", "l", "v", "t")  # village cadres are most of the users
ROW = re.compile(r'href="/tasks/(\d+)">([^<(（]+).*?href="/cases/(\d+)"', re.S)
CASE_LINK = re.compile(r'href="/cases/(\d+)"')
NEXT_LINK = re.compile(r'href="([^"]+)" rel="next"')
CHILDREN: list[subprocess.Popen] = []


# ---------------------------------------------------------------------------- the production profile
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_profile(url: str, web_workers: int, storage: Path) -> str:
    """gunicorn + one timer worker on url, as `make serve` runs them; the base URL once /healthz is 200."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIANGFLOW_") and k != "DATABASE_URL"}
    env.update(XIANGFLOW_DATABASE_URL=url, XIANGFLOW_SCHEDULER="0", XIANGFLOW_SECRET_KEY=secrets.token_hex(32),
               XIANGFLOW_STORAGE_DIR=str(storage), PYTHONPATH=str(ROOT))
    bindir = Path(sys.executable).parent
    log = open(storage / "profile.log", "w")  # noqa: SIM115 - the children write to it until stopped
    CHILDREN.append(subprocess.Popen(
        [str(bindir / "gunicorn"), "--workers", str(web_workers), "--bind", f"127.0.0.1:{port}", "--timeout", "120",
         "--backlog", "512", "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=log))
    CHILDREN.append(subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "timers", "run", "--interval",
                                      "10"], cwd=ROOT, env=env, stdout=log, stderr=log))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in CHILDREN):
            raise RuntimeError(f"the production profile exited: {(storage / 'profile.log').read_text()[-1500:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return f"127.0.0.1:{port}"
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the production profile did not answer /healthz within 120 s")


def stop_profile() -> None:
    for proc in CHILDREN:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in CHILDREN:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    CHILDREN.clear()


# ---------------------------------------------------------------------------- simulated users
class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.samples: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        self.errors: dict[str, dict[str, int]] = {op: {} for op in OPERATIONS}
        self.counting = False

    def add(self, op: str, ms: float, status: int | str, ok: bool) -> None:
        if not self.counting:
            return
        with self.lock:
            if ok:
                self.samples[op].append(ms)
            else:
                self.errors[op][str(status)] = self.errors[op].get(str(status), 0) + 1


class User:
    """One account's HTTP session: its cookie, its connection, what it decides."""

    def __init__(self, host: str, name: str, kind: str, recorder: Recorder, rng: random.Random):
        self.host, self.name, self.kind, self.recorder, self.rng = host, name, kind, recorder, rng
        self.cookie = ""
        self.conn = http.client.HTTPConnection(host, timeout=120)

    def request(self, op: str, method: str, path: str, body: dict | None = None,
                expect: tuple[int, ...] = (200,)) -> tuple[int, str]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        payload = None
        if body is not None:
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        began = time.perf_counter()
        try:
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
            data = response.read().decode("utf-8", "replace")
            status = response.status
            for key, value in response.getheaders():
                if key.lower() == "set-cookie" and value.startswith("session="):
                    self.cookie = value.split(";", 1)[0]
            if response.getheader("Connection", "").lower() == "close":
                self.conn.close()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.recorder.add(op, 0, type(exc).__name__, False)
            return 0, ""
        self.recorder.add(op, (time.perf_counter() - began) * 1000, status, status in expect)
        return status, data

    def login(self) -> bool:
        status, _ = self.request("login", "POST", "/api/v1/session",
                                 {"username": self.name, "password": BENCH_PASSWORD})
        return status == 200

    def cycle(self, think: float) -> None:
        """One round: inbox, a name search, then decide a step (task, complete, case) or open a case."""
        def pause():
            if think > 0:
                time.sleep(self.rng.expovariate(1 / think))

        status, page = self.request("inbox", "GET", "/")
        if status != 200:
            return
        pause()
        following = NEXT_LINK.search(page)
        if following:  # 下一页: a keyset page, which should cost what the first one does
            self.request("inbox_next", "GET", html.unescape(following.group(1)))
            pause()
        # a household's name as users type it: 2 or 3 characters (pg_trgm indexes 3 and more)
        fragment = self.rng.choice(SURNAMES) + "".join(self.rng.choice(GIVEN) for _ in range(self.rng.choice((1, 2))))
        self.request("search_name", "GET", "/?name=" + quote(fragment, safe=""))
        pause()
        title, data = DECIDES[self.kind]
        mine = [(int(t), int(c)) for t, step, c in ROW.findall(page) if step.strip() == title]
        if mine:
            task_id, case_id = self.rng.choice(mine[:10])
            self.request("task", "GET", f"/tasks/{task_id}")
            pause()
            self.request("complete", "POST", f"/api/v1/tasks/{task_id}/complete",
                                     {"action": "approve", "opinion": "情况属实,同意。",
                                      "data": D.on_day(data, datetime.now(CHINA_TZ).date())},  # dated today
                                     expect=(200,))
            pause()
        else:
            cases = CASE_LINK.findall(page)
            if not cases:
                return
            case_id = int(self.rng.choice(cases))
        self.request("case", "GET", f"/cases/{case_id}")
        pause()


def choose_users(count: int, regions: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(username, kind) for count users, every level, spread over the seed counties' regions."""
    picked, used = [], {k: 0 for k in DECIDES}
    for i in range(count):
        kind = USER_MIX[i % len(USER_MIX)]
        pool = regions[kind]
        code = pool[(used[kind] * 37 + used[kind] // len(pool)) % len(pool)]  # a stride through the list
        used[kind] += 1
        picked.append((username(kind, code), kind))
    return picked


def run_load(host: str, users: list[tuple[str, str]], seconds: float, warmup: float, think: float,
             concurrency: int) -> Recorder:
    """Drive the profile: concurrency threads share the users (one thread per user when they are equal)."""
    recorder = Recorder()
    recorder.counting = True  # logins are counted (each user logs in once)
    sessions = [User(host, name, kind, recorder, random.Random(i)) for i, (name, kind) in enumerate(users)]
    for user in sessions:
        if not user.login():
            raise RuntimeError(f"{user.name} could not log in")
    recorder.counting = False
    stop_at = time.monotonic() + warmup + seconds

    def worker(mine: list[User]) -> None:
        i = 0
        while time.monotonic() < stop_at:
            try:
                mine[i % len(mine)].cycle(think)
            except Exception as exc:  # a bench must not crash: count it and go on
                recorder.add("inbox", 0, type(exc).__name__, False)
            i += 1

    threads = [threading.Thread(target=worker, args=(sessions[t::concurrency],), daemon=True)
               for t in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    recorder.counting = True
    began = time.monotonic()
    for thread in threads:
        thread.join(timeout=max(stop_at - time.monotonic(), 0) + 150)
    recorder.counting = False
    recorder.seconds = time.monotonic() - began
    return recorder


def summary(recorder: Recorder) -> dict:
    out = {}
    for op in OPERATIONS:
        values = sorted(recorder.samples[op])
        if not values:
            out[op] = {"count": 0, "errors": recorder.errors[op]}
            continue

        def pct(p: float, values: list[float] = values) -> float:
            return round(values[min(len(values) - 1, int(len(values) * p))], 1)

        out[op] = {"p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
                   "per_s": round(len(values) / recorder.seconds, 2) if op != "login" else None,
                   "count": len(values), "errors": recorder.errors[op]}
    return out


def print_table(label: str, figures: dict) -> None:
    print(f"  {label}")
    print(f"    {'operation':12} {'count':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'per s':>7}  errors")
    for op, f in figures.items():
        if not f.get("count"):
            print(f"    {op:12} {0:>6} {'-':>8} {'-':>8} {'-':>8} {'-':>7}  {f['errors'] or ''}")
            continue
        per_s = f"{f['per_s']:.1f}" if f["per_s"] is not None else "-"
        print(f"    {op:12} {f['count']:>6} {f['p50_ms']:>8.1f} {f['p95_ms']:>8.1f} {f['p99_ms']:>8.1f} {per_s:>7}  "
              f"{f['errors'] or ''}")


# ---------------------------------------------------------------------------- databases
def database_for(base_url: str, cases: int, reseed: bool, now: datetime,
                 focus: dict[tuple[str, str], int] | None = None) -> tuple[str, float | None]:
    """The URL of the scale's database, seeded (reused if it already holds this seeding); seeding seconds.
    focus: open work the seed gives the simulated users' regions (bench/seed.py ``seed``); never reused."""
    base = make_url(base_url)
    name = f"{base.database}_http_{cases}"
    url = base.set(database=name).render_as_string(hide_password=False)
    ensure_database(url)  # through the maintenance database: the configured one need not exist
    engine = make_engine(url)
    marker = f"bench/http.py seed {cases}"
    try:
        reusable = not reseed and not focus and seeded_marker(engine) == marker
    except Exception:  # no schema yet
        reusable = False
    if reusable:
        from engine.bootstrap import migrate

        migrate(engine)  # the seeding is kept; newer revisions apply to it as to a production database
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # statistics for what a revision added (an expression index's); VACUUM for the rows a revision
            # rewrote (0017's backfill), whose pages index-only scans would otherwise visit in the heap
            conn.execute(text("VACUUM ANALYZE"))
        engine.dispose()
        print(f"  reusing {name} (already seeded with {cases:,} cases; migrated to head)")
        return url, None
    engine.dispose()
    began = time.perf_counter()
    print(f"  seeding {name} with {cases:,} cases …", flush=True)
    url, engine = fresh_database(url, FixedClock(now), "bench_http")
    timings = seed(engine, cases, now, Path(tempfile.mkdtemp(prefix="xf_http_")), focus=focus)
    engine.dispose()
    seconds = time.perf_counter() - began
    print(f"  seeded in {seconds:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in timings.items())})", flush=True)
    return url, seconds


def open_work(url: str, users: list[tuple[str, str]], cap: int) -> dict[tuple[str, str], int]:
    """(template kind, region code) → how many open steps each user's pool holds there, up to cap: the
    work the small scale's seed gives the same users, so that both scales run the same operations."""
    engine = make_engine(url)
    work = {}
    with engine.connect() as conn:
        for name, kind in users:
            code = name[len(kind):]
            step, role = DECIDES[kind][0], KIND_ROLE[kind][0]
            work[(TEMPLATE_KIND[kind], code)] = conn.execute(text(
                "SELECT count(*) FROM (SELECT 1 FROM task WHERE status = 'open' AND assignee_id IS NULL "
                "AND role_code = :role AND scope_code = :code AND title = :step LIMIT :cap) AS mine"),
                {"role": role, "code": code, "step": step, "cap": cap}).scalar_one()
    engine.dispose()
    return work


def prewarm(url: str) -> tuple[float, float, str]:
    """Read every table and index of the database once, as a server that has been serving for a while holds
    them; (MB read, seconds, where). Into PostgreSQL's shared buffers (pg_prewarm mode ``buffer``) when the
    database fits in them, else into the operating system's page cache (mode ``read``). A freshly seeded 1 M
    database is 5 GB on disk: without this the first minutes of a run measure the disk (a random case read
    cost 0.4 ms from disk here), and only the big scale pays it."""
    engine = make_engine(url)
    began = time.perf_counter()
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_prewarm"))
            fits = conn.execute(text(
                "SELECT pg_database_size(current_database()) < 0.9 * pg_size_bytes(current_setting('shared_buffers'))"
            )).scalar_one()
            mode = "buffer" if fits else "read"
            blocks = conn.execute(text(
                "SELECT coalesce(sum(pg_prewarm(c.oid, :mode)), 0) * current_setting('block_size')::bigint "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'i', 't') AND n.nspname IN ('public', 'pg_toast') "
                "AND c.relpersistence = 'p' AND pg_relation_size(c.oid) > 0"), {"mode": mode}).scalar_one()
    finally:
        engine.dispose()
    return int(blocks) / 2**20, time.perf_counter() - began, "shared buffers" if fits else "the page cache"


SERVER_SETTINGS = ("shared_buffers", "effective_cache_size", "work_mem", "jit", "max_connections")


def server_settings(url: str) -> dict[str, str]:
    """The PostgreSQL settings the figures depend on, and the database's size, as the server reports them."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            found = {name: conn.execute(text("SELECT current_setting(:n)"), {"n": name}).scalar_one()
                     for name in SERVER_SETTINGS}
            found["database_size"] = conn.execute(
                text("SELECT pg_size_pretty(pg_database_size(current_database()))")).scalar_one()
            found["server_version"] = conn.execute(text("SHOW server_version")).scalar_one()
    finally:
        engine.dispose()
    return found


def regions_by_kind(url: str) -> dict[str, list[str]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT code, level FROM region ORDER BY code")).all()
    engine.dispose()
    by_level = {}
    for code, level in rows:
        by_level.setdefault(level, []).append(code)
    return {"v": by_level["village"], "t": by_level["township"], "d": by_level["county"], "l": by_level["county"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000, help="the scale run first, for the cost ratio")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--think", type=float, default=10.0, help="mean pause between a user's requests (s)")
    parser.add_argument("--one-user-seconds", type=float, default=None,
                        help="the concurrency-1 run at each scale (default: --seconds; 0: none)")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--reseed", action="store_true", help="seed the big database even if it is seeded")
    parser.add_argument("--cold", action="store_true",
                        help="skip reading each database into the page cache first (prewarm): measure the disk too")
    args = parser.parse_args()
    base = database_url() if (os.environ.get("DATABASE_URL") or os.environ.get("XIANGFLOW_DATABASE_URL")) else ""
    if not base.startswith("postgresql"):
        raise SystemExit("bench/http.py needs PostgreSQL: set DATABASE_URL=postgresql://…/xf_<name>")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    now = datetime.now(timezone.utc)
    print(f"XiangFlow HTTP bench: {args.users} users, {args.seconds:.0f} s per scale (+{args.warmup:.0f} s warm-up), "
          f"think {args.think} s, gunicorn {args.web_workers} workers, {os.cpu_count()} CPUs", flush=True)
    result: dict = {"users": args.users, "scales": {}}
    try:
        # the big database first: the users' open work there is what the small seed gives them (open_work)
        big_url, big_seed_s = database_for(base, args.cases, args.reseed, now)
        users = choose_users(args.users, regions_by_kind(big_url))
        urls = {args.cases: (big_url, big_seed_s)}
        if args.small != args.cases:
            focus = open_work(big_url, users, PER_PAGE + 1)
            print(f"  the users' open steps at {args.cases:,} cases (up to a page and one, {PER_PAGE + 1}): "
                  f"{sum(focus.values()):,}; the {args.small:,}-case seed gives each user as many", flush=True)
            urls = {args.small: database_for(base, args.small, True, now, focus), **urls}
        loads: dict[int, dict] = {}
        for scale, (url, seed_s) in urls.items():
            if not args.cold:
                mb, seconds, where = prewarm(url)
                print(f"  {scale:,} cases: read {mb:,.0f} MB into {where} in {seconds:.0f} s (pg_prewarm)", flush=True)
            settings = server_settings(url)
            print(f"  {scale:,} cases: PostgreSQL {settings['server_version']}, database {settings['database_size']}, "
                  + ", ".join(f"{k} {settings[k]}" for k in SERVER_SETTINGS), flush=True)
            storage = Path(tempfile.mkdtemp(prefix="xf_http_profile_"))
            host = start_profile(url, args.web_workers, storage)
            try:
                figures = summary(run_load(host, users, args.seconds, args.warmup, args.think, len(users)))
                print_table(f"{scale:,} cases, {len(users)} concurrent users", figures)
                entry = dict(figures)
                entry["server"] = settings
                if seed_s is not None:
                    entry["seed_s"] = round(seed_s)
                loads[scale] = figures
                if args.one_user_seconds != 0:
                    one = summary(run_load(host, users, args.one_user_seconds or args.seconds, args.warmup,
                                           0, 1))  # alone, a pause changes nothing: measure without
                    print_table(f"{scale:,} cases, the same users one at a time (concurrency 1)", one)
                    entry["one_user"] = one
                result["scales"][str(scale)] = entry
            finally:
                stop_profile()
        if len(loads) > 1:  # the same users doing the same things: the counts per operation should be close
            print(f"  operations run ({len(users)} users), " + " / ".join(f"{s:,}" for s in loads) + " cases: "
                  + ", ".join(f"{op} " + "/".join(str(f[op].get("count", 0)) for f in loads.values())
                              for op in OPERATIONS if op != "login"))
    except KeyboardInterrupt:
        print("interrupted; stopping the production profile", flush=True)
    finally:
        stop_profile()
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()

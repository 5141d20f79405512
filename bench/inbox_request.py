"""One inbox request, warm, split into SQL, template and the rest of Python: where a request's time goes.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/xf_scale_http_1000000 \\
        .venv/bin/python bench/inbox_request.py --user d510921000000 --requests 30

Runs the Flask app in this process (its test client, no server, no network) against the configured
database (DATABASE_URL; without one a fresh SQLite file with the demo data), logs in as ``--user``
(a bench/http.py seeded user with its password, or a demo user; default: the 蓬溪县 department user of
the seed if it exists, else demo_county), requests each ``--path`` a few times to warm up, then
``--requests`` times, and prints per path the median and p95 of the whole request, of the time inside
SQL statements (cursor execute to its return, fetching included), of the template render, and how many
statements ran, of them inside the template (there should be none: views hand templates loaded rows),
and the time in garbage collection (median, p95, and how many full collections the timed requests hit).
The app's heap is settled first (web/heap.py), as wsgi.py does in every serving process; ``--unsettled``
leaves it unfrozen, for comparison.
``--profile`` adds the functions with the most own time (cProfile) over the timed requests.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import before_render_template, template_rendered  # noqa: E402
from sqlalchemy import event, inspect, text  # noqa: E402

from bench.seed import BENCH_PASSWORD  # noqa: E402
from engine.bootstrap import DEMO_PASSWORD, setup_database  # noqa: E402
from engine.core.clock import SystemClock  # noqa: E402
from engine.core.db import make_engine  # noqa: E402
from engine.core.settings import database_url  # noqa: E402
from web import create_app  # noqa: E402
from web.heap import settle  # noqa: E402

SEEDED_USER = "d510921000000"  # bench/seed.py: 蓬溪县's county department (5,342 open 部门审定 at 1 M cases)


class Meter:
    """Seconds inside SQL statements, template renders and garbage collection, and statement counts, per request."""

    def __init__(self):
        self.sql = self.render = self.gc = 0.0
        self.gc_full = 0
        self._gc_began = 0.0
        self.statements = self.statements_in_render = 0
        self._render_began: float | None = None
        self._began: list[float] = []

    def before_sql(self, *_args):
        self._began.append(time.perf_counter())

    def after_sql(self, *_args):
        self.sql += time.perf_counter() - self._began.pop()
        self.statements += 1
        if self._render_began is not None:
            self.statements_in_render += 1

    def collection(self, phase: str, info: dict) -> None:  # a gc.callbacks entry
        if phase == "start":
            self._gc_began = time.perf_counter()
            return
        self.gc += time.perf_counter() - self._gc_began
        self.gc_full += info["generation"] == 2

    def before_render(self, *_args, **_kw):
        self._render_began = time.perf_counter()

    def after_render(self, *_args, **_kw):
        if self._render_began is not None:
            self.render += time.perf_counter() - self._render_began
        self._render_began = None


def _database_url() -> str:
    if os.environ.get("DATABASE_URL") or os.environ.get("XIANGFLOW_DATABASE_URL"):
        return database_url()
    return f"sqlite:///{tempfile.mkdtemp(prefix='xf_inbox_request_')}/bench.sqlite3"


def _prepare(url: str, wanted: str | None) -> tuple[str, str]:
    """(username, password) to log in with; a database without the schema gets it and the demo data."""
    engine = make_engine(url)
    try:
        if not inspect(engine).has_table("user_account"):
            print("  empty database: setting up the schema and the demo data (no cases)")
            setup_database(engine, SystemClock(), demo=True, demo_cases=False)
        with engine.connect() as conn:
            names = set(conn.execute(text("SELECT username FROM user_account WHERE username IN (:a, :b, :c)"),
                                     {"a": wanted or "", "b": SEEDED_USER, "c": "demo_county"}).scalars())
    finally:
        engine.dispose()
    name = wanted or (SEEDED_USER if SEEDED_USER in names else "demo_county")
    if name not in names:
        raise SystemExit(f"no user {name!r} in the database")
    return name, (DEMO_PASSWORD if name.startswith("demo_") else BENCH_PASSWORD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", help=f"default: {SEEDED_USER} if seeded, else demo_county")
    parser.add_argument("--path", action="append", help="default: / and /?name=王德 (repeatable)")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the top functions by own time")
    parser.add_argument("--unsettled", action="store_true",
                        help="skip web.heap.settle (the serving processes' frozen heap, wsgi.py), for comparison")
    args = parser.parse_args()
    url = _database_url()
    username, password = _prepare(url, args.user)
    app = create_app({"XIANGFLOW_DATABASE_URL": url, "XIANGFLOW_SCHEDULER": False, "SECRET_KEY": "bench",
                      "XIANGFLOW_STORAGE_DIR": tempfile.mkdtemp(prefix="xf_inbox_request_files_")})
    frozen = 0 if args.unsettled else settle(app)  # as wsgi.py does in every serving process
    meter = Meter()
    gc.callbacks.append(meter.collection)
    engine = app.extensions["xiangflow"].engine
    event.listen(engine, "before_cursor_execute", meter.before_sql)
    event.listen(engine, "after_cursor_execute", meter.after_sql)
    before_render_template.connect(meter.before_render, app)
    template_rendered.connect(meter.after_render, app)
    client = app.test_client()
    login = client.post("/api/v1/session", json={"username": username, "password": password})
    if login.status_code != 200:
        raise SystemExit(f"{username} could not log in: {login.status_code} {login.get_data(as_text=True)[:200]}")
    print(f"inbox requests as {username} on {engine.url.render_as_string(hide_password=True)} "
          f"({args.requests} timed after {args.warmup} warm-up each, {time.strftime('%H:%M', time.gmtime())} UTC; heap "
          f"{'not frozen' if args.unsettled else f'{frozen:,} objects frozen'})")
    print(f"  {'path':24} {'total ms':>9} {'p95':>7} {'SQL ms':>7} {'render':>7} {'other':>7} {'GC ms':>6} "
          f"{'GC p95':>6} {'full':>4} {'stmts':>6} {'in tpl':>6} {'KB':>6}")
    profile = cProfile.Profile() if args.profile else None
    for path in args.path or ["/", "/?name=王德"]:
        for _ in range(args.warmup):
            response = client.get(path)
            if response.status_code != 200:
                raise SystemExit(f"GET {path}: {response.status_code}")
        totals, sqls, renders, statements, in_render, gcs = [], [], [], [], [], []
        full = 0
        size = 0
        for _ in range(args.requests):
            meter.__init__()
            began = time.perf_counter()
            if profile:
                profile.enable()
            response = client.get(path)
            if profile:
                profile.disable()
            totals.append(time.perf_counter() - began)
            size = len(response.data)
            sqls.append(meter.sql)
            renders.append(meter.render)
            statements.append(meter.statements)
            in_render.append(meter.statements_in_render)
            gcs.append(meter.gc)
            full += meter.gc_full

        def ms(values: list[float]) -> float:
            return statistics.median(values) * 1000

        def p95_of(values: list[float]) -> float:
            return sorted(values)[min(len(values) - 1, int(len(values) * 0.95))] * 1000

        p95 = p95_of(totals)
        # the render's own Python: its time less any statement it ran (none, when views load everything)
        other = ms(totals) - ms(sqls) - ms(renders)
        print(f"  {path:24} {ms(totals):>9.1f} {p95:>7.1f} {ms(sqls):>7.1f} {ms(renders):>7.1f} {other:>7.1f} "
              f"{ms(gcs):>6.1f} {p95_of(gcs):>6.1f} {full:>4} {statistics.median(statements):>6.0f} {max(in_render):>6} {size / 1024:>6.1f}")
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)
        print(out.getvalue())
    app.extensions["xiangflow"].engine.dispose()


if __name__ == "__main__":
    main()

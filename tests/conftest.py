"""Shared fixtures: a real database built by the migrations, a fixed clock, actors, factories.

SQLite by default; PostgreSQL when DATABASE_URL is set (CI runs both). Each test gets a
database in the state "migrated + roles + regions + procedures + demo users/households"
with no cases: on SQLite a copy of a template file; on PostgreSQL every table but the fixed
reference data is truncated, procedures and versions deployed by a test are deleted, and the demo
users re-created.

With pytest-xdist (``make test`` runs ``-n auto``) every worker process is a session of its own: on
SQLite it builds its own template file under its own temporary folder; on PostgreSQL it works in a
database of its own, ``<DATABASE_URL's database>_<worker id>`` (e.g. ``xf_tests_gw0``) on the same
server, dropped and created again at the start of each run. Without xdist the suite uses
DATABASE_URL's database itself, as before.

Passwords are hashed with argon2's cheapest parameters (``argon2.profiles.CHEAPEST``) in tests only:
a login then costs microseconds instead of the production parameters' three passes over 64 MiB.

A state that takes seconds to build (cases walked through several steps, notices issued and signed) is built
once per session by ``snapshot_db(build, *args)`` and copied for each test marked
``@pytest.mark.db_snapshot("<fixture returning that Snapshot>")``: the test's ``db`` then starts as that state
(its clock at the moment it was taken, its attachments copied), a copy of its own that it may change. On
SQLite the snapshot is a database file; on PostgreSQL a schema of copies of the tables, restored by
truncating them and inserting the copies back (sequences set to where they were).
"""

from __future__ import annotations

import fcntl
import graphlib
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from sqlalchemy import create_engine, make_url, select, text

from engine.access.regions import ancestor_at
from engine.bootstrap import load_demo, setup_database
from engine.core.clock import FixedClock
from engine.core.db import make_engine, make_session_factory
from engine.core.settings import database_url
from engine.demo_data import NOTICE_FIELDS, signature_png
from engine.models import Case, CaseStatus, Procedure, ProcedureVersion, Region, Subject, TaskRow, TaskStatus, User
from engine.uow import UnitOfWork
from tests.process_caches import ProcessCompiledCache, RenderOnce, SeededSerials

START = datetime(2026, 9, 1, 1, 0, tzinfo=timezone.utc)
# PostgreSQL: what a test may not change (migrations, regions, roles) or what the template's rows of
# are kept and trimmed back (shipped procedures and versions; the demo offices' keys, slow to make)
KEPT_TABLES = {"alembic_version", "region", "role", "procedure", "procedure_version", "office_key",
               "notice_authority"}
TRIMMED_TABLES = ("procedure_version", "procedure", "office_key", "notice_authority")  # children first


def _postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL")
    return database_url() if url else None


def _worker_database(url: str, worker: str | None) -> str:
    """The PostgreSQL database this pytest process works in: url's own without xdist, else a database
    of the worker's own on the same server (``<name>_<worker>``), dropped and created afresh."""
    if worker is None:
        return url
    server = make_url(url)
    name = f"{server.database}_{worker}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")  # connected to url's database, never `postgres`
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


@dataclass
class Database:
    url: str
    engine: object
    factory: object
    clock: FixedClock
    storage_dir: Path

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.factory, self.clock, self.storage_dir)

    def actor(self, username: str):
        with self.uow() as work:
            user = work.session.scalar(select(User).where(User.username == username))
            return work.directory.actor(user)

    def household(self, name: str | None = None, username: str = "demo_village") -> int:
        """The id of a demo household (by name) in the village of username's grant."""
        with self.uow() as work:
            stmt = select(Subject).where(Subject.kind == "household").order_by(Subject.id)
            if name:
                stmt = stmt.where(Subject.name == name)
            actor = self.actor(username)
            return next(s.id for s in work.session.scalars(stmt) if actor.covers(s.region_code))

    def start_case(self, username: str = "demo_village", procedure: str = "monitoring_exit",
                   subject_id: int | None = None) -> int:
        """Start a case; without subject_id, for the first household of username's village that has no
        running case of the procedure (the duplicate guard refuses a second one)."""
        with self.uow() as work:
            case = work.cases.start_case(procedure, subject_id or self.free_household(username, procedure),
                                         self.actor(username))
            return case.id

    def free_household(self, username: str = "demo_village", procedure: str = "monitoring_exit") -> int:
        """The first household in username's village without a running case of procedure (else the first)."""
        actor = self.actor(username)
        with self.uow() as work:
            busy = set(work.session.scalars(
                select(Case.subject_id).join(ProcedureVersion, Case.procedure_version_id == ProcedureVersion.id)
                .join(Procedure, Procedure.id == ProcedureVersion.procedure_id)
                .where(Procedure.code == procedure, Case.status == CaseStatus.running)))
            ids = [s.id for s in work.session.scalars(select(Subject).where(Subject.kind == "household")
                                                      .order_by(Subject.id)) if actor.covers(s.region_code)]
        return next((i for i in ids if i not in busy), ids[0])

    def open_tasks(self, case_id: int) -> list[TaskRow]:
        with self.uow() as work:
            return list(work.session.scalars(
                select(TaskRow).where(TaskRow.case_id == case_id, TaskRow.status == TaskStatus.open)
                .order_by(TaskRow.id)))

    def complete(self, case_id: int, username: str, action: str = "approve", opinion: str = "同意",
                 data: dict | None = None, sign: bool = True, **kwargs) -> None:
        """Complete the case's one open task; approving a step that takes a signature signs it first."""
        (row,) = self.open_tasks(case_id)
        if sign and action == "approve":
            self.sign_if_asked(row.id, username)
        with self.uow() as work:
            work.cases.complete_task(row.id, self.actor(username), action, opinion, data or {}, **kwargs)

    def sign_if_asked(self, task_id: int, username: str) -> int | None:
        """Capture the household's signature (a demo PNG) if the task's step takes one; the attachment id."""
        with self.uow() as work:
            row = work.session.get(TaskRow, task_id)
            if work.signatures.rule_for(row) is None:
                return None
            return work.signatures.add_signature(task_id, self.actor(username), signature_png(task_id)).id

    def issue_notices(self, case_id: int | None = None) -> list[str]:
        """Issue the notice of every open 出具公示/公告 step (of one case, or of all cases), one per village
        or county, each by a user of the kind's first issuer role there (the village cadre, the county
        leader), with a demo-CA key made for an office that has none; the serials. Issuing completes those steps."""
        from engine.notices.pki import KeyStore

        serials = []
        with self.uow() as work:
            stmt = select(TaskRow).where(TaskRow.status == TaskStatus.open, TaskRow.actions == "issue")
            rows = work.session.scalars(stmt.where(TaskRow.case_id == case_id) if case_id else stmt).all()
            notices = work.notices
            actors = [work.directory.actor(u) for u in work.session.scalars(select(User).order_by(User.id))]
            by_kind: dict[tuple[str, str], list] = {}
            for row in rows:
                key = (row.case.version.procedure.code, work.cases.issuance_kind(row))
                by_kind.setdefault(key, []).append(row.case)
            for (procedure, kind_code), cases in by_kind.items():
                kind = notices.kind(procedure, kind_code)
                for group in notices.groups(kind, cases):
                    if not notices.offices_for(kind, group.region_code):
                        office = ancestor_at(group.region_code, kind.office_level)
                        KeyStore(work.session, self.clock).keygen(office, work.session.get(Region, office).name)
                    issuer = next(a for role in kind.issuer_roles for a in actors if any(
                        g.role_code == role and group.region_code.startswith(g.prefix) for g in a.grants))
                    serials.append(notices.issue(issuer, procedure, kind_code, [c.id for c in group.cases],
                                                 NOTICE_FIELDS[kind_code]).serial)
        return serials

    def pass_notice(self, days: int = 7, case_id: int | None = None) -> int:
        """Let a public-notice period (村级公示, 县级公告) run out: issue the notices of the open 出具 steps
        (which starts their periods), move the clock and fire due timers."""
        self.issue_notices(case_id)
        self.clock.advance(timedelta(days=days, hours=1))
        with self.uow() as work:
            return work.cases.fire_due_timers()

    def case(self, case_id: int) -> Case:
        with self.uow() as work:
            return work.session.get(Case, case_id)


def pytest_configure(config):
    config.addinivalue_line("markers", "db_snapshot(fixture): the test's db starts as a copy of the Snapshot that "
                                       "the named fixture returns (built once per session by snapshot_db)")


def pytest_collection_modifyitems(config, items):
    """Under xdist, browser tests first: they are the longest (seconds to a minute each), and a long test
    started last leaves the other workers idle until it ends. Each worker takes its share from the front
    and steals the short tests from the tail (``--dist worksteal``), so the run ends on short tests. The
    sort is stable, and every worker collects the same order (xdist requires it). A serial run keeps the
    collection order (testpaths: unit, integration, browser)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is not None:
        items.sort(key=lambda item: "browser" not in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing():
    """Hash (and so verify) passwords at argon2's lowest cost in tests; production keeps PasswordHasher()."""
    from engine.access import directory

    patch = pytest.MonkeyPatch()
    cheap = PasswordHasher.from_parameters(CHEAPEST)
    patch.setattr(directory, "_HASHER", cheap)
    patch.setattr(directory, "_DUMMY_HASH", cheap.hash("xiangflow-no-such-user"))
    yield
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def _one_compiled_cache_per_process():
    """Every engine ``make_engine`` creates in this process shares one compiled-statement cache
    (tests/process_caches.py ProcessCompiledCache): a new engine per test otherwise compiles every statement again."""
    from engine.core import db as core_db

    shared = ProcessCompiledCache()
    create = core_db.create_engine

    def create_sharing(*args, **kwargs):
        engine = create(*args, **kwargs)
        engine._compiled_cache = shared
        return engine

    patch = pytest.MonkeyPatch()
    patch.setattr(core_db, "create_engine", create_sharing)
    yield shared
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def _serials():
    """Notice serials drawn from a PRNG seeded before each test and snapshot build (``SeededSerials``), and each
    distinct notice laid out once per process (``RenderOnce``): tests issue the same notice of the same case
    state over and over, and the layout is most of an issue's cost (tests/process_caches.py)."""
    from engine.notices import issue as issue_module
    from engine.notices.render import RENDERER

    serials = SeededSerials()
    patch = pytest.MonkeyPatch()
    patch.setattr(issue_module, "secrets", serials)
    patch.setattr(RENDERER, "render", RenderOnce(RENDERER.render))
    yield serials
    patch.undo()


@pytest.fixture(scope="session")
def shared_app():
    """The process's one Flask app (tests/app_support.py): ``shared_app.serve(config)`` points it at a test's
    database as ``create_app(config)`` would configure a new app. Used by the web tests' ``app`` and the
    browser tests' live server."""
    from tests.app_support import SharedApp

    shared = SharedApp()
    yield shared
    shared.close()


@pytest.fixture(scope="session", autouse=True)
def _attachments_outside_the_repo(tmp_path_factory):
    """Apps created by tests store attachments in a temporary folder, never in instance/."""
    from engine.core import settings

    original = settings.STORAGE_DIR
    settings.STORAGE_DIR = tmp_path_factory.mktemp("attachments")
    yield
    settings.STORAGE_DIR = original


def _build_sqlite_template(path: Path, clock: FixedClock) -> None:
    engine = make_engine(f"sqlite:///{path}")
    setup_database(engine, clock, demo=True, demo_cases=False)
    with engine.begin() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    engine.dispose()


def _sqlite_template(tmp_path_factory, clock: FixedClock) -> Path:
    """The migrated + seeded SQLite file every test copies. Under xdist the first worker to get here builds
    it in the run's folder (shared by the workers, ``getbasetemp().parent``) while the others wait on a lock,
    then all copy the same file: the migrations, demo data and signing keys are made once per run, not once
    per worker. A serial run builds its own."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        path = tmp_path_factory.mktemp("template") / "template.sqlite3"
        _build_sqlite_template(path, clock)
        return path
    shared = tmp_path_factory.getbasetemp().parent
    path = shared / "template.sqlite3"
    with (shared / "template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not path.exists():
            building = shared / f"template-{os.getpid()}.sqlite3"
            _build_sqlite_template(building, clock)
            building.replace(path)  # appears complete or not at all
    return path


@dataclass
class PostgresState:
    """The worker's PostgreSQL database: its engine, the tables a test may change (truncated between tests),
    the template's last ids of the trimmed tables, the shipped procedures' owners, and the tables a snapshot
    copies (the mutable and trimmed ones), parents before children."""
    engine: Any
    mutable: list[str]
    kept: dict[str, int]
    owners: list
    snapshot_tables: list[str]


def _postgres_table_order(conn, tables: set[str]) -> list[str]:
    """tables ordered so that a table comes after every table its foreign keys point to."""
    edges = conn.execute(text(
        "SELECT child.relname, parent.relname FROM pg_constraint c "
        "JOIN pg_class child ON child.oid = c.conrelid JOIN pg_class parent ON parent.oid = c.confrelid "
        "JOIN pg_namespace n ON n.oid = child.relnamespace WHERE c.contype = 'f' AND n.nspname = 'public'")).all()
    graph: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in edges:
        if child in tables and parent in tables and child != parent:
            graph[child].add(parent)
    return list(graphlib.TopologicalSorter(graph).static_order())


@pytest.fixture(scope="session")
def _template(tmp_path_factory, _cheap_password_hashing):
    clock = FixedClock(START)
    pg = _postgres_url()
    if pg:
        pg = _worker_database(pg, os.environ.get("PYTEST_XDIST_WORKER"))  # gw0, gw1, … under xdist
        engine = make_engine(pg)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
            for schema in conn.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'xf_snapshot_%'"))\
                    .scalars().all():  # left by an interrupted run (without xdist the database is kept)
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        setup_database(engine, clock, demo=True, demo_cases=False)
        with engine.connect() as conn:
            kept = {t: conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {t}")).scalar_one() for t in TRIMMED_TABLES}
            owners = conn.execute(text("SELECT id, owner_region_code FROM procedure")).all()
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
            mutable = sorted(set(tables) - KEPT_TABLES)
            order = _postgres_table_order(conn, {*mutable, *TRIMMED_TABLES})
        yield ("pg", pg, PostgresState(engine, mutable, kept, owners, order))
        engine.dispose()
        return
    yield ("sqlite", _sqlite_template(tmp_path_factory, clock), None)


def _reset_postgres(state: PostgresState, clock: FixedClock) -> None:
    """Bring the worker's database back to the template's state: nothing a test did leaks into the next."""
    with state.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(state.mutable)} RESTART IDENTITY CASCADE"))
        for table in TRIMMED_TABLES:
            conn.execute(text(f"DELETE FROM {table} WHERE id > :last"), {"last": state.kept[table]})
        for procedure_id, owner in state.owners:
            conn.execute(text("UPDATE procedure SET owner_region_code = :owner WHERE id = :id"),
                         {"owner": owner, "id": procedure_id})
    with UnitOfWork(make_session_factory(state.engine), clock) as work:
        load_demo(work, with_cases=False)


@dataclass
class Snapshot:
    """A database state taken once by ``snapshot_db``: what ``build`` returned (case ids, serials …) and
    where the state is kept — a SQLite file, or on PostgreSQL a schema of table copies and the sequences."""
    value: Any
    now: datetime
    storage_dir: Path
    sqlite_file: Path | None = None
    schema: str | None = None
    sequences: dict[str, int | None] = field(default_factory=dict)


def _take_postgres(state: PostgresState, schema: str) -> dict[str, int | None]:
    """Copy the snapshot tables into schema; the sequences' last values."""
    with state.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        for table in state.snapshot_tables:
            conn.execute(text(f'CREATE TABLE "{schema}"."{table}" AS TABLE public."{table}"'))
        return dict(conn.execute(text(
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'")).all())


def _restore_postgres(state: PostgresState, snapshot: Snapshot) -> None:
    with state.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(state.snapshot_tables)} RESTART IDENTITY CASCADE"))
        for table in state.snapshot_tables:
            conn.execute(text(f'INSERT INTO public."{table}" SELECT * FROM "{snapshot.schema}"."{table}"'))
        for sequence, last in snapshot.sequences.items():
            conn.execute(text("SELECT setval(:s, :v, :called)"),
                         {"s": f'public."{sequence}"', "v": last or 1, "called": last is not None})


@pytest.fixture(scope="session")
def snapshot_db(_template, tmp_path_factory, _serials):
    """``snapshot_db(build, *args)``: the Snapshot of ``build(db, *args)`` run once per session (per xdist
    worker) on a database in the template's state; tests marked ``db_snapshot`` start from a copy of it."""
    kind, where, state = _template
    taken: dict[tuple, Snapshot] = {}

    def take(build, *args) -> Snapshot:
        key = (build, *args)
        if key in taken:
            return taken[key]
        folder = tmp_path_factory.mktemp("snapshot")
        clock = FixedClock(START)
        _serials.reseed()
        if kind == "pg":
            _reset_postgres(state, clock)
            db = Database(where, state.engine, make_session_factory(state.engine), clock, folder / "attachments")
            value = build(db, *args)
            schema = f"xf_snapshot_{len(taken)}"
            taken[key] = Snapshot(value, clock.now(), db.storage_dir, schema=schema,
                                  sequences=_take_postgres(state, schema))
            return taken[key]
        path = folder / "snapshot.sqlite3"
        shutil.copyfile(where, path)
        engine = make_engine(f"sqlite:///{path}")
        try:
            db = Database(f"sqlite:///{path}", engine, make_session_factory(engine), clock, folder / "attachments")
            value = build(db, *args)
            with engine.begin() as conn:
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        finally:
            engine.dispose()
        taken[key] = Snapshot(value, clock.now(), db.storage_dir, sqlite_file=path)
        return taken[key]

    yield take
    if kind == "pg":
        with state.engine.begin() as conn:
            for snapshot in taken.values():
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{snapshot.schema}" CASCADE'))


@pytest.fixture
def db(request, _template, tmp_path, _serials) -> Database:
    """The test's database: the template's state (no cases), or a copy of the Snapshot of its ``db_snapshot``
    marker's fixture."""
    kind, where, state = _template
    marker = request.node.get_closest_marker("db_snapshot")
    snapshot: Snapshot | None = request.getfixturevalue(marker.args[0]) if marker else None
    _serials.reseed()  # after the snapshot's build: the test's serials do not depend on which test built it
    clock = FixedClock(snapshot.now if snapshot else START)
    storage_dir = tmp_path / "attachments"
    if snapshot and snapshot.storage_dir.exists():
        shutil.copytree(snapshot.storage_dir, storage_dir)
    if kind == "pg":
        if snapshot:
            _restore_postgres(state, snapshot)
        else:  # every test starts from the template's state: nothing leaks
            _reset_postgres(state, clock)
        yield Database(where, state.engine, make_session_factory(state.engine), clock, storage_dir)
        return
    path: Path = tmp_path / "test.sqlite3"
    shutil.copyfile(snapshot.sqlite_file if snapshot else where, path)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    yield Database(url, engine, make_session_factory(engine), clock, storage_dir)
    engine.dispose()

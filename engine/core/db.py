"""Database wiring: declarative base with a naming convention, engine and session factory."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import MetaData, create_engine, event, make_url
from sqlalchemy import exc as exc_mod
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(url: str) -> Engine:
    """Create an engine for url; SQLite gets foreign keys, WAL, a busy timeout and real savepoints.

    SQLite keeps pysqlite's transaction handling: reads before a transaction's first write run on
    their own and ``BEGIN`` is sent just before the first INSERT/UPDATE/DELETE, so a writer takes the
    database's one write lock with a fresh snapshot and waits for another writer (up to the busy
    timeout) instead of failing on a stale read snapshot. SQLAlchemy's other recipe (pysqlite's handling
    off, ``BEGIN`` or ``BEGIN IMMEDIATE`` at the start of every transaction) was measured against the
    suite: deferred ``BEGIN`` makes a transaction that reads first fail with "database is locked" when
    another writer commits meanwhile (the timer worker's race test), and ``BEGIN IMMEDIATE`` for every
    transaction makes a read-only session opened inside another in the same thread wait for it until
    the busy timeout. One gap of pysqlite's handling is closed here: a SAVEPOINT issued while no
    transaction is open would itself start one, and its RELEASE would commit it (a savepoint that is the
    transaction's first write could not be rolled back with the transaction); ``BEGIN IMMEDIATE`` is
    sent first.
    """
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        @event.listens_for(engine, "savepoint")
        def _sqlite_savepoint(conn, _name):
            dbapi_conn = conn.connection.dbapi_connection
            if dbapi_conn.isolation_level is not None and not dbapi_conn.in_transaction:
                dbapi_conn.execute("BEGIN IMMEDIATE")  # the savepoint nests in a transaction that commit() ends

        return engine
    # psycopg prepares a statement run five times, and PostgreSQL then plans it once for any parameters: for
    # the inbox's name search (a bigram array) that generic plan took 190 ms where its own took 0.8 (1 M cases)
    engine = create_engine(url, connect_args={"options": "-c plan_cache_mode=force_custom_plan"})
    _ping_after_idle(engine, PING_AFTER_IDLE_SECONDS)
    return engine


# a pooled connection unused this long is pinged before it is handed out (see _ping_after_idle)
PING_AFTER_IDLE_SECONDS = 10.0
_CHECKED_IN = "xf_checked_in_at"


def _ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection on checkout only if it sat idle in the pool for idle_seconds or more.

    ``pool_pre_ping=True`` pings on every checkout: one extra round trip per unit of work, i.e. per web
    request or completion. What it guards against is a connection the server dropped while it sat in
    the pool (a database restart, an idle timeout, a failover), which happens to idle connections; a
    connection handed back moments ago is the one just used. A failed ping discards the connection and
    the pool drops every connection older than now (they met the same restart) and opens a new one,
    as ``pool_pre_ping`` does. A connection broken within the idle window fails its statement instead;
    SQLAlchemy then invalidates the pool's older connections too, so the next unit of work reconnects.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record):
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, _proxy):
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # a new connection, or one in use moments ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # any failure: the connection is no good, the pool takes another
            raise exc_mod.InvalidatePoolError("idle connection failed its ping") from exc


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)


class ReadOnlyError(RuntimeError):
    """A statement other than a SELECT was sent through a read-only session (a programming error)."""


def make_read_session_factory(engine: Engine) -> sessionmaker:
    """Sessions for a read that needs no transaction of its own — what every request does before its view
    (load the logged-in user) and around it (the unread-notification count): their SELECTs run in
    autocommit, each on its own snapshot, so PostgreSQL gets no ``BEGIN`` and no ``COMMIT`` round trip for
    them (two of a page's three transactions were only that). Anything but a SELECT is refused before it is
    sent: a write here would commit statement by statement."""
    reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    @event.listens_for(reader, "before_cursor_execute")
    def _selects_only(_conn, _cursor, statement, _parameters, _context, _executemany):
        if not statement.lstrip()[:6].upper() == "SELECT":
            raise ReadOnlyError(f"a read-only session may only SELECT: {statement[:60]}")

    return sessionmaker(bind=reader, expire_on_commit=False)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def ping(engine: Engine) -> bool:
    """Whether the database answers a trivial query now (the health endpoint asks)."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True
    except Exception:  # any failure to reach or query the database means "not healthy"
        return False

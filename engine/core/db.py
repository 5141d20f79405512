"""Database wiring: declarative base with a naming convention, engine and session factory."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData, create_engine, event, make_url
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
    return create_engine(url, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)


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

"""engine/core/db.py on PostgreSQL: a pooled connection is pinged on checkout only after sitting idle, and one
the server dropped while it sat in the pool is replaced instead of failing the next unit of work."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from engine.core import db as db_mod
from engine.core.db import make_engine

pytestmark = pytest.mark.postgres


def _backend_pid(engine) -> tuple[int, dict]:
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        info = conn.connection.info  # the pool record's per-DBAPI-connection dict
    return pid, info


@pytest.fixture
def pg_engine(db, monkeypatch):
    if not db.url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (SQLite has no server to drop a connection)")
    engine = make_engine(db.url)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counted(dbapi_conn):
        pings.append(dbapi_conn)
        return real_ping(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    yield engine, pings
    engine.dispose()


def test_a_connection_used_moments_ago_is_handed_out_without_a_ping(pg_engine):
    engine, pings = pg_engine
    first, _ = _backend_pid(engine)
    for _ in range(3):
        again, _ = _backend_pid(engine)
        assert again == first  # the same pooled connection
    assert pings == []


def test_an_idle_connection_the_server_dropped_is_replaced_on_checkout(pg_engine):
    engine, pings = pg_engine
    pid, info = _backend_pid(engine)
    admin = create_engine(engine.url)  # the "server restart": another client ends the pooled one's backend
    try:
        with admin.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one() is True
    finally:
        admin.dispose()
    info[db_mod._CHECKED_IN] -= db_mod.PING_AFTER_IDLE_SECONDS + 1  # as if it had sat idle that long
    with engine.connect() as conn:
        fresh = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert len(pings) == 1
    assert fresh != pid  # a new connection, and the unit of work did not fail


def test_an_idle_live_connection_passes_its_ping_and_is_reused(pg_engine):
    engine, pings = pg_engine
    pid, info = _backend_pid(engine)
    info[db_mod._CHECKED_IN] -= db_mod.PING_AFTER_IDLE_SECONDS + 1
    again, _ = _backend_pid(engine)
    assert again == pid
    assert len(pings) == 1

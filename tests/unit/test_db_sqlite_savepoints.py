"""engine/core/db.py on SQLite: a savepoint that is its transaction's first write rolls back with it."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from engine.core.db import make_engine


def _engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'sp.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    return engine


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM t")).scalar_one()


def test_a_released_savepoint_that_was_the_first_write_is_rolled_back_with_its_transaction(tmp_path):
    engine = _engine(tmp_path)
    with Session(engine) as session:
        session.execute(text("SELECT 1"))  # a read first: pysqlite has not begun a transaction yet
        with session.begin_nested():
            session.execute(text("INSERT INTO t VALUES (1)"))
        session.rollback()
    assert _count(engine) == 0
    engine.dispose()


def test_a_released_savepoint_commits_with_its_transaction(tmp_path):
    engine = _engine(tmp_path)
    with Session(engine) as session:
        with session.begin_nested():
            session.execute(text("INSERT INTO t VALUES (1)"))
        savepoint = session.begin_nested()  # a rolled-back savepoint leaves the first one's row
        session.execute(text("INSERT INTO t VALUES (2)"))
        savepoint.rollback()
        session.commit()
    assert _count(engine) == 1
    engine.dispose()

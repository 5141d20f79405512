"""What the benchmarks share: a fresh database with the demo data (no cases)."""

from __future__ import annotations

import tempfile

from sqlalchemy import text
from sqlalchemy.engine import Engine

from engine.bootstrap import setup_database
from engine.core.db import make_engine


def fresh_database(url: str | None, clock, name: str) -> tuple[str, Engine]:
    """(url, engine) of an empty database set up with regions, roles, procedures and demo users: the
    given PostgreSQL database with its schema dropped first, or a new SQLite file named after the bench."""
    url = url or f"sqlite:///{tempfile.mkdtemp()}/{name}.sqlite3"
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    setup_database(engine, clock, demo=True, demo_cases=False)
    return url, engine

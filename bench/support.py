"""What the benchmarks share: a fresh database with the demo data (no cases)."""

from __future__ import annotations

import tempfile

from sqlalchemy import make_url, text
from sqlalchemy.engine import Engine

from engine.bootstrap import setup_database
from engine.core.db import make_engine


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database the URL names if it does not exist yet (through the `postgres`
    maintenance database), so a bench runs on a machine where only the server is set up."""
    parsed = make_url(url)
    if not parsed.get_backend_name().startswith("postgresql") or not parsed.database:
        return
    admin = make_engine(parsed.set(database="postgres").render_as_string(hide_password=False))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database})
            if not exists.scalar():
                conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def fresh_database(url: str | None, clock, name: str) -> tuple[str, Engine]:
    """(url, engine) of an empty database set up with regions, roles, procedures and demo users: the
    given PostgreSQL database with its schema dropped first, or a new SQLite file named after the bench."""
    url = url or f"sqlite:///{tempfile.mkdtemp()}/{name}.sqlite3"
    ensure_database(url)
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    setup_database(engine, clock, demo=True, demo_cases=False)
    return url, engine

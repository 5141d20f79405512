"""The Alembic revisions build exactly the models' schema, and go down and up again cleanly."""

from __future__ import annotations

import os
import uuid

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from engine.core import settings
from engine.core.db import make_engine


def _config(connection) -> Config:
    cfg = Config(str(settings.ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(settings.ROOT / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


@pytest.fixture
def empty_database_url(tmp_path):
    url = os.environ.get("DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    base = settings.database_url()
    name = f"xf_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migrations_build_the_models_schema_and_downgrade_and_upgrade_cleanly(empty_database_url):
    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_config(conn), "head")
        with engine.begin() as conn:
            command.check(_config(conn))  # raises if the models and the migrated schema differ
        with engine.begin() as conn:
            command.downgrade(_config(conn), "base")
        with engine.begin() as conn:
            command.upgrade(_config(conn), "head")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0020"]
    finally:
        engine.dispose()

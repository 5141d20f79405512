"""PostgreSQL plans every statement for its own parameters (plan_cache_mode), also once psycopg prepares it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from engine.core.db import make_engine


def test_postgresql_connections_plan_each_execution_for_its_parameters(db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only (DATABASE_URL)")
    engine = make_engine(db.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
            for _ in range(7):  # past psycopg's prepare threshold (5): the setting holds for prepared ones
                assert conn.execute(text("SELECT count(*) FROM region WHERE code LIKE :p"), {"p": "51%"}).scalar()
            assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
    finally:
        engine.dispose()

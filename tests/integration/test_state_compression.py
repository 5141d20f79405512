"""On PostgreSQL a case's workflow state is written lz4-compressed (migration 0019), by every save."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from engine import demo_data as D


def test_a_saved_case_state_is_stored_lz4_compressed(db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only (DATABASE_URL): SQLite stores text uncompressed")
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    with db.engine.connect() as conn:
        method, stored, length = conn.execute(text(
            "SELECT pg_column_compression(state), pg_column_size(state), octet_length(state) "
            "FROM case_instance WHERE id = :id"), {"id": case_id}).one()
    assert method == "lz4"
    assert stored < length / 2  # compressed, not only marked

"""The task table's indexes as migrations 0018 and 0020 leave them: the sparse columns indexed only where set,
the two redundant indexes gone — on the database the suite runs on, as migrated."""

from __future__ import annotations

from sqlalchemy import text

SPARSE = ("assignee_id", "owner_id", "parent_task_id", "instance_group")


def _task_indexes(db) -> dict[str, str]:
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "postgresql":
            rows = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'task'")).all()
        else:
            rows = conn.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'task' AND sql IS NOT NULL"
            )).all()
    return {name: " ".join(definition.split()) for name, definition in rows}


def test_sparse_task_columns_are_indexed_where_set_and_the_redundant_indexes_are_gone(db):
    found = _task_indexes(db)
    for column in SPARSE:
        definition = found[f"ix_task_{column}"]
        assert "WHERE" in definition and f"{column} IS NOT NULL" in definition, definition
    assert "ix_task_inbox" not in found and "ix_task_completed_by_id" not in found
    assert "ix_task_completed_by_completed" in found  # what serves the completer's lookups instead


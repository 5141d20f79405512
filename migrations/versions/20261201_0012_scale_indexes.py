"""indexes for the inbox and its search at province scale: case status, 我发起的/已办 in order, name trigrams

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

``ix_subject_name_trgm`` is a pg_trgm GIN index on PostgreSQL, so that "name contains" (three characters
or more) reads the index instead of every household; the migration creates the extension when the
database user may. Where it cannot (SQLite, or PostgreSQL without pg_trgm) the same-named index is a plain
one, which keeps the schema equal to the models and costs nothing the search relies on.
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def _trigrams_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    if bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).scalar():
        return True
    if not bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).scalar():
        return False
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError:
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def upgrade() -> None:
    op.create_index("ix_case_instance_status", "case_instance", ["status"])
    op.create_index("ix_case_instance_started_by_created", "case_instance", ["started_by_id", "created_at"])
    op.create_index("ix_task_completed_by_completed", "task", ["completed_by_id", "completed_at"])
    if _trigrams_available():
        op.create_index("ix_subject_name_trgm", "subject", ["name"], postgresql_using="gin",
                        postgresql_ops={"name": "gin_trgm_ops"})
    else:
        log.info("no pg_trgm here: ix_subject_name_trgm is a plain index ('name contains' scans the visible rows)")
        op.create_index("ix_subject_name_trgm", "subject", ["name"])


def downgrade() -> None:
    op.drop_index("ix_subject_name_trgm", table_name="subject")
    op.drop_index("ix_task_completed_by_completed", table_name="task")
    op.drop_index("ix_case_instance_started_by_created", table_name="case_instance")
    op.drop_index("ix_case_instance_status", table_name="case_instance")

"""The case's title and subject copied onto its task rows; 待办 by name as an index range of open tasks

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02

The inbox lists a task with its case's title and a name search narrows tasks by their case's subject. Read
through the case, a page fetched whole case rows (their workflow state with them) and a search joined every
subject the name matched to its cases and then probed each actor pool for each case (0.9 s at a million cases).
A case keeps its title and subject for life, so the task row carries copies (written with the row,
engine/runtime/projections.py and the 加签 rows of engine/operations/service.py), filled here for the rows that
exist. ``ix_task_open_subject`` indexes the open tasks by subject with the columns the 待办 visibility filters on.

The backfill rewrites every task row: on PostgreSQL run ``VACUUM (ANALYZE) task`` after upgrading (VACUUM cannot
run inside the migration's transaction) so that index-only scans of the inbox counts see all-visible pages
again; ANALYZE runs here.
"""
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    op.add_column("task", sa.Column("case_title", sa.String(length=200), nullable=True))
    op.add_column("task", sa.Column("subject_id", sa.Integer(), nullable=True))
    # UPDATE … FROM: PostgreSQL, and SQLite since 3.33
    op.execute("UPDATE task SET case_title = c.title, subject_id = c.subject_id FROM case_instance c "
               "WHERE c.id = task.case_id")
    op.create_index("ix_task_open_subject", "task", ["subject_id", "role_code", "scope_code", "assignee_id", "due_at"],
                    postgresql_where=OPEN, sqlite_where=OPEN)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE task")


def downgrade() -> None:
    op.drop_index("ix_task_open_subject", table_name="task")
    op.drop_column("task", "subject_id")
    op.drop_column("task", "case_title")

"""Task table: index assignee_id, owner_id, parent_task_id and instance_group only where set

Most task rows leave these NULL (a pool task has no assignee until claimed; 委派, 加签 and 会签 rows are few),
and every query and foreign-key check looks them up by a value. As partial indexes (``… IS NOT NULL``) a task
row's INSERT and its completion's UPDATE add no entry for a NULL: of the eleven indexes on the table, a pool
task's write now touches seven.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

COLUMNS = ("assignee_id", "owner_id", "parent_task_id", "instance_group")


def upgrade() -> None:
    for column in COLUMNS:
        op.drop_index(f"ix_task_{column}", table_name="task")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(f"ix_task_{column}", "task", [column], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_index(f"ix_task_{column}", table_name="task")
        op.create_index(f"ix_task_{column}", "task", [column])

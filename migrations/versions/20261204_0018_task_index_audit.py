"""Task table: drop two indexes every query already has a better one for

``ix_task_inbox`` (status, role_code, scope_code, due_at) served the inbox before the partial open-task
indexes; every query on a role and scope now reads ``ix_task_open_pool`` (open, unassigned) or
``ix_task_open_subject``. ``ix_task_completed_by_id`` is the leading column of
``ix_task_completed_by_completed``, which serves the same lookups and the foreign key's checks. A task
row's completion changes indexed columns, so PostgreSQL writes a new entry into every index of the
table: two fewer on each completion and each new task.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_task_inbox", table_name="task")
    op.drop_index("ix_task_completed_by_id", table_name="task")


def downgrade() -> None:
    op.create_index("ix_task_completed_by_id", "task", ["completed_by_id"])
    op.create_index("ix_task_inbox", "task", ["status", "role_code", "scope_code", "due_at"])

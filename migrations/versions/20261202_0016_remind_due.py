"""催办 batches: a partial index over the open tasks not yet reminded, by due date

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_REMIND = sa.text("status = 'open' AND reminded_at IS NULL AND due_at IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_task_remind_due", "task", ["due_at", "id"], postgresql_where=_REMIND, sqlite_where=_REMIND)


def downgrade() -> None:
    op.drop_index("ix_task_remind_due", table_name="task")

"""待办 as index ranges: unassigned open tasks per (role, scope) and assigned open tasks, in inbox order

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

Partial indexes over the open tasks only (a small part of all task rows once cases pile up), ordered as
the inbox lists them (due time, undated last, then arrival): the inbox counts a tab from index entries and
reads a page as the first rows of one range per (role, scope) it holds (engine/queries/inbox.py); the case
id rides along so that a search joins the visible tasks to their cases from the index alone. PostgreSQL
also gets extended statistics on (status, role, scope): its planner otherwise multiplies their separate
selectivities and expects a dozen open tasks where a county department has thousands.
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

POOL = sa.text("status = 'open' AND assignee_id IS NULL")
OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    op.create_index("ix_task_open_pool", "task", ["role_code", "scope_code", "due_at", "created_at", "id", "case_id"],
                    postgresql_where=POOL, sqlite_where=POOL)
    op.create_index("ix_task_open_assigned", "task", ["assignee_id", "due_at", "created_at", "id", "case_id"],
                    postgresql_where=OPEN, sqlite_where=OPEN)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE STATISTICS st_task_open_scope (dependencies, mcv) ON status, role_code, scope_code FROM task")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_task_open_scope")
    op.drop_index("ix_task_open_assigned", table_name="task")
    op.drop_index("ix_task_open_pool", table_name="task")

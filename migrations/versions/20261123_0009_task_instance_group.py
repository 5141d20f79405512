"""task rows of multi-instance steps (会签/或签): the activity each instance row belongs to and its sign mode

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

``instance_group`` is the SpiffWorkflow id of the multi-instance activity an instance row belongs
to (one activation of a 会签 step: its rows together give the step's progress, e.g. 会签 2/3);
``multi_sign`` is the step's ``signMode`` (all, any, ratio). Both are NULL for ordinary steps.
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("task", sa.Column("instance_group", sa.String(length=36), nullable=True))
    op.add_column("task", sa.Column("multi_sign", sa.String(length=8), nullable=True))
    op.create_index("ix_task_instance_group", "task", ["instance_group"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_task_instance_group", table_name="task")
    op.drop_column("task", "multi_sign")
    op.drop_column("task", "instance_group")

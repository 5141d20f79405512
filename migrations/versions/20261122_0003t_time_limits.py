"""time limits: notifications, working-day overrides, task reminders and day kinds, case path

Revision ID: 0003t
Revises: 0002
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0003t"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["case_instance.id"], name=op.f("fk_notification_case_id_case_instance")),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"], name=op.f("fk_notification_task_id_task")),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], name=op.f("fk_notification_user_id_user_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
    )
    op.create_index("ix_notification_user_unread", "notification", ["user_id", "read_at"], unique=False)
    op.create_index(op.f("ix_notification_case_id"), "notification", ["case_id"], unique=False)
    op.create_table(
        "holiday_override",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("is_workday", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=120), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_holiday_override")),
    )
    # plain ADD COLUMN works in place on SQLite and PostgreSQL (no table rebuild)
    op.add_column("task", sa.Column("day_kind", sa.String(length=8), nullable=False, server_default="natural"))
    op.add_column("task", sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("case_instance", sa.Column("path", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column("user_account", sa.Column("email", sa.String(length=120), nullable=True))


def downgrade() -> None:
    op.drop_column("user_account", "email")
    op.drop_column("case_instance", "path")
    op.drop_column("task", "reminded_at")
    op.drop_column("task", "day_kind")
    op.drop_table("holiday_override")
    op.drop_index(op.f("ix_notification_case_id"), table_name="notification")
    op.drop_index("ix_notification_user_unread", table_name="notification")
    op.drop_table("notification")

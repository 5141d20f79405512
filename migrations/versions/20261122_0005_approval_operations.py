"""approval operations: task assignee (claim, 转办), 抄送 copies, attachments (append-only)

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE task ADD COLUMN assignee_id INTEGER "
                   "CONSTRAINT fk_task_assignee_id_user_account REFERENCES user_account (id)")
    else:
        op.add_column("task", sa.Column("assignee_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_task_assignee_id_user_account", "task", "user_account", ["assignee_id"], ["id"])
    op.create_index("ix_task_assignee_id", "task", ["assignee_id"], unique=False)
    op.create_table(
        "case_cc",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("by_user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["case_instance.id"], name=op.f("fk_case_cc_case_id_case_instance")),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], name=op.f("fk_case_cc_user_id_user_account")),
        sa.ForeignKeyConstraint(["by_user_id"], ["user_account.id"], name=op.f("fk_case_cc_by_user_id_user_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_cc")),
        sa.UniqueConstraint("case_id", "user_id", name=op.f("uq_case_cc_case_id")),
    )
    op.create_index(op.f("ix_case_cc_case_id"), "case_cc", ["case_id"], unique=False)
    op.create_index(op.f("ix_case_cc_user_id"), "case_cc", ["user_id"], unique=False)
    op.create_table(
        "attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("uploaded_by_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case_instance.id"], name=op.f("fk_attachment_case_id_case_instance")),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"], name=op.f("fk_attachment_task_id_task")),
        sa.ForeignKeyConstraint(["uploaded_by_id"], ["user_account.id"],
                                name=op.f("fk_attachment_uploaded_by_id_user_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachment")),
    )
    op.create_index(op.f("ix_attachment_case_id"), "attachment", ["case_id"], unique=False)
    op.create_index(op.f("ix_attachment_sha256"), "attachment", ["sha256"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""CREATE TRIGGER attachment_no_update BEFORE UPDATE OR DELETE ON attachment
                      FOR EACH ROW EXECUTE FUNCTION audit_event_immutable()""")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"""CREATE TRIGGER attachment_no_{verb.lower()} BEFORE {verb} ON attachment
                           BEGIN SELECT RAISE(ABORT, 'attachment is append-only'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS attachment_no_update ON attachment")
    else:
        op.execute("DROP TRIGGER IF EXISTS attachment_no_update")
        op.execute("DROP TRIGGER IF EXISTS attachment_no_delete")
    op.drop_index(op.f("ix_attachment_sha256"), table_name="attachment")
    op.drop_index(op.f("ix_attachment_case_id"), table_name="attachment")
    op.drop_table("attachment")
    op.drop_index(op.f("ix_case_cc_user_id"), table_name="case_cc")
    op.drop_index(op.f("ix_case_cc_case_id"), table_name="case_cc")
    op.drop_table("case_cc")
    op.drop_index("ix_task_assignee_id", table_name="task")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE task DROP COLUMN assignee_id")
    else:
        op.drop_constraint("fk_task_assignee_id_user_account", "task", type_="foreignkey")
        op.drop_column("task", "assignee_id")

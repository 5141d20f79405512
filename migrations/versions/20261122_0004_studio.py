"""procedure studio: drafts edited in the browser before they are deployed as versions

Revision ID: 0004
Revises: 0003t
Create Date: 2026-11-22

0003 (signed notices) also descends from 0003t; 0006 merges this branch with 0005.
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003t"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "procedure_draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("base_version_id", sa.Integer(), nullable=True),
        sa.Column("deployed_version_id", sa.Integer(), nullable=True),
        sa.Column("lock_version", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["base_version_id"], ["procedure_version.id"],
                                name=op.f("fk_procedure_draft_base_version_id_procedure_version")),
        sa.ForeignKeyConstraint(["deployed_version_id"], ["procedure_version.id"],
                                name=op.f("fk_procedure_draft_deployed_version_id_procedure_version")),
        sa.ForeignKeyConstraint(["created_by_id"], ["user_account.id"],
                                name=op.f("fk_procedure_draft_created_by_id_user_account")),
        sa.ForeignKeyConstraint(["updated_by_id"], ["user_account.id"],
                                name=op.f("fk_procedure_draft_updated_by_id_user_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_procedure_draft")),
    )
    op.create_index(op.f("ix_procedure_draft_code"), "procedure_draft", ["code"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_procedure_draft_code"), table_name="procedure_draft")
    op.drop_table("procedure_draft")

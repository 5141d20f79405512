"""subject registry: household members, edit history, active flag and revision of a subject, one ID per kind

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

``subject_member`` holds a household's members (a person's ID number at most once);
``subject_revision`` one row per change of a subject with the changed fields; ``subject.is_active``
(deactivated subjects stay with their cases) and ``subject.revision`` (the edit count, for optimistic
edits). ``uq_subject_kind_id_number``: an ID number names one subject per kind.
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subject", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="1", nullable=False))
        batch_op.create_index("uq_subject_kind_id_number", ["kind", "id_number"], unique=True)
    op.create_table(
        "subject_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("id_number", sa.String(length=18), nullable=True),
        sa.Column("relation", sa.String(length=16), nullable=False),
        sa.Column("labour_ability", sa.String(length=20), nullable=True),
        sa.Column("health", sa.String(length=20), nullable=True),
        sa.Column("schooling", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(["subject_id"], ["subject.id"], name=op.f("fk_subject_member_subject_id_subject")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_member")),
        sa.UniqueConstraint("id_number", name=op.f("uq_subject_member_id_number")),
    )
    op.create_index(op.f("ix_subject_member_subject_id"), "subject_member", ["subject_id"], unique=False)
    op.create_table(
        "subject_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("changed_by_id", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["changed_by_id"], ["user_account.id"],
                                name=op.f("fk_subject_revision_changed_by_id_user_account")),
        sa.ForeignKeyConstraint(["subject_id"], ["subject.id"], name=op.f("fk_subject_revision_subject_id_subject")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_revision")),
    )
    op.create_index(op.f("ix_subject_revision_subject_id"), "subject_revision", ["subject_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_subject_revision_subject_id"), table_name="subject_revision")
    op.drop_table("subject_revision")
    op.drop_index(op.f("ix_subject_member_subject_id"), table_name="subject_member")
    op.drop_table("subject_member")
    with op.batch_alter_table("subject", schema=None) as batch_op:
        batch_op.drop_index("uq_subject_kind_id_number")
        batch_op.drop_column("revision")
        batch_op.drop_column("is_active")

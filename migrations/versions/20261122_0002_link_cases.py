"""link cases: a case started by another case's step (e.g. 回访 finds a new risk → 监测识别)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite can add a nullable column with a REFERENCES clause in place; a batch rebuild
        # would have to drop case_instance, which the audit and task rows reference.
        op.execute("ALTER TABLE case_instance ADD COLUMN parent_case_id INTEGER "
                   "CONSTRAINT fk_case_instance_parent_case_id_case_instance REFERENCES case_instance (id)")
    else:
        op.add_column("case_instance", sa.Column("parent_case_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_case_instance_parent_case_id_case_instance", "case_instance", "case_instance",
                              ["parent_case_id"], ["id"])
    op.create_index("ix_case_instance_parent_case_id", "case_instance", ["parent_case_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_case_instance_parent_case_id", table_name="case_instance")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE case_instance DROP COLUMN parent_case_id")
    else:
        op.drop_constraint("fk_case_instance_parent_case_id_case_instance", "case_instance", type_="foreignkey")
        op.drop_column("case_instance", "parent_case_id")

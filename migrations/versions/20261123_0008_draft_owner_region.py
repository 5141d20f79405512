"""studio draft owner region: a draft of a new procedure code belongs to its creator's region

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

Also fills ``procedure.owner_region_code`` (added by 0007) for procedures first deployed from the
studio by a county admin: the region of that admin's grant. Procedures first deployed by the
bootstrap (``deployed_by = 'system'``) stay NULL, i.e. shipped and system-wide.
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("procedure_draft", sa.Column("owner_region_code", sa.String(length=12), nullable=True))
    op.create_index("ix_procedure_draft_owner_region_code", "procedure_draft", ["owner_region_code"], unique=False)
    op.execute(
        "UPDATE procedure SET owner_region_code = ("
        " SELECT MIN(user_role.region_code) FROM procedure_version"
        " JOIN user_account ON user_account.username = procedure_version.deployed_by"
        " JOIN user_role ON user_role.user_id = user_account.id AND user_role.role_code = 'admin'"
        " WHERE procedure_version.procedure_id = procedure.id AND procedure_version.version = 1)"
        " WHERE owner_region_code IS NULL"
    )
    op.execute(
        "UPDATE procedure_draft SET owner_region_code = ("
        " SELECT MIN(user_role.region_code) FROM user_role"
        " WHERE user_role.user_id = procedure_draft.created_by_id AND user_role.role_code = 'admin')"
        " WHERE code NOT IN (SELECT code FROM procedure)"
    )


def downgrade() -> None:
    op.drop_index("ix_procedure_draft_owner_region_code", table_name="procedure_draft")
    op.drop_column("procedure_draft", "owner_region_code")

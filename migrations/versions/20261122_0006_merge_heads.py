"""merge the studio (0004) and approval-operations (0005) branches into one head

Revision ID: 0006
Revises: 0004, 0005
Create Date: 2026-11-22
"""

revision = "0006"
down_revision = ("0004", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""user session epoch: a login session is valid only while it carries the user's current epoch

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

Logout, a password change and deactivation add one to ``user_account.session_epoch``; every request
compares the epoch stored in the session cookie with it, so a cookie saved before stops working.
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("user_account", sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("user_account", "session_epoch")

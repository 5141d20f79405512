"""PostgreSQL: compress a case's workflow state with lz4 instead of pglz

Every mutation writes the case's whole state (≈ 24 KB for an exit case, ≈ 6 KB compressed), and a load
that misses the live-workflow cache reads it back. PostgreSQL's default TOAST compression, pglz, spends
several times the CPU of lz4 for a similar ratio on this JSON; the column's setting changes only how new
values are written (each save rewrites the state, so old cases follow on their next change). SQLite has no
such setting.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE case_instance ALTER COLUMN state SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE case_instance ALTER COLUMN state SET COMPRESSION default")

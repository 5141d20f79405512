"""two-character name search and the registry list in its order: name bigrams (GIN) and (region, name, id)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

Chinese names are often two characters, and pg_trgm (``ix_subject_name_trgm``) serves "name contains"
for three or more only. On PostgreSQL ``xf_name_bigrams(name)`` is an immutable SQL function giving a
name's distinct character pairs, and ``ix_subject_name_bigrams`` a GIN index over it: a two-character term
is one of the pairs exactly when the name contains it (engine/queries/names.py). Being an expression
index over ``name``, PostgreSQL keeps it in step with every write of a subject. SQLite keeps the LIKE.

``ix_subject_region_name`` orders the registry list (region, name, id), so that a keyset page reads the
next rows of the index instead of sorting every subject of a county.
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BIGRAMS = """
CREATE OR REPLACE FUNCTION xf_name_bigrams(name text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT substr(name, i, 2)), '{}')
    FROM generate_series(1, char_length(name) - 1) AS i
$$
"""


def upgrade() -> None:
    op.create_index("ix_subject_region_name", "subject", ["region_code", "name", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(BIGRAMS)
        op.create_index("ix_subject_name_bigrams", "subject", [sa.text("xf_name_bigrams(name)")],
                        postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_subject_name_bigrams", table_name="subject")
        op.execute("DROP FUNCTION IF EXISTS xf_name_bigrams(text)")
    op.drop_index("ix_subject_region_name", table_name="subject")

"""Name search ("姓名 contains"), the one condition the inbox search and the registry list share.

Chinese names are mostly two or three characters, so a search term is often two. On PostgreSQL three
characters or more are served by the pg_trgm GIN index (``ix_subject_name_trgm``), but trigrams cannot
serve two; a two-character term then reads ``ix_subject_name_bigrams``, a GIN index over the name's
character pairs (``xf_name_bigrams(name)``, an immutable SQL function; migration 0014). The index is an
expression over ``name`` itself, so PostgreSQL keeps it in step with every write of a subject — the
registry's, the Excel import's, the bench's COPY — and no code has to. The LIKE stays in the condition,
so the result is exactly the LIKE result on every backend; SQLite (one county's data at most) keeps the
plain LIKE.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, and_, cast, func, literal
from sqlalchemy.dialects.postgresql import ARRAY

BIGRAMS_FUNCTION = "xf_name_bigrams"


def name_contains(entity: Any, term: str, dialect: str):
    """The condition "entity's name contains term" (LIKE with its wildcards escaped) for a database of
    dialect, index-served on PostgreSQL for two characters as for three or more."""
    like = entity.name.contains(term, autoescape=True)
    if len(term) == 2 and dialect == "postgresql":
        pairs = getattr(func, BIGRAMS_FUNCTION)(entity.name, type_=ARRAY(Text))
        return and_(pairs.contains(cast(literal([term], ARRAY(Text)), ARRAY(Text))), like)
    return like

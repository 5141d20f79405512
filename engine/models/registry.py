"""The subject registry's tables: household members and the edit history of every subject.

A household (``Subject.kind == "household"``) is registered under its head (``Subject.name``,
``Subject.id_number``); its members are rows of ``subject_member``. Every create, edit, deactivation
and reactivation of a subject leaves one ``subject_revision`` row with the fields it changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine.core.db import Base
from engine.models import Subject, User, UTCDateTime

# an ID number names one household head per kind (a project carries none, or its project code)
Index("uq_subject_kind_id_number", Subject.kind, Subject.id_number, unique=True)


class SubjectMember(Base):
    """One member of a household (户主 included when listed): who they are and what the 一户一档 records."""

    __tablename__ = "subject_member"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(60))
    # a person belongs to one household: unique where given (NULLs are distinct on both backends)
    id_number: Mapped[str | None] = mapped_column(String(18), unique=True)
    relation: Mapped[str] = mapped_column(String(16))
    labour_ability: Mapped[str | None] = mapped_column(String(20))
    health: Mapped[str | None] = mapped_column(String(20))
    schooling: Mapped[str | None] = mapped_column(String(20))


class SubjectRevision(Base):
    """One change of a subject: create, update, deactivate, reactivate, import; ``changes`` maps each
    changed field to ``[before, after]``."""

    __tablename__ = "subject_revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    changed_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)

    changed_by: Mapped[User] = relationship(lazy="joined")


class StartBatch(Base):
    """A background job starting one procedure for many subjects (批量发起, 定期预判), with its progress.

    ``results`` holds one entry per subject handled, in order: ``{"subject_id", "name", "outcome"
    ("started" | "skipped" | "failed"), "case_id", "message"}``; each entry is written in the same
    transaction as that subject's start, so a job resumed after a crash never starts a subject twice.
    """

    __tablename__ = "start_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    procedure_code: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | running | done
    subject_ids: Mapped[list[Any]] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(Integer)
    started_count: Mapped[int] = mapped_column(Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[list[Any]] = mapped_column(JSON, default=list)

    created_by: Mapped[User] = relationship(lazy="joined")

"""SQLAlchemy models: regions, users and roles, procedures, cases, task rows, timers, audit."""

from __future__ import annotations

import enum
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from engine.core.db import Base


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime passed to the database")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=24, values_callable=lambda e: [m.value for m in e])


class RegionLevel(str, enum.Enum):
    province = "province"
    city = "city"
    county = "county"
    township = "township"
    village = "village"


class CaseStatus(str, enum.Enum):
    running = "running"
    exited = "exited"
    delayed_exit = "delayed_exit"
    approved = "approved"
    rejected = "rejected"
    completed = "completed"
    identified = "identified"
    withdrawn = "withdrawn"


class TaskStatus(str, enum.Enum):
    open = "open"
    completed = "completed"
    cancelled = "cancelled"
    waiting = "waiting"  # 加签: held (not in any inbox) while its co-signers act


class TimerStatus(str, enum.Enum):
    waiting = "waiting"
    fired = "fired"
    cancelled = "cancelled"
    incident = "incident"


class Region(Base):
    __tablename__ = "region"

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    level: Mapped[RegionLevel] = mapped_column(_enum(RegionLevel))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("region.code"), index=True)


class Role(Base):
    __tablename__ = "role"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    level: Mapped[RegionLevel] = mapped_column(_enum(RegionLevel))


class User(Base):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    email: Mapped[str | None] = mapped_column(String(120))
    # a login session is valid while it carries this number; logout, password change, deactivation add one
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # read when an Actor is built (assignment.actor_for), not whenever a user is shown
    grants: Mapped[list[UserRole]] = relationship(back_populates="user")


class UserRole(Base):
    """A role held by a user in one region (the region's level is the role's level)."""

    __tablename__ = "user_role"
    __table_args__ = (UniqueConstraint("user_id", "role_code", "region_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    role_code: Mapped[str] = mapped_column(ForeignKey("role.code"))
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"))
    user: Mapped[User] = relationship(back_populates="grants")


class Subject(Base):
    """What a case is about: a household (户) or a project (项目)."""

    __tablename__ = "subject"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    id_number: Mapped[str | None] = mapped_column(String(18), index=True)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the registry (engine/registry): a deactivated subject is kept with its cases but offered nowhere
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class Procedure(Base):
    __tablename__ = "procedure"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    # the region whose admins may change it (studio); NULL for procedures shipped with XiangFlow
    owner_region_code: Mapped[str | None] = mapped_column(String(12), index=True)
    versions: Mapped[list[ProcedureVersion]] = relationship(
        back_populates="procedure", order_by="ProcedureVersion.version"
    )


class ProcedureVersion(Base):
    """One deployed, immutable content version of a procedure (BPMN + DMN + forms)."""

    __tablename__ = "procedure_version"
    __table_args__ = (
        UniqueConstraint("procedure_id", "version"),
        UniqueConstraint("procedure_id", "content_hash", name="uq_procedure_version_content"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    procedure_id: Mapped[int] = mapped_column(ForeignKey("procedure.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    process_id: Mapped[str] = mapped_column(String(120))
    # large and immutable: loaded only when needed, then cached per content hash (definitions.py)
    files: Mapped[dict[str, str]] = mapped_column(JSON, deferred=True)
    spec_json: Mapped[str] = mapped_column(Text, deferred=True)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deployed_by: Mapped[str] = mapped_column(String(64))
    procedure: Mapped[Procedure] = relationship(back_populates="versions", lazy="joined")


class Case(Base):
    __tablename__ = "case_instance"

    id: Mapped[int] = mapped_column(primary_key=True)
    procedure_version_id: Mapped[int] = mapped_column(ForeignKey("procedure_version.id"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[CaseStatus] = mapped_column(_enum(CaseStatus), default=CaseStatus.running)
    outcome_reason: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)
    serializer_version: Mapped[str] = mapped_column(String(16))
    lock_version: Mapped[int] = mapped_column(Integer, default=0)
    return_count: Mapped[int] = mapped_column(Integer, default=0)
    path: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    parent_case_id: Mapped[int | None] = mapped_column(ForeignKey("case_instance.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    version: Mapped[ProcedureVersion] = relationship(lazy="joined")
    subject: Mapped[Subject] = relationship(lazy="joined")


class TaskRow(Base):
    """One human task of a case: open while ready, kept with its outcome once done."""

    __tablename__ = "task"
    __table_args__ = (
        Index("ix_task_case_spiff", "case_id", "spiff_task_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_instance.id"))
    spiff_task_id: Mapped[str] = mapped_column(String(36))
    spec_name: Mapped[str] = mapped_column(String(120))
    title: Mapped[str] = mapped_column(String(200))
    lane: Mapped[str | None] = mapped_column(String(120))
    role_code: Mapped[str] = mapped_column(ForeignKey("role.code"))
    region_code: Mapped[str] = mapped_column(String(12))
    scope_code: Mapped[str] = mapped_column(String(12))
    form_key: Mapped[str | None] = mapped_column(String(160))
    actions: Mapped[str] = mapped_column(String(80))
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus), default=TaskStatus.open)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # looked up by ix_task_completed_by_completed (completed_by_id, completed_at), declared below
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    day_kind: Mapped[str] = mapped_column(String(8), default="natural")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    action: Mapped[str | None] = mapped_column(String(16))
    opinion: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # 委派: the person who delegated the task and gets it back to confirm; delegation = pending|resolved
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    delegation: Mapped[str | None] = mapped_column(String(16))
    # 加签: a co-signer's row points at the task it was added to; sign_position = before|after
    parent_task_id: Mapped[int | None] = mapped_column(ForeignKey("task.id"))
    sign_position: Mapped[str | None] = mapped_column(String(8))
    # what waits to be applied: the owner's decision held for after-signers, or a delegate's draft
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # 会签/或签: the multi-instance activity (SpiffWorkflow id) this row is one signer's instance of,
    # and the step's signMode (all, any, ratio); NULL for ordinary steps (engine/runtime/countersign.py)
    instance_group: Mapped[str | None] = mapped_column(String(36))
    multi_sign: Mapped[str | None] = mapped_column(String(8))
    # copies of the case's title and subject (migration 0017), written with the row and never changed after (a
    # case keeps both for life), so the inbox lists and searches tasks without reading case rows; nullable
    # only so that the revision adds them without rebuilding the table on SQLite
    case_title: Mapped[str | None] = mapped_column(String(200))
    subject_id: Mapped[int | None] = mapped_column(Integer)

    # loaded when used (a case row carries its large state); the inbox loads its tasks' cases in one
    # query (engine/queries/inbox.py InboxQueries.page)
    case: Mapped[Case] = relationship()
    completed_by: Mapped[User | None] = relationship(lazy="joined", foreign_keys=[completed_by_id])
    assignee: Mapped[User | None] = relationship(lazy="joined", foreign_keys=[assignee_id])


class TimerRow(Base):
    """A waiting BPMN timer event with its frozen due time."""

    __tablename__ = "timer"
    __table_args__ = (
        Index("ix_timer_due", "status", "due_at"),
        UniqueConstraint("case_id", "spiff_task_id", name="uq_timer_case_task"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_instance.id"), index=True)
    spiff_task_id: Mapped[str] = mapped_column(String(36))
    spec_name: Mapped[str] = mapped_column(String(120))
    title: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[TimerStatus] = mapped_column(_enum(TimerStatus), default=TimerStatus.waiting)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    case: Mapped[Case] = relationship()


# the inbox and its search at province scale (migration 0012, engine/queries/inbox.py): case status, the
# 我发起的 and 已办 tabs in their order, "name contains" by trigrams on PostgreSQL (a plain index elsewhere)
Index("ix_case_instance_status", Case.status)
Index("ix_case_instance_started_by_created", Case.started_by_id, Case.created_at)
Index("ix_task_completed_by_completed", TaskRow.completed_by_id, TaskRow.completed_at)
Index("ix_subject_name_trgm", Subject.name, postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"})
# the registry list's order (migration 0014); that migration also gives PostgreSQL ix_subject_name_bigrams for
# two-character "name contains" (engine/queries/names.py), an expression over a function only it has and so
# declared there alone (migrations/env.py MIGRATION_ONLY_INDEXES)
Index("ix_subject_region_name", Subject.region_code, Subject.name, Subject.id)
# 待办 (migration 0013): one range per (role, scope) of the unassigned open tasks, and the actor's assigned
# ones, each in inbox order (due first, undated last), so counts read index entries and pages stop early
_OPEN_POOL = text("status = 'open' AND assignee_id IS NULL")
_OPEN = text("status = 'open'")
Index("ix_task_open_pool", TaskRow.role_code, TaskRow.scope_code, TaskRow.due_at, TaskRow.created_at, TaskRow.id,
      TaskRow.case_id, postgresql_where=_OPEN_POOL, sqlite_where=_OPEN_POOL)
Index("ix_task_open_assigned", TaskRow.assignee_id, TaskRow.due_at, TaskRow.created_at, TaskRow.id, TaskRow.case_id,
      postgresql_where=_OPEN, sqlite_where=_OPEN)
# 待办 by name (migration 0017): the open tasks of the subjects a name search finds, with what the 待办 visibility
# filters on, so that search reads the matching tasks only, not every open task of the actor's pools
Index("ix_task_open_subject", TaskRow.subject_id, TaskRow.role_code, TaskRow.scope_code, TaskRow.assignee_id,
      TaskRow.due_at, postgresql_where=_OPEN, sqlite_where=_OPEN)
# 催办 (migration 0016): the open tasks not yet reminded, by due date — what the timer worker's reminder batches
# read; a task leaves it once reminded or closed, so it stays small however many cases are stored
_REMIND = text("status = 'open' AND reminded_at IS NULL AND due_at IS NOT NULL")
Index("ix_task_remind_due", TaskRow.due_at, TaskRow.id, postgresql_where=_REMIND, sqlite_where=_REMIND)
# columns most rows leave NULL (a pool task has no assignee; 委派, 加签 and 会签 rows are few), indexed where set
# (migration 0020): every lookup and foreign-key check is by a value, and a task row's write adds no entry for
# a NULL
for _column in (TaskRow.assignee_id, TaskRow.owner_id, TaskRow.parent_task_id, TaskRow.instance_group):
    _set = _column.isnot(None)
    Index(f"ix_task_{_column.key}", _column, postgresql_where=_set, sqlite_where=_set)


class CaseCc(Base):
    """抄送: a read-only copy of a case sent to a user."""

    __tablename__ = "case_cc"
    __table_args__ = (UniqueConstraint("case_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_instance.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    by_user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    case: Mapped[Case] = relationship(lazy="joined")


class Attachment(Base):
    """A file on a case (photo, appraisal report, minutes, signature); stored by content hash, never replaced."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_instance.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("task.id"))
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    kind: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    uploaded_by: Mapped[User] = relationship(lazy="joined")


class Notification(Base):
    """An in-app message to one user (催办 reminders, escalations, outcomes); also mailed if SMTP is set."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_user_unread", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case_instance.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("task.id"))
    kind: Mapped[str] = mapped_column(String(24))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class HolidayOverride(Base):
    """An admin's correction to the official working-day calendar (local holidays, next year's dates)."""

    __tablename__ = "holiday_override"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    is_workday: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(String(120), default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Append-only record of every action on a case. The code has no update or delete path."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case_instance.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("task.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    action: Mapped[str] = mapped_column(String(40))
    step: Mapped[str | None] = mapped_column(String(200))
    opinion: Mapped[str | None] = mapped_column(Text)
    data_diff: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    client_addr: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User | None] = relationship(lazy="joined")


# ---------------------------------------------------------------------------- signed notices
# (appended for issue 5; LargeBinary is imported here so the models above stay untouched)
from sqlalchemy import LargeBinary  # noqa: E402


class NoticeBatchStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class NoticeAuthority(Base):
    """The self-made certificate authority of a demo or test deployment (never a real CA)."""

    __tablename__ = "notice_authority"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    cert_pem: Mapped[str] = mapped_column(Text)
    key_pem: Mapped[str] = mapped_column(Text)
    key_encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OfficeKey(Base):
    """An issuing office's signing key and X.509 certificate; a new key retires the office's previous one."""

    __tablename__ = "office_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    office_code: Mapped[str] = mapped_column(String(200), index=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    office_name: Mapped[str] = mapped_column(String(120))
    source: Mapped[str] = mapped_column(String(16))
    authority_id: Mapped[int | None] = mapped_column(ForeignKey("notice_authority.id"))
    subject: Mapped[str] = mapped_column(String(400))
    cert_pem: Mapped[str] = mapped_column(Text)
    chain_pem: Mapped[str] = mapped_column(Text, default="")
    trust_root_pem: Mapped[str | None] = mapped_column(Text)
    key_pem: Mapped[str] = mapped_column(Text)
    key_encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    cert_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


Index("uq_office_key_active", OfficeKey.office_code, unique=True,
      sqlite_where=OfficeKey.retired_at.is_(None), postgresql_where=OfficeKey.retired_at.is_(None))


class NoticeBatch(Base):
    """A background job issuing the notices of many cases, with its progress."""

    __tablename__ = "notice_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    procedure_code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[NoticeBatchStatus] = mapped_column(_enum(NoticeBatchStatus), default=NoticeBatchStatus.queued)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)

    created_by: Mapped[User] = relationship(lazy="joined")


class IssuedNotice(Base):
    """A signed notice exactly as issued. Immutable: database triggers refuse UPDATE and DELETE.

    Reissuing makes a new notice whose ``supersedes_id`` names the old one; the old row stays as it was.
    """

    __tablename__ = "issued_notice"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(32), unique=True)
    procedure_code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    kind_name: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(300))
    public: Mapped[bool] = mapped_column(Boolean)
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code"), index=True)
    office_key_id: Mapped[int] = mapped_column(ForeignKey("office_key.id"))
    office_name: Mapped[str] = mapped_column(String(120))
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    document_date: Mapped[str] = mapped_column(String(10))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    covers: Mapped[list[Any]] = mapped_column(JSON)
    template_sha256: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    page_count: Mapped[int] = mapped_column(Integer)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("issued_notice.id"), unique=True)
    reissue_reason: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("notice_batch.id"), index=True)
    group_key: Mapped[str | None] = mapped_column(String(64))
    pdf: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)

    office: Mapped[OfficeKey] = relationship(lazy="joined")
    issued_by: Mapped[User | None] = relationship(lazy="joined")


class IssuedNoticeCase(Base):
    """Which cases a notice covers (a village 公示 covers many). Immutable like the notice."""

    __tablename__ = "issued_notice_case"

    notice_id: Mapped[int] = mapped_column(ForeignKey("issued_notice.id"), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case_instance.id"), primary_key=True, index=True)


# ---------------------------------------------------------------------------- procedure studio
# (appended for issue 6)


class ProcedureDraft(Base):
    """A procedure being edited in the studio: the same files a version holds, not yet deployed.

    ``files`` uses the keys of a deployed version (``procedure.json``, ``bpmn/x.bpmn``, ``dmn/x.dmn``,
    ``form/<formKey>``) plus ``template/<name>`` for notice templates carried in an imported zip.
    """

    __tablename__ = "procedure_draft"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="editing")
    source: Mapped[str] = mapped_column(String(16), default="new")
    # the region a draft of a new procedure code belongs to (NULL: system-wide); a draft of an existing
    # procedure follows that procedure's owner (engine/studio/service.py StudioService.draft_owner)
    owner_region_code: Mapped[str | None] = mapped_column(String(12), index=True)
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("procedure_version.id"))
    deployed_version_id: Mapped[int | None] = mapped_column(ForeignKey("procedure_version.id"))
    lock_version: Mapped[int] = mapped_column(Integer, default=1)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    updated_by_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    base_version: Mapped[ProcedureVersion | None] = relationship(foreign_keys=[base_version_id], lazy="joined")
    deployed_version: Mapped[ProcedureVersion | None] = relationship(foreign_keys=[deployed_version_id],
                                                                     lazy="joined")
    updated_by: Mapped[User] = relationship(foreign_keys=[updated_by_id], lazy="joined")


from engine.models.registry import SubjectMember, SubjectRevision  # noqa: E402,F401  (subject registry)

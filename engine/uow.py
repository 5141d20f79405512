"""Unit of work: one session, the services bound to it, one commit at the edge."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine.access.directory import DirectoryService
from engine.access.policy import AccessPolicy
from engine.core import settings
from engine.core.errors import ConflictError
from engine.notices.pki import KeyStore
from engine.notices.service import NoticeService
from engine.operations.admin import AdminService
from engine.operations.batch import BatchApproval
from engine.operations.service import OperationsService
from engine.procedures.definitions import DefinitionService
from engine.queries.inbox import InboxQueries
from engine.queries.ledger import Ledger
from engine.queries.overview import CaseOverview
from engine.queries.reports import ReportService
from engine.registry.batch_starts import BatchStarts
from engine.registry.excel import RegistryExcel
from engine.registry.service import RegistryService
from engine.registry.staffing import StaffingService
from engine.registry.starts import StartService
from engine.registry.users import UserAdminService
from engine.runtime.cases import CaseService
from engine.runtime.signatures import SignatureService
from engine.studio.service import StudioService


class Services:
    """Every service bound to one session and clock, built the same way for web, CLI, workers, tests and bench.

    This is the one place that constructs services; nobody else calls their constructors. The notice and
    studio services are built when first asked for (most units of work never need them).
    """

    def __init__(self, session: Session, clock, storage_dir: Path, base_url: str | None = None,
                 keys_passphrase: bytes | None = None):
        self.session = session
        self.clock = clock
        self.storage_dir = storage_dir
        self.base_url = base_url
        self.keys_passphrase = keys_passphrase
        self.access = AccessPolicy(session)
        self.definitions = DefinitionService(session, clock)
        self.cases = CaseService(session, clock, self.definitions, access=self.access)
        self.directory = DirectoryService(session)
        self.inbox = InboxQueries(session)
        self.ledger = Ledger(session, self.definitions, self.inbox)
        self.overview = CaseOverview(session, self.definitions)
        self.notifications = self.cases.notifications
        self.admin = AdminService(session, clock)
        self.reports = ReportService(session, clock)
        self.operations = OperationsService(session, clock, self.cases, storage_dir)
        self.signatures = SignatureService(session, clock, self.cases, self.operations)
        self.batch = BatchApproval(session, self.cases, self.access)
        self.registry = RegistryService(session, clock)
        self.registry_excel = RegistryExcel(self.registry)
        self.staffing = StaffingService(session, self.access, self.notifications, self.definitions)
        self.users = UserAdminService(session, clock, self.directory, self.access, self.staffing)
        self.starts = StartService(session, self.definitions, self.cases, self.registry)
        self.batch_starts = BatchStarts(session, clock, self.starts, self.registry)

    @cached_property
    def keys(self) -> KeyStore:
        """Office keys and certificates (notice signing)."""
        return KeyStore(self.session, self.clock, self.keys_passphrase)

    @cached_property
    def notices(self) -> NoticeService:
        """公示/公告: issue, render, sign, verify, batches — on this unit's cases service (the issuance step)."""
        return NoticeService(self.session, self.clock, self.keys, base_url=self.base_url, cases=self.cases)

    @cached_property
    def studio(self) -> StudioService:
        return StudioService(self.session, self.clock, self.definitions, self.cases)

    def with_clock(self, clock) -> Services:
        """The same graph on this session under another clock (demo data run nine days in the past)."""
        return Services(self.session, clock, self.storage_dir, self.base_url, self.keys_passphrase)


class UnitOfWork(Services):
    """``with UnitOfWork(factory, clock) as work:`` commits on success, rolls back on error."""

    def __init__(self, session_factory: sessionmaker, clock, storage_dir: Path | None = None,
                 base_url: str | None = None, keys_passphrase: bytes | None = None):
        self.session_factory = session_factory
        self.clock = clock
        self.storage_dir = storage_dir or settings.STORAGE_DIR
        self.base_url = base_url
        self.keys_passphrase = keys_passphrase

    def __enter__(self) -> UnitOfWork:
        for lazy in ("keys", "notices", "studio"):  # built on first use, per session
            self.__dict__.pop(lazy, None)
        Services.__init__(self, self.session_factory(), self.clock, self.storage_dir, self.base_url,
                          self.keys_passphrase)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    self.session.commit()
                except OperationalError as commit_exc:
                    self.session.rollback()
                    if _is_contention(commit_exc):
                        raise ConflictError("案件正被他人处理,请刷新后重试") from commit_exc
                    raise
            else:
                self.session.rollback()
                if isinstance(exc, OperationalError) and _is_contention(exc):
                    raise ConflictError("案件正被他人处理,请刷新后重试") from exc
        finally:
            self.session.close()


def _is_contention(exc: OperationalError) -> bool:
    """A write lost to a concurrent writer (SQLite busy/locked, PostgreSQL serialization/deadlock)."""
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(word in text for word in ("database is locked", "database is busy", "could not serialize",
                                          "deadlock detected", "lock not available"))

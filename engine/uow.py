"""Unit of work: one session, the services bound to it, one commit at the edge."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from engine.access.directory import DirectoryService
from engine.access.policy import AccessPolicy
from engine.core import settings
from engine.core.errors import ConflictError
from engine.operations.admin import AdminService
from engine.operations.service import OperationsService
from engine.procedures.definitions import DefinitionService
from engine.queries.inbox import InboxQueries
from engine.queries.reports import ReportService
from engine.registry.service import RegistryService
from engine.runtime.cases import CaseService
from engine.runtime.signatures import SignatureService


class UnitOfWork:
    """``with UnitOfWork(factory, clock) as work:`` commits on success, rolls back on error."""

    def __init__(self, session_factory: sessionmaker, clock, storage_dir: Path | None = None):
        self.session_factory = session_factory
        self.clock = clock
        self.storage_dir = storage_dir or settings.STORAGE_DIR

    def __enter__(self) -> UnitOfWork:
        self.session = self.session_factory()
        self.access = AccessPolicy(self.session)
        self.definitions = DefinitionService(self.session, self.clock)
        self.cases = CaseService(self.session, self.clock, self.definitions, access=self.access)
        self.directory = DirectoryService(self.session)
        self.inbox = InboxQueries(self.session)
        self.notifications = self.cases.notifications
        self.admin = AdminService(self.session, self.clock)
        self.reports = ReportService(self.session, self.clock)
        self.operations = OperationsService(self.session, self.clock, self.cases, self.storage_dir)
        self.signatures = SignatureService(self.session, self.clock, self.cases, self.operations)
        self.registry = RegistryService(self.session, self.clock)
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

"""Unit of work: one session, the services bound to it, one commit at the edge."""

from __future__ import annotations

from sqlalchemy.orm import sessionmaker

from engine.definitions import DefinitionService
from engine.directory import DirectoryService
from engine.queries import InboxQueries
from engine.runtime import CaseService


class UnitOfWork:
    """``with UnitOfWork(factory, clock) as work:`` commits on success, rolls back on error."""

    def __init__(self, session_factory: sessionmaker, clock):
        self.session_factory = session_factory
        self.clock = clock

    def __enter__(self) -> UnitOfWork:
        self.session = self.session_factory()
        self.definitions = DefinitionService(self.session, self.clock)
        self.cases = CaseService(self.session, self.clock, self.definitions)
        self.directory = DirectoryService(self.session)
        self.inbox = InboxQueries(self.session)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.session.commit()
            else:
                self.session.rollback()
        finally:
            self.session.close()

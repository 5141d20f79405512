"""The one writer of the append-only audit log (``audit_event``): who did what, when, on which case.

Every service records through ``AuditLog.record`` (or ``record_all`` for several events at once); nothing
else constructs ``AuditEvent`` rows. A row is written at once with a plain table INSERT built once (not
through the ORM's unit of work: cheaper, and a mutation's events go in one multi-row statement), inside
the caller's transaction, so an action's history and its effect land or fail together.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from engine.models import AuditEvent

AUDIT_TABLE = cast(Table, AuditEvent.__table__)
_INSERT = insert(AUDIT_TABLE)
COLUMNS = ("case_id", "task_id", "user_id", "action", "step", "opinion", "data_diff", "created_at", "client_addr")

MAX_ACTION = 40
MAX_STEP = 200


class _Clock(Protocol):
    def now(self) -> Any: ...


class _Row(Protocol):
    id: int
    title: str


class AuditLog:
    """``AuditLog(session, clock).record("approve", case_id=…, task=row, user_id=…, opinion=…)``."""

    def __init__(self, session: Session, clock: _Clock):
        self.session = session
        self.clock = clock

    def record(self, action: str, *, case_id: int | None = None, task: _Row | None = None,
               user_id: int | None = None, step: str | None = None, opinion: str | None = None,
               detail: dict[str, Any] | None = None, client_addr: str | None = None,
               at: Any = None) -> None:
        """Write one audit row; ``step`` defaults to the task row's title."""
        self.record_all([dict(action=action, case_id=case_id, task=task, user_id=user_id, step=step,
                              opinion=opinion, detail=detail, client_addr=client_addr, at=at)])

    def record_all(self, events: list[dict[str, Any]]) -> None:
        """Write several audit rows in one statement, in order; each a dict of ``record``'s arguments."""
        if events:
            self.session.execute(_INSERT, self.rows(events))

    def rows(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ``audit_event`` rows of events (``record_all``'s), for a statement that writes them with others
        (the pipeline's save on PostgreSQL); the column names are ``COLUMNS``."""
        now = None
        rows = []
        for event in events:
            task, step, at = event.get("task"), event.get("step"), event.get("at")
            title = step if step is not None else (task.title if task is not None else None)
            if at is None:
                now = now or self.clock.now()
                at = now
            rows.append({
                "case_id": event.get("case_id"),
                "task_id": task.id if task is not None else None,
                "user_id": event.get("user_id"),
                "action": event["action"][:MAX_ACTION],
                "step": (title or "")[:MAX_STEP] or None,
                "opinion": event.get("opinion"),
                "data_diff": event.get("detail"),
                "created_at": at,
                "client_addr": event.get("client_addr"),
            })
        return rows

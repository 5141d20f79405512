"""The one writer of the append-only audit log (``audit_event``): who did what, when, on which case.

Every service records through ``AuditLog.record``; nothing else constructs ``AuditEvent`` rows. Rows are
added to the session and written with the caller's transaction (no flush of their own: the unit of work's
commit writes them in one batch, so an action's history and its effect land or fail together).
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session

from engine.models import AuditEvent

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
               at: Any = None) -> AuditEvent:
        """Add one audit row; ``step`` defaults to the task row's title."""
        title = step if step is not None else (task.title if task is not None else None)
        event = AuditEvent(
            case_id=case_id,
            task_id=task.id if task is not None else None,
            user_id=user_id,
            action=action[:MAX_ACTION],
            step=(title or "")[:MAX_STEP] or None,
            opinion=opinion,
            data_diff=detail,
            created_at=at if at is not None else self.clock.now(),
            client_addr=client_addr,
        )
        self.session.add(event)
        return event

"""加签 co-signers deciding: a co-signer's agreement, and what happens when the last one has agreed.

A 前加签 (before-sign) hands the task back to its holder once every co-signer agreed; a 后加签
(after-sign) runs the task with the holder's decision held in the parent row's ``pending``. Adding
co-signers is an approval operation (engine/operations/service.py); deciding runs through the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.access.assignment import Actor
from engine.models import Case, TaskRow, TaskStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.runtime.notify import NotificationService
    from engine.runtime.pipeline import CasePipeline, Mutation


class CoSigning:
    """The 加签 part of CaseService."""

    session: Session
    pipeline: CasePipeline
    notifications: NotificationService
    _ready_task: Callable[..., Any]
    _approve: Callable[..., None]

    def _co_signer_approved(self, case: Case, row: TaskRow, actor: Actor, opinion: str,
                            client_addr: str | None,
                            sign: Callable[[Mutation, TaskRow], None] | None = None) -> Case:
        """A 加签 co-signer agrees. When the last one has: a before-sign hands the task back to its
        holder; an after-sign runs the task with the holder's decision kept in the parent's ``pending``."""
        session = self.session

        def act(m: Mutation) -> Case:
            if sign is not None:  # the co-signer's own signature, on their row (as ``complete_task``'s sign)
                sign(m, row)
            m.complete_row(row, by=actor.user_id, action="approve", opinion=opinion)
            m.record("sign_approve", task=row, user_id=actor.user_id, opinion=opinion,
                     detail={"sign_position": row.sign_position}, client_addr=client_addr)
            parent = session.get_one(TaskRow, row.parent_task_id)
            session.refresh(parent)
            others = session.scalar(select(TaskRow.id).where(
                TaskRow.parent_task_id == parent.id, TaskRow.status == TaskStatus.open).limit(1))
            if others is not None or parent.status != TaskStatus.waiting:
                return case  # the workflow is not touched: nothing to save
            if row.sign_position == "before":
                parent.status = TaskStatus.open
                session.flush()
                self.notifications.notify([parent.assignee_id], "task",
                                          f"加签人已全部同意:{parent.title}", case.title,
                                          case_id=case.id, task_id=parent.id)
                return case
            decision = (parent.pending or {}).get("decision") or {}
            task = self._ready_task(m.workflow, parent)
            self._approve(m, parent, task, decision.get("opinion", ""),
                          decision.get("data") or {})
            m.complete_row(parent, by=decision.get("by"), action="approve", expect=TaskStatus.waiting,
                           opinion=decision.get("opinion", ""), data=decision.get("data") or {})
            # the holder's approval takes effect now, in the holder's name
            m.record("approve", task=parent, user_id=decision.get("by"), opinion=decision.get("opinion") or None,
                     detail={"data": decision.get("data") or {}, "after_sign": True})
            return case

        return self.pipeline.run(case, act)

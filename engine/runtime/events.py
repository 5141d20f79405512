"""Events a user delivers to a running case (异议 during a public notice) and 撤回 (withdraw)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import SignalEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine.access.assignment import Actor
from engine.core.errors import ConflictError, ForbiddenError, ValidationError
from engine.models import Case, CaseStatus, TaskRow, TaskStatus
from engine.procedures.definitions import role_of_lane
from engine.runtime.projections import find_task, prune_event_manager

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.access.policy import AccessPolicy
    from engine.runtime.pipeline import CasePipeline, Mutation

MAX_REASON_LENGTH = 2000


def is_raisable(task) -> bool:
    """A catch event a user can deliver: signal or message (not timers, errors, escalations)."""
    event_def = getattr(task.task_spec, "event_definition", None)
    return isinstance(event_def, (SignalEventDefinition, MessageEventDefinition))


class CaseEvents:
    """The events and 撤回 part of CaseService."""

    session: Session
    pipeline: CasePipeline
    access: AccessPolicy
    get_case: Callable[[int, Actor], Case]

    # ------------------------------------------------------------------ events (异议 etc.)
    def waiting_events(self, case: Case, actor: Actor) -> list[dict[str, Any]]:
        """Signal/message events the case waits for, e.g. an objection during a public notice.

        Each entry: ``event_id``, ``name``, ``role`` and whether the actor may raise it.
        """
        if case.finished_at is not None or case.status in (CaseStatus.rejected, CaseStatus.withdrawn):
            return []
        pipeline = self.pipeline
        with pipeline.reading(case) as workflow:
            waiting = [t.task_spec for t in workflow.get_tasks(state=TaskState.WAITING) if is_raisable(t)]
        events = []
        for spec in waiting:
            role = role_of_lane(spec.lane)
            events.append({
                "event_id": spec.bpmn_id,
                "name": spec.bpmn_name or spec.bpmn_id,
                "role": role,
                "can_raise": self.access.may_raise_event(role, case, actor),
            })
        return events

    def raise_event(self, case_id: int, event_id: str, actor: Actor, opinion: str | None,
                    client_addr: str | None = None) -> Case:
        """Deliver a waiting signal/message event (e.g. 公示异议) to a case, with a required reason.

        :raises NotFoundError: no such case or outside jurisdiction.
        :raises ConflictError: the case no longer waits for that event.
        :raises ForbiddenError: the actor does not hold the event lane's role for the case.
        :raises ValidationError: no reason given.
        """
        self.get_case(case_id, actor)
        opinion = (opinion or "").strip()
        if not opinion:
            raise ValidationError("请填写事由", {"opinion": "必须填写事由"})
        if len(opinion) > MAX_REASON_LENGTH:
            raise ValidationError("事由过长", {"opinion": f"不能超过 {MAX_REASON_LENGTH} 字"})
        pipeline = self.pipeline

        def act(m: Mutation) -> Case:
            # a period that has already run out ends first: an objection after it is too late,
            # even if no worker has fired the timer yet
            m.advance()
            task = next((t for t in m.workflow.get_tasks(state=TaskState.WAITING)
                         if is_raisable(t) and t.task_spec.bpmn_id == event_id), None)
            if task is None:
                raise ConflictError("案件当前不等待该事件(公示期可能已满)")
            if not self.access.may_raise_event(role_of_lane(task.task_spec.lane), m.case, actor):
                raise ForbiddenError("您无权提出此事项")
            task.data["last_event_reason"] = opinion  # inherited by the path the event opens
            m.workflow.catch(BpmnEvent(task.task_spec.event_definition, {"reason": opinion}))
            m.record("event", user_id=actor.user_id, opinion=opinion,
                     detail={"event": task.task_spec.bpmn_name or event_id}, client_addr=client_addr)
            return m.case

        return pipeline.mutate(case_id, act)

    # ------------------------------------------------------------------ withdraw (撤回)
    def withdrawable(self, case_id: int, actor: Actor) -> TaskRow | None:
        """The actor's last approved step on the case, if nothing has been done on the case since."""
        session = self.session
        rows = session.scalars(select(TaskRow).where(TaskRow.case_id == case_id).order_by(TaskRow.id)).all()
        acted = [r for r in rows if r.status == TaskStatus.completed]
        if not acted or acted[-1].completed_by_id != actor.user_id or acted[-1].action != "approve":
            return None
        if acted[-1].parent_task_id is not None or any(r.status == TaskStatus.waiting for r in rows):
            return None  # a 加签 agreement is not withdrawn; a step waiting on co-signers has been acted on
        last = acted[-1]
        if last.instance_group is not None:
            return None  # a 会签 vote is not withdrawn: the step's tallies have counted it
        if any(r.status == TaskStatus.open and r.spiff_task_id == last.spiff_task_id for r in rows):
            return None  # already withdrawn: the step is open again
        case = session.get_one(Case, case_id)
        if case.status != CaseStatus.running:
            return None
        return last

    def withdraw(self, case_id: int, actor: Actor, opinion: str | None, client_addr: str | None = None) -> Case:
        """撤回: take back one's last approved step while the next step has not been acted on.

        :raises ConflictError: the next step was already acted on (or nothing to withdraw).
        :raises ValidationError: no reason given.
        """
        self.get_case(case_id, actor)
        pipeline = self.pipeline
        case = pipeline.lock(case_id)
        row = self.withdrawable(case_id, actor)
        if row is None:
            raise ConflictError("无法撤回:下一步已办理,或您没有可撤回的步骤")
        reason = (opinion or "").strip()  # taking back a decision says why, like 退回 and 不通过
        if not reason:
            raise ValidationError("请填写撤回原因", {"opinion": "撤回时必须填写原因"})
        if len(reason) > MAX_REASON_LENGTH:
            raise ValidationError("撤回原因过长", {"opinion": f"不能超过 {MAX_REASON_LENGTH} 字"})

        def act(m: Mutation) -> Case:
            task = find_task(m.workflow, row.spiff_task_id)
            if task is None or task.state != TaskState.COMPLETED:
                raise ConflictError("无法撤回:流程已前进")
            m.workflow.reset_from_task_id(task.id)
            prune_event_manager(m.workflow)
            # the taken-back approval no longer counts: not in the case data, 已办 shows it as 撤回
            row.action = "withdraw"
            m.record("withdraw", task=row, user_id=actor.user_id, opinion=reason,
                     client_addr=client_addr)
            return case

        return pipeline.run(case, act)

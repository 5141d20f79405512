"""批量审批: approve several tasks of a step that allows it (``batchApproval="true"``) with one opinion.

Each task is its own completion through ``CaseService.complete_task`` — the same checks, the same pipeline
and its own audit row — inside a savepoint, so one task that fails (taken meanwhile, bad data for that case,
a missing signature) is reported and leaves nothing half-done while the others go through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from engine.access.assignment import Actor
from engine.access.policy import AccessPolicy
from engine.core.errors import CaseExecutionError, ConflictError, ForbiddenError, NotFoundError, ValidationError
from engine.models import TaskRow
from engine.procedures.step_rules import step_spec
from engine.procedures.steps import properties_of
from engine.runtime.cases import CaseService

MAX_BATCH = 50
NOT_ALLOWED = "此步骤不允许批量审批"


@dataclass(frozen=True)
class BatchOutcome:
    task_id: int
    step: str
    case_id: int | None
    case_title: str
    ok: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "step": self.step, "case_id": self.case_id, "case_title": self.case_title,
                "ok": self.ok, "message": self.message}


class BatchApproval:
    def __init__(self, session: Session, cases: CaseService, access: AccessPolicy):
        self.session = session
        self.cases = cases
        self.access = access
        self._allowed: dict[tuple[int, str], bool] = {}

    def allows(self, row: TaskRow) -> bool:
        """Whether the row's step allows 批量审批 (its ``batchApproval`` property); one spec lookup per step
        and version for this unit of work (the inbox asks for every row of a page)."""
        key = (row.case.procedure_version_id, row.spec_name)
        if key not in self._allowed:
            spec = step_spec(self.cases.definitions, row.case.version, row.spec_name)
            self._allowed[key] = properties_of(spec).batch_approval
        return self._allowed[key]

    def eligible(self, rows: list[TaskRow], actor: Actor) -> set[int]:
        """Ids of the rows the actor may approve now in a batch (the step allows it, the task is theirs to act on)."""
        found = set()
        for row in rows:
            if row.instance_group is not None or row.parent_task_id is not None or not self.allows(row):
                continue  # a 会签 vote or a 加签 agreement is one person's own, never batched
            try:
                self.access.check_may_complete(row, actor, "approve")
            except (ConflictError, ForbiddenError):
                continue
            found.add(row.id)
        return found

    def selection(self, task_ids: list[int], actor: Actor, strict: bool = True) -> list[TaskRow]:
        """The selected tasks, checked: at most MAX_BATCH, all of one step, and (strict, for the page that
        shows the selection) each one the actor may batch-approve now. When approving, a task taken or
        finished since the page was shown is reported in its own outcome instead.

        :raises ValidationError: nothing selected, too many, mixed steps, or a task that may not be batched.
        :raises NotFoundError: a task the actor may not see.
        """
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            raise ValidationError("请选择要批量审批的任务", {"task_ids": "请至少选择一项任务"})
        if len(ids) > MAX_BATCH:
            raise ValidationError("选择的任务过多", {"task_ids": f"一次最多批量审批 {MAX_BATCH} 项"})
        loaded = self._load(ids)  # held until the checks are done: the identity map keeps only weak references
        rows = [self.access.task_of(task_id, actor) for task_id in ids]
        del loaded
        if len({(r.spec_name, r.form_key) for r in rows}) > 1:
            raise ValidationError("请选择同一步骤的任务", {"task_ids": "批量审批的任务必须是同一步骤(同一表单)"})
        refused = [r for r in rows if r.id not in self.eligible(rows, actor)] if strict else []
        if refused:
            raise ValidationError(NOT_ALLOWED, {"task_ids": f"「{refused[0].title}」({refused[0].case_title or refused[0].case.title})不能批量审批"})
        return rows

    def _load(self, ids: list[int]) -> list[TaskRow]:
        """The selected rows with their cases and versions in two statements, into the session's identity
        map, where the access check's per-id lookup and ``allows`` then find them (not 2-3 queries per task)."""
        return list(self.session.scalars(select(TaskRow).where(TaskRow.id.in_(ids))
                             .options(selectinload(TaskRow.case))))  # Case.version is joined to it

    def approve(self, task_ids: list[int], actor: Actor, opinion: str | None, data: dict[str, Any] | None,
                client_addr: str | None = None) -> list[BatchOutcome]:
        """Approve each selected task with the same opinion and form data; one outcome per task, in order.

        :raises ValidationError / NotFoundError: the selection itself is not acceptable (nothing is done).
        """
        rows = self.selection(task_ids, actor, strict=False)
        outcomes = []
        for row in rows:
            step, case_id, case_title = row.title, row.case_id, row.case_title or row.case.title
            if not self.allows(row) or row.instance_group is not None or row.parent_task_id is not None:
                outcomes.append(BatchOutcome(row.id, step, case_id, case_title, False, NOT_ALLOWED))
                continue
            try:
                with self.session.begin_nested():
                    self.cases.complete_task(row.id, actor, "approve", opinion, dict(data or {}), client_addr=client_addr)
            except ValidationError as exc:
                message = ";".join(exc.errors.values()) or str(exc)
                outcomes.append(BatchOutcome(row.id, step, case_id, case_title, False, message))
                continue
            except (ConflictError, ForbiddenError, NotFoundError, CaseExecutionError) as exc:
                outcomes.append(BatchOutcome(row.id, step, case_id, case_title, False, str(exc)))
                continue
            outcomes.append(BatchOutcome(row.id, step, case_id, case_title, True, "已通过"))
        return outcomes

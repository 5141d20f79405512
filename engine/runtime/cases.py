"""Case runtime: start cases and complete their tasks (approve, reject, return, 会签 votes, issuance).

Every change runs through the mutation pipeline (engine/runtime/pipeline.py): lock the case → load →
act → run engine steps → save → project task and timer rows → audit, inside the caller's transaction.
The caller (a unit of work) commits once at the edge. 加签 lives in engine/runtime/cosign.py, events
and 撤回 in engine/runtime/events.py, timers in engine/runtime/timers.py; ``CaseService`` gathers them.

Approve completes the user task and lets the diagram decide what follows. Reject and
return are operations on the case, not diagram paths: reject cancels the case as 未通过
with the reason; return resets the workflow to an earlier user step on the case's path
(SpiffWorkflow's reset keeps the task tree shallow, so a case returned hundreds of times
keeps working; a modelled loop would deepen the tree each round, SpiffWorkflow issue 441).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date, timedelta
from typing import Any, cast

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor, procedure_serves
from engine.access.policy import AccessPolicy
from engine.core import workcalendar
from engine.core.errors import (
    CaseExecutionError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from engine.core.glossary import ACTION_LABELS
from engine.models import (
    Case,
    CaseStatus,
    Region,
    RegionLevel,
    Subject,
    TaskRow,
    TaskStatus,
    TimerRow,
    TimerStatus,
)
from engine.procedures import form_rules, forms
from engine.procedures.checks.rules import is_reserved_data_key
from engine.procedures.definitions import DefinitionService, role_of_lane
from engine.procedures.expressions import CHINA_TZ, failure_message
from engine.procedures.step_rules import missing_opinion_message, step_properties, step_spec
from engine.procedures.steps import ISSUE_ACTION, properties_of
from engine.runtime import countersign, guard, returns
from engine.runtime.case_data import case_form_data, merged_data
from engine.runtime.cosign import CoSigning
from engine.runtime.events import CaseEvents
from engine.runtime.notice_rule import require_notice
from engine.runtime.notify import NotificationService
from engine.runtime.pipeline import CasePipeline, Mutation
from engine.runtime.projections import find_task, prune_event_manager
from engine.runtime.signatures import require_signature
from engine.runtime.timers import MAX_TIMER_ATTEMPTS, TIMER_BACKOFF, TIMER_LEASE, TimerFiring

MAX_OPINION_LENGTH = 2000
ISSUE_ELSEWHERE = "请在“公示公告”页面出具公示,出具后本步骤自动完成"

__all__ = ["CaseService", "ISSUE_ACTION", "MAX_TIMER_ATTEMPTS", "TIMER_BACKOFF", "checked_opinion"]

def checked_opinion(opinion: str | None, required: str | None = None) -> str:
    """An opinion (审批意见) stripped and length-checked; required names why it may not be empty.

    :raises ValidationError: too long, or empty when required.
    """
    opinion = (opinion or "").strip()
    if len(opinion) > MAX_OPINION_LENGTH:
        raise ValidationError("审批意见过长", {"opinion": f"不能超过 {MAX_OPINION_LENGTH} 字"})
    if required and not opinion:
        raise ValidationError("请填写意见", {"opinion": required})
    return opinion


class CaseService(CoSigning, CaseEvents, TimerFiring):
    """Runs cases. Takes its session and clock; never commits."""

    def __init__(self, session: Session, clock, definitions: DefinitionService | None = None,
                 timer_lease: timedelta = TIMER_LEASE, access: AccessPolicy | None = None):
        self.session = session
        self.clock = clock
        self.access = access or AccessPolicy(session)
        self.definitions = definitions or DefinitionService(session, clock)
        self.timer_lease = timer_lease
        self.notifications = NotificationService(session, clock, self.access)
        self.pipeline = CasePipeline(session, clock, self.definitions, self.notifications)

    @property
    def calendar(self) -> workcalendar.WorkCalendar:
        return self.pipeline.calendar

    @property
    def role_levels(self) -> Mapping[str, RegionLevel]:
        return self.pipeline.role_levels

    def role_members_at(self, role_code: str, region_code: str) -> list[str]:
        """Usernames of the active holders of role_code in the jurisdiction of a case in region_code (会签)."""
        return self.pipeline.role_members_at(role_code, region_code)

    # ------------------------------------------------------------------ lookups
    # access rules live in engine/access/policy.py; these are the names callers use
    def get_case(self, case_id: int, actor: Actor) -> Case:
        """:raises NotFoundError: as ``AccessPolicy.visible_case``."""
        return self.access.visible_case(case_id, actor)

    def get_task(self, task_id: int, actor: Actor) -> TaskRow:
        """:raises NotFoundError: as ``AccessPolicy.task_of``."""
        return self.access.task_of(task_id, actor)

    def task_form(self, row: TaskRow) -> tuple[dict[str, Any], dict[str, Any]]:
        """The form-js schema of a task and the data to prefill it with (no deserialization)."""
        schema = self.definitions.form_schema(self._case_of(row).version, row.form_key)
        tasks = self.session.scalars(select(TaskRow).where(TaskRow.case_id == row.case_id).order_by(TaskRow.id)).all()
        data = merged_data(list(tasks))
        taken_back = [t for t in tasks if t.action == "withdraw" and t.spiff_task_id == row.spiff_task_id and t.id < row.id]
        if taken_back and row.status == TaskStatus.open:  # 撤回 reopened this step: start from what was submitted
            data.update(taken_back[-1].data or {})
        if row.pending and row.pending.get("draft"):  # what the delegate (委派) filled in, for the owner to confirm
            data.update(row.pending["draft"].get("data") or {})
        components = forms.input_components(schema)
        # fields that state the subject start from the registry
        data = {**form_rules.subject_prefill(components, self._subject_identity(row)), **data}
        keys = {c["key"] for c in components}
        return schema, {k: v for k, v in data.items() if k in keys}

    def form_bounds(self, row: TaskRow, schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The bounds the task's form takes from the workflow data (核定补助 for 兑付金额), as the page shows them."""
        components = forms.input_components(schema)
        if not form_rules.upper_bounds(components) or row.status not in (TaskStatus.open, TaskStatus.waiting):
            return {}
        with self.pipeline.reading(self._case_of(row)) as workflow:
            task = find_task(workflow, row.spiff_task_id)
            return form_rules.bound_values(components, task.data) if task is not None else {}

    def form_dates(self, row: TaskRow, schema: dict[str, Any]) -> dict[str, dict[str, str]]:
        """Per date field of the task's form, the ``min``/``max`` its input gets (today, the case's start)."""
        return form_rules.date_limits(forms.input_components(schema), self.clock.now().astimezone(CHINA_TZ).date(),
                                      self._started_on(row))

    def _started_on(self, row: TaskRow) -> date:
        """The day (China time) the row's case was started: ``notBefore: caseStart`` dates may not precede it."""
        return self._case_of(row).created_at.astimezone(CHINA_TZ).date()

    def decision_data(self, case: Case) -> dict[str, Any]:
        """Values the diagram computed (DMN results, scripts) that no form shows, for the case page."""
        form_keys = set(self.definitions.field_labels(case.version))
        with self.pipeline.reading(case) as workflow:
            last = workflow.last_task or workflow.task_tree
            return {k: v for k, v in sorted(last.data.items())
                    if not is_reserved_data_key(k) and k not in form_keys and not k.startswith("linked_")
                    and isinstance(v, (str, int, float, bool))}

    def step_properties(self, row: TaskRow) -> dict[str, str]:
        """The properties of the row's user step (``opinionRequired``, ``attachments`` …), from the version's spec."""
        return step_properties(self.definitions, self._case_of(row).version, row.spec_name)

    def _case_of(self, row: TaskRow) -> Case:
        """The row's case from this session (no query if already loaded; works for a row of another session)."""
        return self.session.get_one(Case, row.case_id)

    # ------------------------------------------------------------------ start
    def start_case(self, procedure_code: str, subject_id: int, actor: Actor,
                   data: dict[str, Any] | None = None, client_addr: str | None = None) -> Case:
        """Start a case of the newest version of a procedure for a subject.

        :raises NotFoundError: unknown procedure or subject, or a subject outside jurisdiction.
        :raises ValidationError: the subject is of another kind than the procedure takes, or deactivated.
        :raises ForbiddenError: the actor does not hold the starting lane's role there, or the procedure
            belongs to another region (``procedure_serves``).
        :raises DuplicateCaseError: the procedure allows one running case per subject and one runs
            (engine/runtime/guard.py).
        :raises CaseExecutionError: the diagram could not run to its first wait state.
        """
        version = self.definitions.latest(procedure_code)
        subject = self.session.get(Subject, subject_id)
        if subject is None or not actor.covers(subject.region_code):
            raise NotFoundError("对象不存在")
        self._require_served(version, subject.region_code)
        manifest = self.definitions.manifest(version)
        if subject.kind != manifest.get("subject_kind", "household"):
            raise ValidationError("对象类型不符", {"subject": "此流程不适用于该对象"})
        if not subject.is_active:
            raise ValidationError("该对象已停用", {"subject": f"{subject.name}已停用,不能发起流程"})
        spec, _subprocess_specs = self.definitions.specs(version)
        start_role = role_of_lane(spec.start.outputs[0].lane) if spec.start.outputs else None
        start_role = start_role or manifest.get("starter_role")
        level = self.role_levels.get(start_role or "")
        if start_role is None or level is None or not actor.may_start(start_role, subject.region_code, level):
            raise ForbiddenError("您没有在该地区发起此流程的权限")
        guard.check_no_running_case(self.session, manifest, version, subject)

        def recorded(m: Mutation) -> None:
            m.record("start", user_id=actor.user_id, detail={"data": data or {}}, client_addr=client_addr)

        return self.pipeline.create(version, subject, actor.user_id, _checked_start_data(data), act=recorded)

    def _require_served(self, version, region_code: str) -> None:
        """:raises ForbiddenError: the procedure is owned by a region that does not contain region_code."""
        owner = version.procedure.owner_region_code
        if not procedure_serves(owner, region_code):
            region = self.session.get(Region, owner)
            raise ForbiddenError(f"流程「{version.procedure.name}」是{region.name if region else owner}制定的流程,"
                                 "只能在该地区发起案件")

    # ------------------------------------------------------------------ complete
    def complete_task(self, task_id: int, actor: Actor, action: str, opinion: str | None,
                      data: dict[str, Any] | None, client_addr: str | None = None,
                      return_to: str | None = None,
                      sign: Callable[[Mutation, TaskRow], None] | None = None) -> Case:
        """Complete a user task with approve, reject or return.

        ``sign(m, row)`` runs first in the mutation, e.g. to store the step's signature with the decision
        (``SignatureService.complete_signed``); a required signature then counts as given.

        :raises NotFoundError: no such task or outside jurisdiction.
        :raises ForbiddenError: the actor sees the task but may not act on it.
        :raises ConflictError: the task was already completed or the case changed meanwhile.
        :raises ValidationError: bad action, missing opinion or bad form data.
        :raises CaseExecutionError: the workflow could not advance; nothing is saved.
        """
        case, _ = self.pipeline.lock_task(task_id)  # the row read fresh under the case lock, in one statement
        row = self.get_task(task_id, actor)
        self.check_may_complete(row, actor, action)

        allowed = row.actions.split(",")
        if ISSUE_ACTION in allowed:
            raise ValidationError(ISSUE_ELSEWHERE, {"action": ISSUE_ELSEWHERE})
        if action not in allowed:
            raise ValidationError("不允许的操作", {"action": f"此步骤只允许: {'、'.join(ACTION_LABELS.get(a, a) for a in allowed)}"})
        opinion = checked_opinion(opinion, missing_opinion_message(self.step_properties(row), action))
        if row.parent_task_id is not None and action == "approve":  # a 加签 co-signer agrees: no form data
            return self._co_signer_approved(case, row, actor, opinion, client_addr, sign)

        cleaned = self.validated_data(row, data) if action == "approve" else {}

        def act(m: Mutation) -> Case:
            task = self._ready_task(m.workflow, row)
            if sign is not None:
                sign(m, row)
            if action == "approve":
                self._approve(m, row, task, opinion, cleaned, signed=sign is not None)
            elif action == "reject" and countersign.instance_parent(task) is not None:
                # 会签/或签: 不同意 is this signer's vote; the step's completionCondition decides
                self._approve(m, row, task, opinion, cleaned, decision="reject")
            elif action == "reject":
                m.workflow.cancel()
                m.settled()
                case.status = CaseStatus.rejected
                case.outcome_reason = opinion
                case.finished_at = self.clock.now()
                self.notifications.notify([case.started_by_id], "outcome", f"未通过:{case.title}",
                                          f"{row.title}:{opinion}", case_id=case.id)
            else:
                target = self._return_target(m.workflow, task, return_to)
                returns.reset_to(m.workflow, target)
                prune_event_manager(m.workflow)
                for node in [target.task, *countersign.instances(target.task)]:  # a 会签 target: each new instance too
                    node.data["return_reason"] = opinion
                    node.data["returned_from"] = row.title
                case.return_count += 1
            # open, or waiting on its co-signers; the UPDATE goes with the save (nothing here reads task rows after it)
            m.complete_row(row, by=actor.user_id, action=action, expect=row.status, opinion=opinion, data=cleaned,
                           at_save=True)
            vote = action == "reject" and row.instance_group is not None  # a 会签 不同意 is a vote, not 不通过
            m.record("vote_reject" if vote else action, task=row, user_id=actor.user_id, opinion=opinion,
                     detail={"data": cleaned} if cleaned else None, client_addr=client_addr)
            return case

        return self.pipeline.run(case, act)

    def _subject_identity(self, row: TaskRow) -> dict[str, Any]:
        """The registered name and ID number of the row's case subject (form_rules prefill and check)."""
        subject = self._case_of(row).subject
        return {"name": subject.name, "id_number": subject.id_number}

    def validated_data(self, row: TaskRow, data: dict[str, Any] | None) -> dict[str, Any]:
        """The task's form data checked against its form and the case's earlier steps.

        :raises ValidationError: a field is missing or invalid.
        """
        schema = self.definitions.form_schema(self._case_of(row).version, row.form_key)
        earlier = _Earlier(lambda: case_form_data(self.session, row.case_id))
        cleaned = forms.validate(schema, data or {}, cast(dict[str, Any], earlier), self._subject_identity(row),
                                 today=self.clock.now().astimezone(CHINA_TZ).date(), started=self._started_on(row))
        self._check_signers(self._case_of(row), cleaned)
        return cleaned

    def _check_signers(self, case: Case, cleaned: dict[str, Any]) -> None:
        """Refuse form data naming 会签 signers who do not hold the signing step's role for the case.

        :raises ValidationError: a field feeding a multi-instance step's signers is not acceptable.
        """
        if not cleaned:
            return
        spec, subprocess_specs = self.definitions.specs(case.version)
        errors = {}
        for key, step in countersign.signer_inputs([spec, *subprocess_specs.values()]).items():
            if key in cleaned:
                members = self.role_members_at(role_of_lane(step.lane) or "", case.region_code)
                problem = countersign.signer_problem(cleaned[key], members)
                if problem:
                    errors[key] = problem
        if errors:
            raise ValidationError("会签人员无效", errors)

    def _approve(self, m: Mutation, row: TaskRow, task, opinion: str, cleaned: dict[str, Any],
                 decision: str = "approve", signed: bool = False) -> None:
        """Run the user task with its validated data; the pipeline lets the diagram decide what follows."""
        require_signature(self.session, row, task.task_spec, signed)
        require_notice(self.session, self._case_of(row), task.task_spec)  # e.g. 退出告知 needs its 退出告知书
        if cleaned:  # a bound from the workflow data (补助兑付 ≤ 核定补助): only the act sees that data
            components = forms.input_components(self.definitions.form_schema(self._case_of(row).version, row.form_key))
            problems = form_rules.bound_problems(components, cleaned, task.data)
            if problems:
                raise ValidationError("表单填写有误", problems)
        task.data.update(cleaned)
        task.data["decision"] = decision
        task.data["last_opinion"] = opinion
        if countersign.instance_parent(task) is not None:
            countersign.record_vote(task, decision, opinion)
        task.data.setdefault("opinions", {})
        task.data["opinions"] = {**task.data["opinions"], row.spec_name: opinion}
        try:
            task.run()
        except Exception as exc:  # any failure of the diagram's own logic
            raise CaseExecutionError(f"流程无法继续: {failure_message(exc)}") from exc

    # ------------------------------------------------------------------ 委派 / 加签: who completes what
    def check_may_complete(self, row: TaskRow, actor: Actor, action: str) -> None:
        """:raises ConflictError, ForbiddenError: as ``AccessPolicy.check_may_complete``."""
        self.access.check_may_complete(row, actor, action)

    def check_signed(self, row: TaskRow) -> None:
        """Check the step's required signature before a decision is held for later (后加签).

        :raises ConflictError: the task is no longer ready.
        :raises ValidationError: the required signature is missing.
        """
        with self.pipeline.reading(self._case_of(row)) as workflow:
            spec = self._ready_task(workflow, row).task_spec
        require_signature(self.session, row, spec)

    # ------------------------------------------------------------------ issuance (出具公示/公告)
    def complete_issuance(self, case_id: int, notice_kind: str, actor: Actor,
                          serial: str) -> tuple[TaskRow, list[TimerRow]] | None:
        """Complete the case's open step that issues notice_kind (action issue, the serial in its data).

        Returns the completed row and the timers the step started (a 公示 period), or None when no
        such step is open. The caller (NoticeService.issue) has checked that actor may issue the
        notice, and records the issuance in the case history.
        """
        timers_before: set[int] = set()

        def act(m: Mutation) -> TaskRow | None:
            task = next((t for t in m.workflow.get_tasks(state=TaskState.READY, manual=True)
                         if properties_of(t.task_spec).notice_kind == notice_kind), None)
            row = None if task is None else self.session.scalar(select(TaskRow).where(
                TaskRow.case_id == m.case.id, TaskRow.spiff_task_id == str(task.id), TaskRow.status == TaskStatus.open))
            if task is None or row is None:
                m.keep()
                return None
            task.data["notice_serial"] = serial
            try:
                task.run()
            except Exception as exc:  # any failure of the diagram's own logic
                raise CaseExecutionError(f"流程无法继续: {failure_message(exc)}") from exc
            timers_before.update(self.session.scalars(select(TimerRow.id).where(TimerRow.case_id == m.case.id)))
            m.complete_row(row, by=actor.user_id, action=ISSUE_ACTION, data={"notice_serial": serial})
            return row

        row = self.pipeline.mutate(case_id, act)
        if row is None:
            return None
        started = self.session.scalars(select(TimerRow).where(
            TimerRow.case_id == case_id, TimerRow.status == TimerStatus.waiting,
            TimerRow.id.not_in(timers_before))).all()
        return row, list(started)

    def issuance_kind(self, row: TaskRow) -> str | None:
        """The notice kind an open task row is completed by issuing (its step's ``noticeKind``), if any."""
        if ISSUE_ACTION not in row.actions.split(","):
            return None
        return properties_of(step_spec(self.definitions, self._case_of(row).version, row.spec_name)).notice_kind

    # ------------------------------------------------------------------ 退回 targets
    def _ready_task(self, workflow: BpmnWorkflow, row: TaskRow):
        task = find_task(workflow, row.spiff_task_id)
        if task is None or task.state != TaskState.READY:
            raise ConflictError("该任务已不在待办状态")
        return task

    @staticmethod
    def _return_target(workflow: BpmnWorkflow, task, return_to: str | None) -> returns.ReturnTarget:
        """The user step to return to: the named earlier step, or the previous one on the path."""
        earlier = returns.earlier_user_steps(task)
        if not earlier:
            raise ValidationError("无法退回", {"return_to": "没有可退回的前序步骤"})
        if return_to is None:
            return earlier[0]
        for target in earlier:
            if target.task.task_spec.bpmn_id == return_to:
                return target
        raise ValidationError("无法退回", {"return_to": "只能退回到本案已经过的步骤"})

    def return_targets(self, row: TaskRow) -> list[tuple[str, str]]:
        """Earlier user steps (bpmn id, name) that a return from this open task may go back to."""
        if row.status not in (TaskStatus.open, TaskStatus.waiting) or "return" not in row.actions.split(","):
            return []
        seen: dict[str, str] = {}
        with self.pipeline.reading(self._case_of(row)) as workflow:
            task = find_task(workflow, row.spiff_task_id)
            for target in returns.earlier_user_steps(task) if task is not None else []:
                seen.setdefault(target.task.task_spec.bpmn_id, countersign.step_name(target.task.task_spec))
        return list(seen.items())


class _Earlier(Mapping[str, Any]):
    """The case's earlier form data, read from its task rows only if a form rule asks for it."""

    def __init__(self, load: Callable[[], dict[str, Any]]):
        self._load = load
        self._data: dict[str, Any] | None = None

    def _loaded(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._load()
        return self._data

    def __bool__(self) -> bool:  # forms.validate writes ``earlier or {}``: do not read for that
        return True

    def __getitem__(self, key: str) -> Any:
        return self._loaded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


def _checked_start_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """Start data from a caller: plain keys and scalar values only, no engine-reserved keys.

    :raises ValidationError: a key or value that is not allowed.
    """
    errors = {}
    for key, value in (data or {}).items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", key) or is_reserved_data_key(key):
            errors[str(key)[:64]] = "不允许的字段名"
        elif not isinstance(value, (str, int, float, bool)) or (isinstance(value, str) and len(value) > 4000):
            errors[key] = "字段值必须是不超过 4000 字的文本、数字或布尔值"
    if errors:
        raise ValidationError("发起数据无效", errors)
    return dict(data or {})

"""Case runtime: start cases, complete tasks, fire timers.

Every mutation has one shape, inside the caller's transaction:
lock the case → load → act → run engine steps → save state → sync task and timer rows →
audit event. The caller (a unit of work) commits once at the edge.

Approve completes the user task and lets the diagram decide what follows. Reject and
return are operations on the case, not diagram paths: reject cancels the case as 未通过
with the reason; return resets the workflow to an earlier user step on the case's path
(SpiffWorkflow's reset keeps the task tree shallow, so a case returned hundreds of times
keeps working; a modelled loop would deepen the tree each round, SpiffWorkflow issue 441).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.exceptions import SpiffWorkflowException, TaskNotFoundException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import inspect, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from engine.access.assignment import Actor, procedure_serves, scope_for
from engine.access.directory import RoleLevels
from engine.access.policy import AccessPolicy
from engine.core import clock as clock_mod
from engine.core import workcalendar
from engine.core.errors import (
    CaseExecutionError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnsafeExpressionError,
    ValidationError,
)
from engine.core.glossary import ACTION_LABELS
from engine.models import (
    AuditEvent,
    Case,
    CaseStatus,
    HolidayOverride,
    Region,
    RegionLevel,
    Subject,
    TaskRow,
    TaskStatus,
    TimerRow,
    TimerStatus,
    User,
    UserRole,
)
from engine.procedures import forms
from engine.procedures.definitions import DefinitionService, role_of_lane
from engine.procedures.expressions import CHINA_TZ, SCRIPT_ENGINE
from engine.procedures.serialization import SERIALIZER_VERSION, dump_state, load_state
from engine.procedures.step_rules import missing_opinion_message, step_properties, step_spec
from engine.procedures.step_rules import spec_properties as _props
from engine.runtime import countersign, returns
from engine.runtime.notify import NotificationService
from engine.runtime.signatures import require_signature

MAX_OPINION_LENGTH = 2000
MAX_TIMER_ATTEMPTS = 5
TIMER_BACKOFF = timedelta(minutes=1)
ISSUE_ACTION = "issue"
ISSUE_ELSEWHERE = "请在“公示公告”页面出具公示,出具后本步骤自动完成"


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


def task_actions(task_spec) -> list[str]:
    """The actions a user step allows, from its ``actions`` property (default approve).

    A step with a ``noticeKind`` property is an issuance step (出具公示/公告): its one action is
    ``issue``, taken by issuing that notice (engine/notices/service.py), never from the task page.
    """
    if _props(task_spec).get("noticeKind"):
        return [ISSUE_ACTION]
    raw = _props(task_spec).get("actions", "approve")
    return [a.strip() for a in raw.split(",") if a.strip()]


def _timer_due(task) -> datetime | None:
    value = task.internal_data.get("event_value")
    if value is None:
        return None
    if isinstance(value, dict):  # cycle timers
        value = value.get("next")
    return TimerEventDefinition.get_datetime(value)


def _find_task(workflow: BpmnWorkflow, spiff_id: str):
    """The task with that id in the workflow or its subprocesses, or None if a reset removed it."""
    try:
        return workflow.get_task_from_id(UUID(spiff_id))
    except TaskNotFoundException:
        return None


def _prune_event_manager(workflow: BpmnWorkflow) -> None:
    """Forget waiting events whose tasks a reset removed (SpiffWorkflow leaves them registered,
    and the next timer refresh would trip over them)."""
    live = dict(workflow.tasks)
    for sub in workflow.subprocesses.values():
        live.update(sub.tasks)
    for task_id, task in list(workflow.event_manager.tasks.items()):
        if live.get(task_id) is not task or task.has_state(TaskState.FINISHED_MASK):
            workflow.event_manager.tasks.pop(task_id, None)


def _completed_path(completed: list) -> list[str]:
    """BPMN ids of the diagram elements completed so far, in completion order (for the case diagram)."""
    done = [t for t in completed if getattr(t.task_spec, "bpmn_id", None)]
    done.sort(key=lambda t: t.last_state_change)
    seen: dict[str, None] = {}
    for task in done:
        seen.setdefault(task.task_spec.bpmn_id, None)
    return list(seen)


def _is_raisable(task) -> bool:
    """A catch event a user can deliver: signal or message (not timers, errors, escalations)."""
    from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import SignalEventDefinition
    from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition

    event_def = getattr(task.task_spec, "event_definition", None)
    return isinstance(event_def, (SignalEventDefinition, MessageEventDefinition))


def _is_timer(task) -> bool:
    event_def = getattr(task.task_spec, "event_definition", None)
    return isinstance(event_def, TimerEventDefinition)


class CaseService:
    """Runs cases. Takes its session and clock; never commits."""

    def __init__(self, session: Session, clock, definitions: DefinitionService | None = None,
                 timer_lease: timedelta = timedelta(minutes=5), access: AccessPolicy | None = None):
        self.session = session
        self.clock = clock
        self.access = access or AccessPolicy(session)
        self.definitions = definitions or DefinitionService(session, clock)
        self.timer_lease = timer_lease
        self._calendar: workcalendar.WorkCalendar | None = None
        self.notifications = NotificationService(session, clock)

    @contextlib.contextmanager
    def _context(self):
        """The clock and working-day calendar that SpiffWorkflow and expressions see.

        The calendar's overrides are read from the database only if an expression asks for a working day.
        """
        with clock_mod.using(self.clock), workcalendar.using(workcalendar.LazyCalendar(lambda: self.calendar)), \
                countersign.using(self.role_members_at):
            yield

    def role_members_at(self, role_code: str, region_code: str) -> list[str]:
        """Usernames of the active holders of role_code in the jurisdiction of a case in region_code (会签)."""
        level = self.role_levels.get(role_code)
        if level is None:
            raise ValueError(f"角色 {role_code!r} 不存在")
        return list(self.session.scalars(
            select(User.username).join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role_code == role_code, UserRole.region_code == scope_for(region_code, level),
                   User.is_active.is_(True)).order_by(User.username)))

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

    @property
    def calendar(self) -> workcalendar.WorkCalendar:
        if self._calendar is None:
            overrides = {o.day: o.is_workday for o in self.session.scalars(select(HolidayOverride))}
            self._calendar = workcalendar.WorkCalendar(overrides)
        return self._calendar

    def _due_at(self, due_in: str | None, now: datetime, day_kind: str) -> datetime | None:
        """A task's due time from its ``dueIn`` duration, in natural or working days."""
        if not due_in:
            return None
        parsed = TimerEventDefinition.parse_iso_duration(due_in)
        if day_kind == "working" and set(parsed) <= {"days"} and float(parsed.get("days", 0)).is_integer():
            local = now.astimezone(CHINA_TZ)
            day = self.calendar.add_workdays(local.date(), int(parsed["days"]))
            return datetime.combine(day, local.timetz())
        return now + TimerEventDefinition.get_timedelta_from_start(parsed, now)

    # ------------------------------------------------------------------ lookups
    @property
    def role_levels(self) -> Mapping[str, RegionLevel]:
        return RoleLevels(self.session)

    # access rules live in engine/access/policy.py; these are the names callers use
    def get_case(self, case_id: int, actor: Actor) -> Case:
        """:raises NotFoundError: as ``AccessPolicy.visible_case``."""
        return self.access.visible_case(case_id, actor)

    def get_task(self, task_id: int, actor: Actor) -> TaskRow:
        """:raises NotFoundError: as ``AccessPolicy.task_of``."""
        return self.access.task_of(task_id, actor)

    def task_form(self, row: TaskRow) -> tuple[dict[str, Any], dict[str, Any]]:
        """The form-js schema of a task and the data to prefill it with (no deserialization)."""
        from engine.queries.inbox import merged_data

        schema = self.definitions.form_schema(self._case_of(row).version, row.form_key)
        tasks = self.session.scalars(select(TaskRow).where(TaskRow.case_id == row.case_id).order_by(TaskRow.id)).all()
        data = merged_data(list(tasks))
        if row.pending and row.pending.get("draft"):  # what the delegate (委派) filled in, for the owner to confirm
            data.update(row.pending["draft"].get("data") or {})
        keys = {c["key"] for c in forms.input_components(schema)}
        return schema, {k: v for k, v in data.items() if k in keys}

    def decision_data(self, case: Case) -> dict[str, Any]:
        """Values the diagram computed (DMN results, scripts) that no form shows, for the case page."""
        with self._context():
            workflow = self._load(case)
        last = workflow.last_task or workflow.task_tree
        form_keys = set(self.definitions.field_labels(case.version))
        return {k: v for k, v in sorted(last.data.items())
                if k not in RESERVED_KEYS and k not in form_keys and not k.startswith(("subject_", "linked_"))
                and k not in ("last_event_reason",) and isinstance(v, (str, int, float, bool))}

    def step_properties(self, row: TaskRow) -> dict[str, str]:
        """The properties of the row's user step (``opinionRequired``, ``attachments`` …), from the version's spec."""
        return step_properties(self.definitions, self._case_of(row).version, row.spec_name)

    def _case_of(self, row: TaskRow) -> Case:
        """The row's case from this session (no query if already loaded; works for a row of another session)."""
        return self.session.get(Case, row.case_id)

    # ------------------------------------------------------------------ start
    def start_case(self, procedure_code: str, subject_id: int, actor: Actor,
                   data: dict[str, Any] | None = None, client_addr: str | None = None) -> Case:
        """Start a case of the newest version of a procedure for a subject.

        :raises NotFoundError: unknown procedure or subject, or a subject outside jurisdiction.
        :raises ForbiddenError: the actor does not hold the starting lane's role there, or the procedure
            belongs to another region (``procedure_serves``).
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
        spec, _subprocess_specs = self.definitions.specs(version)
        start_role = role_of_lane(spec.start.outputs[0].lane) if spec.start.outputs else None
        start_role = start_role or manifest.get("starter_role")
        level = self.role_levels.get(start_role or "")
        if level is None or not actor.may_start(start_role, subject.region_code, level):
            raise ForbiddenError("您没有在该地区发起此流程的权限")

        case = self._create_case(version, subject, actor.user_id, _checked_start_data(data))
        self._record(case, None, actor, "start", None, {"data": data or {}}, client_addr)
        return case

    def _require_served(self, version, region_code: str) -> None:
        """:raises ForbiddenError: the procedure is owned by a region that does not contain region_code."""
        owner = version.procedure.owner_region_code
        if not procedure_serves(owner, region_code):
            region = self.session.get(Region, owner)
            raise ForbiddenError(f"流程「{version.procedure.name}」是{region.name if region else owner}制定的流程,"
                                 "只能在该地区发起案件")

    def _create_case(self, version, subject: Subject, started_by_id: int, data: dict[str, Any],
                     parent: Case | None = None) -> Case:
        now = self.clock.now()
        manifest = self.definitions.manifest(version)
        spec, subprocess_specs = self.definitions.specs(version)
        region = self.session.get(Region, subject.region_code)
        case = Case(
            procedure_version_id=version.id,
            subject_id=subject.id,
            region_code=subject.region_code,
            title=f"{subject.name} · {version.procedure.name}",
            status=CaseStatus.running,
            state="{}",
            serializer_version=SERIALIZER_VERSION,
            lock_version=0,
            return_count=0,
            started_by_id=started_by_id,
            parent_case_id=parent.id if parent else None,
            created_at=now,
            updated_at=now,
        )
        self.session.add(case)
        self.session.flush()
        initial = {
            "case_id": case.id,
            "subject_name": subject.name,
            "subject_kind": subject.kind,
            "region_code": subject.region_code,
            "region_name": region.name if region else "",
            "settings": manifest.get("settings", {}),
            **{f"subject_{k}": v for k, v in (subject.attrs or {}).items()},
            **data,
        }
        with self._context():
            workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=SCRIPT_ENGINE)
            for task in workflow.get_tasks(state=TaskState.READY):
                task.data.update(initial)
            workflow._xf_completed_before = set()
            self._advance(workflow, case)
        self._save(case, workflow, expected_lock=None)
        return case

    # ------------------------------------------------------------------ complete
    def complete_task(self, task_id: int, actor: Actor, action: str, opinion: str | None,
                      data: dict[str, Any] | None, client_addr: str | None = None,
                      return_to: str | None = None) -> Case:
        """Complete a user task with approve, reject or return.

        :raises NotFoundError: no such task or outside jurisdiction.
        :raises ForbiddenError: the actor sees the task but may not act on it.
        :raises ConflictError: the task was already completed or the case changed meanwhile.
        :raises ValidationError: bad action, missing opinion or bad form data.
        :raises CaseExecutionError: the workflow could not advance; nothing is saved.
        """
        row = self.get_task(task_id, actor)
        self.check_may_complete(row, actor, action)
        case = self._lock_case(row.case_id)
        self.session.refresh(row)
        self.check_may_complete(row, actor, action)
        expected_lock = case.lock_version

        allowed = row.actions.split(",")
        if ISSUE_ACTION in allowed:
            raise ValidationError(ISSUE_ELSEWHERE, {"action": ISSUE_ELSEWHERE})
        if action not in allowed:
            raise ValidationError("不允许的操作", {"action": f"此步骤只允许: {'、'.join(ACTION_LABELS.get(a, a) for a in allowed)}"})
        opinion = checked_opinion(opinion, missing_opinion_message(self.step_properties(row), action))
        if row.parent_task_id is not None and action == "approve":  # a 加签 co-signer agrees: no form data
            return self._co_signer_approved(case, row, actor, opinion, expected_lock, client_addr)

        cleaned = self.validated_data(row, data) if action == "approve" else {}

        with self._context():
            workflow = self._load(case)
            task = self._ready_task(workflow, row)
            if action == "approve":
                self._approve(workflow, case, row, task, opinion, cleaned)
            elif action == "reject" and countersign.instance_parent(task) is not None:
                # 会签/或签: 不同意 is this signer's vote; the step's completionCondition decides
                self._approve(workflow, case, row, task, opinion, cleaned, decision="reject")
            elif action == "reject":
                workflow.cancel()
                case.status = CaseStatus.rejected
                case.outcome_reason = opinion
                case.finished_at = self.clock.now()
                self.notifications.notify([case.started_by_id], "outcome", f"未通过:{case.title}",
                                          f"{row.title}:{opinion}", case_id=case.id)
            else:
                target = self._return_target(workflow, task, return_to)
                returns.reset_to(workflow, target)
                _prune_event_manager(workflow)
                for node in [target.task, *countersign.instances(target.task)]:  # a 会签 target: each new instance too
                    node.data["return_reason"] = opinion
                    node.data["returned_from"] = row.title
                case.return_count += 1
                self._advance(workflow, case)

        now = self.clock.now()
        done = self.session.execute(
            update(TaskRow)
            .where(TaskRow.id == row.id, TaskRow.status == row.status)  # open, or waiting on its co-signers
            .values(status=TaskStatus.completed, completed_at=now, completed_by_id=actor.user_id,
                    action=action, opinion=opinion, data=cleaned)
        )
        if done.rowcount != 1:
            raise ConflictError("该任务已被处理")
        self._save(case, workflow, expected_lock=expected_lock)
        self._record(case, row, actor, action, opinion, {"data": cleaned} if cleaned else None, client_addr)
        return case

    def validated_data(self, row: TaskRow, data: dict[str, Any] | None) -> dict[str, Any]:
        """The task's form data checked against its form and the case's earlier steps.

        :raises ValidationError: a field is missing or invalid.
        """
        from engine.queries.inbox import merged_data

        schema = self.definitions.form_schema(self._case_of(row).version, row.form_key)
        earlier = merged_data(list(self.session.scalars(
            select(TaskRow).where(TaskRow.case_id == row.case_id).order_by(TaskRow.id))))
        cleaned = forms.validate(schema, data or {}, earlier)
        self._check_signers(self._case_of(row), cleaned)
        return cleaned

    def _approve(self, workflow: BpmnWorkflow, case: Case, row: TaskRow, task, opinion: str,
                 cleaned: dict[str, Any], decision: str = "approve") -> None:
        """Run the user task with its validated data and let the diagram decide what follows."""
        require_signature(self.session, row, task.task_spec)
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
            raise CaseExecutionError(f"流程无法继续: {exc}") from exc
        self._advance(workflow, case)

    # ------------------------------------------------------------------ 委派 / 加签: who completes what
    def check_may_complete(self, row: TaskRow, actor: Actor, action: str) -> None:
        """:raises ConflictError, ForbiddenError: as ``AccessPolicy.check_may_complete``."""
        self.access.check_may_complete(row, actor, action)

    def check_signed(self, row: TaskRow) -> None:
        """Check the step's required signature before a decision is held for later (后加签).

        :raises ConflictError: the task is no longer ready.
        :raises ValidationError: the required signature is missing.
        """
        with self._context():
            task = self._ready_task(self._load(self._case_of(row)), row)
        require_signature(self.session, row, task.task_spec)

    def _co_signer_approved(self, case: Case, row: TaskRow, actor: Actor, opinion: str, expected_lock: int,
                            client_addr: str | None) -> Case:
        """A 加签 co-signer agrees. When the last one has: a before-sign hands the task back to its
        holder; an after-sign runs the task with the holder's decision kept in the parent's ``pending``."""
        now = self.clock.now()
        done = self.session.execute(
            update(TaskRow).where(TaskRow.id == row.id, TaskRow.status == TaskStatus.open)
            .values(status=TaskStatus.completed, completed_at=now, completed_by_id=actor.user_id,
                    action="approve", opinion=opinion)
        )
        if done.rowcount != 1:
            raise ConflictError("该任务已被处理")
        self._record(case, row, actor, "sign_approve", opinion, {"sign_position": row.sign_position}, client_addr)
        parent = self.session.get(TaskRow, row.parent_task_id)
        self.session.refresh(parent)
        others = self.session.scalar(select(TaskRow.id).where(
            TaskRow.parent_task_id == parent.id, TaskRow.status == TaskStatus.open).limit(1))
        if others is not None or parent.status != TaskStatus.waiting:
            return case
        if row.sign_position == "before":
            parent.status = TaskStatus.open
            self.session.flush()
            self.notifications.notify([parent.assignee_id], "task", f"加签人已全部同意:{parent.title}",
                                      case.title, case_id=case.id, task_id=parent.id)
            return case
        decision = (parent.pending or {}).get("decision") or {}
        with self._context():
            workflow = self._load(case)
            task = self._ready_task(workflow, parent)
            self._approve(workflow, case, parent, task, decision.get("opinion", ""), decision.get("data") or {})
        done = self.session.execute(
            update(TaskRow).where(TaskRow.id == parent.id, TaskRow.status == TaskStatus.waiting)
            .values(status=TaskStatus.completed, completed_at=now, completed_by_id=decision.get("by"),
                    action="approve", opinion=decision.get("opinion", ""), data=decision.get("data") or {})
        )
        if done.rowcount != 1:
            raise ConflictError("该任务已被处理")
        self._save(case, workflow, expected_lock=expected_lock)
        self.session.add(AuditEvent(  # the holder's approval takes effect now, in the holder's name
            case_id=case.id, task_id=parent.id, user_id=decision.get("by"), action="approve", step=parent.title,
            opinion=decision.get("opinion") or None,
            data_diff={"data": decision.get("data") or {}, "after_sign": True}, created_at=now))
        self.session.flush()
        return case

    def complete_issuance(self, case_id: int, notice_kind: str, actor: Actor,
                          serial: str) -> tuple[TaskRow, list[TimerRow]] | None:
        """Complete the case's open step that issues notice_kind (action issue, the serial in its data).

        Returns the completed row and the timers the step started (a 公示 period), or None when no
        such step is open. The caller (NoticeService.issue) has checked that actor may issue the
        notice, and records the issuance in the case history.
        """
        case = self._lock_case(case_id)
        expected = case.lock_version
        with self._context():
            workflow = self._load(case)
            task = next((t for t in workflow.get_tasks(state=TaskState.READY, manual=True)
                         if _props(t.task_spec).get("noticeKind") == notice_kind), None)
            row = task and self.session.scalar(select(TaskRow).where(
                TaskRow.case_id == case.id, TaskRow.spiff_task_id == str(task.id), TaskRow.status == TaskStatus.open))
            if row is None:
                return None
            task.data["notice_serial"] = serial
            try:
                task.run()
            except Exception as exc:  # any failure of the diagram's own logic
                raise CaseExecutionError(f"流程无法继续: {exc}") from exc
            self._advance(workflow, case)
        before = set(self.session.scalars(select(TimerRow.id).where(TimerRow.case_id == case.id)))
        done = self.session.execute(
            update(TaskRow).where(TaskRow.id == row.id, TaskRow.status == TaskStatus.open)
            .values(status=TaskStatus.completed, completed_at=self.clock.now(), completed_by_id=actor.user_id,
                    action=ISSUE_ACTION, data={"notice_serial": serial}))
        if done.rowcount != 1:
            raise ConflictError("该任务已被处理")
        self._save(case, workflow, expected_lock=expected)
        started = self.session.scalars(select(TimerRow).where(
            TimerRow.case_id == case.id, TimerRow.status == TimerStatus.waiting, TimerRow.id.not_in(before))).all()
        return row, list(started)

    def issuance_kind(self, row: TaskRow) -> str | None:
        """The notice kind an open task row is completed by issuing (its step's ``noticeKind``), if any."""
        if ISSUE_ACTION not in row.actions.split(","):
            return None
        return _props(step_spec(self.definitions, self._case_of(row).version, row.spec_name)).get("noticeKind")

    def _ready_task(self, workflow: BpmnWorkflow, row: TaskRow):

        task = _find_task(workflow, row.spiff_task_id)
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
        with self._context():
            task = _find_task(self._load(self._case_of(row)), row.spiff_task_id)
        if task is None:
            return []
        seen: dict[str, str] = {}
        for target in returns.earlier_user_steps(task):
            seen.setdefault(target.task.task_spec.bpmn_id, countersign.step_name(target.task.task_spec))
        return list(seen.items())

    # ------------------------------------------------------------------ withdraw (撤回)
    def withdrawable(self, case_id: int, actor: Actor) -> TaskRow | None:
        """The actor's last approved step on the case, if nothing has been done on the case since."""
        rows = self.session.scalars(select(TaskRow).where(TaskRow.case_id == case_id).order_by(TaskRow.id)).all()
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
        case = self.session.get(Case, case_id)
        if case.status != CaseStatus.running:
            return None
        return last

    def withdraw(self, case_id: int, actor: Actor, opinion: str | None, client_addr: str | None = None) -> Case:
        """撤回: take back one's last approved step while the next step has not been acted on.

        :raises ConflictError: the next step was already acted on (or nothing to withdraw).
        """
        self.get_case(case_id, actor)
        case = self._lock_case(case_id)
        row = self.withdrawable(case_id, actor)
        if row is None:
            raise ConflictError("无法撤回:下一步已办理,或您没有可撤回的步骤")
        expected = case.lock_version
        with self._context():
            workflow = self._load(case)
            task = _find_task(workflow, row.spiff_task_id)
            if task is None or task.state != TaskState.COMPLETED:
                raise ConflictError("无法撤回:流程已前进")
            workflow.reset_from_task_id(task.id)
            _prune_event_manager(workflow)
            self._advance(workflow, case)
        # the taken-back approval no longer counts: not in the case data, 已办 shows it as 撤回
        row.action = "withdraw"
        self._save(case, workflow, expected_lock=expected)
        self._record(case, row, actor, "withdraw", (opinion or "").strip() or None, None, client_addr)
        return case

    # ------------------------------------------------------------------ events (异议 etc.)
    def waiting_events(self, case: Case, actor: Actor) -> list[dict[str, Any]]:
        """Signal/message events the case waits for, e.g. an objection during a public notice.

        Each entry: ``event_id``, ``name``, ``role`` and whether the actor may raise it.
        """
        if case.finished_at is not None or case.status in (CaseStatus.rejected, CaseStatus.withdrawn):
            return []
        with self._context():
            workflow = self._load(case)
        events = []
        for task in workflow.get_tasks(state=TaskState.WAITING):
            if not _is_raisable(task):
                continue
            role = role_of_lane(task.task_spec.lane)
            level = self.role_levels.get(role or "")
            events.append({
                "event_id": task.task_spec.bpmn_id,
                "name": task.task_spec.bpmn_name or task.task_spec.bpmn_id,
                "role": role,
                "can_raise": level is not None and actor.holds(role, scope_for(case.region_code, level)),
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
        if len(opinion) > MAX_OPINION_LENGTH:
            raise ValidationError("事由过长", {"opinion": f"不能超过 {MAX_OPINION_LENGTH} 字"})
        case = self._lock_case(case_id)
        expected = case.lock_version
        with self._context():
            workflow = self._load(case)
            # a period that has already run out ends first: an objection after it is too late,
            # even if no worker has fired the timer yet
            self._advance(workflow, case)
            task = next((t for t in workflow.get_tasks(state=TaskState.WAITING)
                         if _is_raisable(t) and t.task_spec.bpmn_id == event_id), None)
            if task is None:
                raise ConflictError("案件当前不等待该事件(公示期可能已满)")
            role = role_of_lane(task.task_spec.lane)
            level = self.role_levels.get(role or "")
            if level is None or not actor.holds(role, scope_for(case.region_code, level)):
                raise ForbiddenError("您无权提出此事项")
            from SpiffWorkflow.bpmn.util.event import BpmnEvent

            task.data["last_event_reason"] = opinion  # inherited by the path the event opens
            workflow.catch(BpmnEvent(task.task_spec.event_definition, {"reason": opinion}))
            self._advance(workflow, case)
        self._save(case, workflow, expected_lock=expected)
        self._record(case, None, actor, "event", opinion, {"event": task.task_spec.bpmn_name or event_id}, client_addr)
        return case

    # ------------------------------------------------------------------ timers
    def fire_due_timers(self, limit: int = 100, worker: str = "worker") -> int:
        """Claim and fire due timers inside this unit of work (tests and single-shot use).

        The worker (engine/runtime/timers.py) does the same with one transaction per timer.
        """
        fired = 0
        for timer_id in self.claim_due_timers(self.clock.now(), limit):
            try:
                with self.session.begin_nested():
                    fired += self.fire_timer(timer_id, worker)
            except Exception as exc:  # one bad timer never blocks the others
                self.record_timer_failure(timer_id, exc)
        return fired

    def record_timer_failure(self, timer_id: int, exc: BaseException) -> TimerStatus:
        """Count a failed firing: retry later with backoff, or open an incident after the last try."""
        timer = self.session.get(TimerRow, timer_id)
        timer.attempts += 1
        timer.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if timer.attempts >= MAX_TIMER_ATTEMPTS:
            timer.status = TimerStatus.incident
            timer.claimed_until = None
            self._record(timer.case, None, None, "timer_incident", None,
                         {"timer": timer.title, "error": timer.last_error}, None)
        else:
            timer.claimed_until = self.clock.now() + TIMER_BACKOFF * (2 ** (timer.attempts - 1))
        self.session.flush()
        return timer.status

    def claim_due_timers(self, now: datetime, limit: int) -> list[int]:
        """Claim up to limit due timers with a lease; return their ids."""
        stmt = (
            select(TimerRow.id)
            .where(TimerRow.status == TimerStatus.waiting, TimerRow.due_at < now)  # SpiffWorkflow fires when due < now
            .where((TimerRow.claimed_until.is_(None)) | (TimerRow.claimed_until < now))
            .order_by(TimerRow.due_at)
            .limit(limit)
        )
        if self.session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(self.session.scalars(stmt))
        claimed = []
        for timer_id in ids:
            res = self.session.execute(
                update(TimerRow)
                .where(TimerRow.id == timer_id, TimerRow.status == TimerStatus.waiting)
                .where((TimerRow.claimed_until.is_(None)) | (TimerRow.claimed_until < now))
                .values(claimed_until=now + self.timer_lease)
            )
            if res.rowcount == 1:
                claimed.append(timer_id)
        return claimed

    def fire_timer(self, timer_id: int, worker: str = "worker") -> bool:
        """Fire one claimed timer under the case lock; False if it was already fired or not due.

        :raises CaseExecutionError: the workflow failed while advancing past the timer.
        """
        timer = self.session.get(TimerRow, timer_id)
        case = self._lock_case(timer.case_id)
        self.session.refresh(timer)
        if timer.status != TimerStatus.waiting:
            return False
        expected = case.lock_version
        with self._context():
            workflow = self._load(case)
            workflow.refresh_timers()
            self._advance(workflow, case)
        due_before = timer.due_at
        self._save(case, workflow, expected_lock=expected)
        self.session.refresh(timer)
        if timer.status == TimerStatus.waiting and timer.due_at == due_before:
            # the engine did not consider it due (clock skew): release the claim
            timer.claimed_until = None
            return False
        return True

    # ------------------------------------------------------------------ core steps
    def _lock_case(self, case_id: int) -> Case:
        stmt = select(Case).where(Case.id == case_id)
        if self.session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=Case)
        try:
            case = self.session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
        except OperationalError as exc:
            raise ConflictError("案件正被他人处理,请稍后重试") from exc
        if case is None:
            raise NotFoundError("案件不存在")
        return case

    def _load(self, case: Case) -> BpmnWorkflow:
        version = case.version
        workflow = load_state(case.state, case.serializer_version, self.definitions.specs(version),
                              lambda: version.spec_json)
        # what was already completed, so _save can tell which elements completed in this action
        workflow._xf_completed_before = {t.id for t in workflow.get_tasks(state=TaskState.COMPLETED)}
        return workflow

    def _advance(self, workflow: BpmnWorkflow, case: Case) -> None:
        try:
            workflow.refresh_timers()
            workflow.do_engine_steps()
        except (SpiffWorkflowException, UnsafeExpressionError, NameError, TypeError, ValueError) as exc:
            raise CaseExecutionError(f"流程无法继续: {exc}") from exc

    def _case_status(self, workflow: BpmnWorkflow, case: Case, completed: list) -> None:
        if case.status in (CaseStatus.rejected, CaseStatus.withdrawn):
            return
        latest = latest_task = None
        latest_time = -1.0
        complete = workflow.is_completed()
        for task in completed:
            value = _props(task.task_spec).get("caseStatus")
            if value and isinstance(task.task_spec, EndEvent) and not complete:
                continue  # one branch ended while others still run: the case is not finished yet
            if value and task.last_state_change > latest_time:
                latest, latest_task, latest_time = value, task, task.last_state_change
        if latest:
            case.status = CaseStatus(latest)
            if latest_task is not None and _props(latest_task.task_spec).get("outcomeReasonKey"):
                reason = latest_task.data.get(_props(latest_task.task_spec)["outcomeReasonKey"])
                case.outcome_reason = str(reason)[:2000] if reason is not None else case.outcome_reason
        if workflow.is_completed():
            if latest is None:
                case.status = CaseStatus.completed
            case.finished_at = case.finished_at or self.clock.now()

    def _save(self, case: Case, workflow: BpmnWorkflow, expected_lock: int | None) -> None:
        now = self.clock.now()
        completed = workflow.get_tasks(state=TaskState.COMPLETED)  # walked once, used three times
        self._case_status(workflow, case, completed)
        case.path = _completed_path(completed)
        state = dump_state(workflow)
        if expected_lock is None:
            case.state = state
            case.updated_at = now
            case.lock_version = 1
            self.session.flush()
        else:
            values = dict(state=state, updated_at=now, lock_version=expected_lock + 1, status=case.status,
                          outcome_reason=case.outcome_reason, finished_at=case.finished_at,
                          return_count=case.return_count, path=case.path)
            try:
                # the attribute changes above travel in this one compare-and-set statement; no autoflush
                # of them first
                with self.session.no_autoflush:
                    res = self.session.execute(
                        update(Case).where(Case.id == case.id, Case.lock_version == expected_lock)
                        .values(**values).execution_options(synchronize_session=False)
                    )
            except OperationalError as exc:
                raise ConflictError("案件正被他人处理,请稍后重试") from exc
            if res.rowcount != 1:
                raise ConflictError("案件已被他人更新,请刷新后重试")
            # the row now holds exactly these values (the case is locked): keep them as loaded instead of
            # reading the row (and its large state) back; any other change is discarded as expire() did
            for key, value in values.items():
                set_committed_value(case, key, value)
            unsaved = [a.key for a in inspect(case).attrs if a.history.has_changes()]
            if unsaved:
                self.session.expire(case, unsaved)
        self._sync_tasks(case, workflow, now)
        self._sync_timers(case, workflow, now)
        self._start_linked_cases(case, workflow, completed)

    def _start_linked_cases(self, case: Case, workflow: BpmnWorkflow, completed: list) -> None:
        """Start the procedures named by ``startsProcedure`` on elements completed in this action.

        The new case is for the same subject, linked to this one, and receives the data keys
        listed in the element's ``passData`` property.
        """
        before = getattr(workflow, "_xf_completed_before", set())
        for task in completed:
            code = _props(task.task_spec).get("startsProcedure")
            if not code or task.id in before:
                continue
            keys = [k.strip() for k in _props(task.task_spec).get("passData", "").split(",") if k.strip()]
            data = {k: task.data[k] for k in keys if k in task.data}
            data.update(linked_from_case=case.id, linked_from_title=case.title)
            try:
                version = self.definitions.latest(code)
            except NotFoundError as exc:
                raise CaseExecutionError(f"步骤 {task.task_spec.bpmn_name} 要发起的流程 {code!r} 不存在") from exc
            if not procedure_serves(version.procedure.owner_region_code, case.region_code):
                raise CaseExecutionError(f"步骤 {task.task_spec.bpmn_name} 要发起的流程 {code!r} 属于其他地区,"
                                         "不能用于本案件")
            child = self._create_case(version, case.subject, case.started_by_id, data, parent=case)
            self._record(case, None, None, "linked_case_started", None,
                         {"case_id": child.id, "procedure": code}, None)
            self._record(child, None, None, "linked_from", None, {"case_id": case.id}, None)

    def _sync_tasks(self, case: Case, workflow: BpmnWorkflow, now: datetime) -> None:
        ready = {str(t.id): t for t in workflow.get_tasks(state=TaskState.READY, manual=True)}
        open_rows = self.session.scalars(
            select(TaskRow).where(TaskRow.case_id == case.id,
                                  TaskRow.status.in_((TaskStatus.open, TaskStatus.waiting)))
        ).all()
        still_ready = set(ready)
        for row in open_rows:
            # a 加签 parent (waiting) and its co-signers' rows share one spiff task: kept or cancelled together
            if row.spiff_task_id in still_ready:
                ready.pop(row.spiff_task_id, None)
            else:
                row.status = TaskStatus.cancelled
                row.completed_at = now
        day_kind = self.definitions.manifest(case.version).get("settings", {}).get("day_kind", "natural")
        for spiff_id, task in ready.items():
            spec = task.task_spec
            props = _props(spec)
            role = role_of_lane(spec.lane)
            level = self.role_levels.get(role or "")
            if level is None:
                raise CaseExecutionError(f"步骤 {spec.bpmn_name} 的泳道 {spec.lane!r} 没有对应的角色")
            due_at = self._due_at(props.get("dueIn"), now, day_kind)
            if props.get("dueAt"):  # an expression giving an ISO datetime, e.g. calendar_date(11, 30, plan_year)
                try:
                    due_at = TimerEventDefinition.get_datetime(str(SCRIPT_ENGINE.evaluate(task, props["dueAt"])))
                except Exception as exc:
                    raise CaseExecutionError(f"步骤 {spec.bpmn_name} 的期限表达式无效: {exc}") from exc
            row = TaskRow(
                case_id=case.id,
                spiff_task_id=spiff_id,
                spec_name=spec.bpmn_id,
                title=spec.bpmn_name or spec.bpmn_id,
                lane=spec.lane,
                role_code=role,
                region_code=case.region_code,
                scope_code=scope_for(case.region_code, level),
                form_key=props.get("formKey"),
                actions=",".join(task_actions(spec)),
                status=TaskStatus.open,
                created_at=now,
                due_at=due_at,
                day_kind=day_kind,
            )
            if props.get("assigneeKey"):  # a named person, e.g. the household's 帮扶责任人
                row.assignee_id = self._named_assignee(task.data.get(props["assigneeKey"]), role, row.scope_code)
            parent = countersign.instance_parent(task)
            if parent is not None:  # 会签/或签: one row per signer, for that signer only
                signer = countersign.signer_of(task)
                row.assignee_id = self._named_assignee(signer, role, row.scope_code)
                if row.assignee_id is None:
                    raise CaseExecutionError(f"步骤 {spec.bpmn_name} 的会签人 {signer!r} 不是本辖区的 {role}")
                row.instance_group, row.multi_sign = countersign.group_of(parent), countersign.sign_mode(spec)
            self.session.add(row)
            self.session.flush()
            if row.assignee_id:
                self.notifications.notify([row.assignee_id], "task", f"新待办:{row.title}", case.title,
                                          case_id=case.id, task_id=row.id)
            else:
                self.notifications.task_opened(row)

    def _named_assignee(self, username, role: str, scope: str) -> int | None:
        """The user named in the data if they hold the task's role at its scope; else the whole group."""
        if not isinstance(username, str) or not username:
            return None
        return self.session.scalar(
            select(User.id).join(UserRole, UserRole.user_id == User.id)
            .where(User.username == username, User.is_active.is_(True), UserRole.role_code == role,
                   UserRole.region_code == scope))

    def _sync_timers(self, case: Case, workflow: BpmnWorkflow, now: datetime) -> None:
        waiting = {}
        for task in workflow.get_tasks(state=TaskState.WAITING):
            if _is_timer(task):
                due = _timer_due(task)
                if due is not None:
                    waiting[str(task.id)] = (task, due)
        # every timer row of the case in one query: the waiting ones are synced, the others re-armed if waiting again
        all_rows = self.session.scalars(select(TimerRow).where(TimerRow.case_id == case.id)).all()
        existing = {row.spiff_task_id for row in all_rows}
        for row in [r for r in all_rows if r.status == TimerStatus.waiting]:
            if row.spiff_task_id in waiting:
                task, due = waiting.pop(row.spiff_task_id)
                if due != row.due_at and row.due_at <= now:  # a cycle timer fired and re-armed
                    self._record(case, None, None, "timer_fired", None, {"timer": row.title}, None)
                    row.claimed_until = None
                row.due_at = due
            else:
                task = _find_task(workflow, row.spiff_task_id)
                fired = task is not None and task.state == TaskState.COMPLETED
                row.status = TimerStatus.fired if fired else TimerStatus.cancelled
                row.fired_at = now
                row.claimed_until = None
                if fired:
                    self._record(case, None, None, "timer_fired", None, {"timer": row.title}, None)
        for spiff_id, (task, due) in waiting.items():
            if spiff_id in existing:  # a cycle timer that waits again: re-arm the same row
                self.session.execute(
                    update(TimerRow).where(TimerRow.case_id == case.id, TimerRow.spiff_task_id == spiff_id)
                    .values(status=TimerStatus.waiting, due_at=due, claimed_until=None)
                )
                continue
            self.session.add(TimerRow(
                case_id=case.id,
                spiff_task_id=spiff_id,
                spec_name=task.task_spec.bpmn_id or task.task_spec.name,
                title=task.task_spec.bpmn_name or task.task_spec.bpmn_id or "定时器",
                due_at=due,
                status=TimerStatus.waiting,
            ))
        self.session.flush()

    def _record(self, case: Case, row: TaskRow | None, actor: Actor | None, action: str,
                opinion: str | None, diff: dict[str, Any] | None, client_addr: str | None) -> None:
        self.session.add(AuditEvent(
            case_id=case.id,
            task_id=row.id if row else None,
            user_id=actor.user_id if actor else None,
            action=action,
            step=row.title if row else None,
            opinion=opinion,
            data_diff=diff,
            created_at=self.clock.now(),
            client_addr=client_addr,
        ))
        self.session.flush()


RESERVED_KEYS = {"case_id", "subject_name", "subject_kind", "region_code", "region_name", "settings",
                 "decision", "opinions", "last_opinion", "return_reason", "returned_from"}


def _checked_start_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """Start data from a caller: plain keys and scalar values only, no engine-reserved keys.

    :raises ValidationError: a key or value that is not allowed.
    """
    import re

    errors = {}
    for key, value in (data or {}).items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", key) or key in RESERVED_KEYS \
                or key.startswith("subject_"):
            errors[str(key)[:64]] = "不允许的字段名"
        elif not isinstance(value, (str, int, float, bool)) or (isinstance(value, str) and len(value) > 4000):
            errors[key] = "字段值必须是不超过 4000 字的文本、数字或布尔值"
    if errors:
        raise ValidationError("发起数据无效", errors)
    return dict(data or {})



"""Projections of a case's workflow into rows: case status and path, task rows, timer rows, linked cases.

The pipeline (engine/runtime/pipeline.py) runs them once per mutation, after the engine steps, from
one walk of the task tree (``TreeWalk``). ``case_status`` is the one rule for a case's status from its
completed elements; the studio's dry run uses it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.exceptions import TaskNotFoundException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import CursorResult, Table, bindparam, insert, select, update

from engine.access.assignment import procedure_serves, scope_for
from engine.core.errors import CaseExecutionError, NotFoundError
from engine.models import Case, CaseCc, CaseStatus, TaskRow, TaskStatus, TimerRow, TimerStatus, User, UserRole
from engine.procedures.definitions import role_of_lane
from engine.procedures.expressions import CHINA_TZ, SCRIPT_ENGINE, failure_message
from engine.procedures.steps import properties_of
from engine.runtime import countersign, guard

if TYPE_CHECKING:
    from engine.runtime.pipeline import CasePipeline, Mutation

_TASK = cast(Table, TaskRow.__table__)
_INSERT_TASK = insert(_TASK)  # built once: its compiled form is reused (the values are the parameters)
_TASK_COLUMNS = [c.key for c in _TASK.columns if c.key != "id"]
# PostgreSQL: the same INSERT with its parameters named t_<column>, to share one statement with its notifications
_INSERT_TASK_NAMED = insert(_TASK).values({key: bindparam(f"t_{key}") for key in _TASK_COLUMNS})


def timer_due(task) -> datetime | None:
    """The frozen due time of a waiting timer task (the next one for a cycle timer), or None."""
    value = task.internal_data.get("event_value")
    if value is None:
        return None
    if isinstance(value, dict):  # cycle timers
        value = value.get("next")
    return TimerEventDefinition.get_datetime(value)


def is_timer(task) -> bool:
    return isinstance(getattr(task.task_spec, "event_definition", None), TimerEventDefinition)


def find_task(workflow: BpmnWorkflow, spiff_id: str):
    """The task with that id in the workflow or its subprocesses, or None if a reset removed it."""
    try:
        return workflow.get_task_from_id(UUID(spiff_id))
    except TaskNotFoundException:
        return None


def prune_event_manager(workflow: BpmnWorkflow) -> None:
    """Forget waiting events whose tasks a reset removed (SpiffWorkflow leaves them registered,
    and the next timer refresh would trip over them)."""
    live = dict(workflow.tasks)
    for sub in workflow.subprocesses.values():
        live.update(sub.tasks)
    for task_id, task in list(workflow.event_manager.tasks.items()):
        if task.has_state(TaskState.FINISHED_MASK) or live.get(task_id) is not task:
            workflow.event_manager.tasks.pop(task_id, None)


MAX_DEPTH = 1000  # SpiffWorkflow's iterator does not descend below this depth either


def tasks_in_order(workflow: BpmnWorkflow) -> Iterator[Any]:
    """Every task of the workflow and its subprocesses, in the order of ``workflow.get_tasks_iterator()``
    (depth first, a subprocess's tree before the children of the task that runs it), without its per-task
    filter and depth bookkeeping (the projections walk the whole tree on every mutation)."""
    subprocesses = workflow.subprocesses
    stack: list[tuple[Any, int]] = [(workflow.task_tree, 0)]
    while stack:
        task, depth = stack.pop()
        yield task
        sub = subprocesses.get(task.id)
        if (task._children or sub is not None) and depth < MAX_DEPTH:
            tasks = task.workflow.tasks
            below = [tasks.get(child) for child in task._children]
            if sub is not None:
                below.insert(0, sub.task_tree)
            stack.extend((t, depth + 1) for t in reversed(below))


@dataclass
class TreeWalk:
    """What the projections need from the task tree, gathered in one walk."""

    completed: list = field(default_factory=list)
    ready_manual: dict[str, Any] = field(default_factory=dict)
    waiting_timers: dict[str, tuple[Any, datetime]] = field(default_factory=dict)
    finished: bool = True

    @classmethod
    def of(cls, workflow: BpmnWorkflow) -> TreeWalk:
        walk = cls()
        for task in tasks_in_order(workflow):
            state = task.state
            if state == TaskState.COMPLETED:
                walk.completed.append(task)
                continue
            if state & TaskState.NOT_FINISHED_MASK:
                walk.finished = False
            if state == TaskState.READY and task.task_spec.manual:
                walk.ready_manual[str(task.id)] = task
            elif state == TaskState.WAITING and is_timer(task):
                due = timer_due(task)
                if due is not None:
                    walk.waiting_timers[str(task.id)] = (task, due)
        return walk


def completed_path(completed: list) -> list[str]:
    """BPMN ids of the diagram elements completed so far, in completion order (for the case diagram)."""
    done = [t for t in completed if getattr(t.task_spec, "bpmn_id", None)]
    done.sort(key=lambda t: t.last_state_change)
    seen: dict[str, None] = {}
    for task in done:
        seen.setdefault(task.task_spec.bpmn_id, None)
    return list(seen)


@dataclass(frozen=True)
class CaseOutcome:
    """A case's status from its completed elements: ``status`` is the latest ``caseStatus`` that
    counts (None when none does), ``set_by`` the element that set it, ``finished`` whether the
    workflow is complete."""

    status: str | None
    set_by: Any
    finished: bool

    @property
    def label(self) -> str:
        """The status as one word: the set status, else ``completed`` or ``running``."""
        return self.status or ("completed" if self.finished else "running")


def case_status(workflow: BpmnWorkflow, completed: list | None = None, finished: bool | None = None) -> CaseOutcome:
    """The case status rule: the latest completed element with a ``caseStatus`` property decides,
    except an end event while other branches still run (one branch ended, the case has not)."""
    if completed is None:
        completed = workflow.get_tasks(state=TaskState.COMPLETED)
    if finished is None:
        finished = workflow.is_completed()
    latest = latest_task = None
    latest_time = -1.0
    for task in completed:
        value = properties_of(task.task_spec).case_status
        if value and isinstance(task.task_spec, EndEvent) and not finished:
            continue
        if value and task.last_state_change > latest_time:
            latest, latest_task, latest_time = value, task, task.last_state_change
    return CaseOutcome(latest, latest_task, finished)


def apply_outcome(case: Case, outcome: CaseOutcome, now: datetime) -> None:
    """Put a computed outcome on the case row (a rejected or withdrawn case keeps its status)."""
    if case.status in (CaseStatus.rejected, CaseStatus.withdrawn):
        return
    if outcome.status:
        case.status = CaseStatus(outcome.status)
        reason_key = properties_of(outcome.set_by.task_spec).outcome_reason_key
        if reason_key:
            reason = outcome.set_by.data.get(reason_key)
            case.outcome_reason = str(reason)[:2000] if reason is not None else case.outcome_reason
    if outcome.finished:
        if outcome.status is None:
            case.status = CaseStatus.completed
        case.finished_at = case.finished_at or now


class Projections:
    """Task rows, timer rows and linked cases of one mutated case (run by the pipeline)."""

    def __init__(self, pipeline: CasePipeline):
        self.pipeline = pipeline
        self.session = pipeline.session

    def run(self, m: Mutation, walk: TreeWalk, now: datetime) -> None:
        self.sync_tasks(m, walk, now)
        self.sync_timers(m, walk, now)
        self.start_linked_cases(m, walk)
        self.deliver_cc(m, walk, now)

    def quiet(self, m: Mutation, walk: TreeWalk) -> bool:
        """Whether ``run`` records no event of its own (no timer changed, no element that starts a linked case
        or sends 抄送 was passed): the act's events can then be written with the save, before the rows."""
        return self._timers_unchanged(m, walk) and not any(
            task.id not in m.completed_before
            and (properties_of(task.task_spec).starts_procedure or properties_of(task.task_spec).cc_role)
            for task in walk.completed)

    # ------------------------------------------------------------------ task rows
    def sync_tasks(self, m: Mutation, walk: TreeWalk, now: datetime) -> None:
        """Open a row for each user task that became ready, cancel the rows of those no longer ready.

        The open (and waiting) rows of a case mirror the ready user tasks of its stored tree, so the
        difference between the tree before and after the act says what to do without reading the rows;
        when the tree before is unknown (a migrated workflow) the rows are read.
        """
        case = m.case
        if m.before is None:
            ready = self._reconcile_with_rows(case, walk, now)
        else:
            ready = {k: t for k, t in walk.ready_manual.items() if k not in m.before.ready_manual}
            gone = set(m.before.ready_manual) - set(walk.ready_manual)
            # a task's own row completed now from open has no open co-signers: nothing of its task is left to
            # cancel (a 加签 parent completed from waiting, or a co-signer's row, leaves rows of it open)
            gone -= {row.spiff_task_id for row, was in m.completed_rows
                     if was == TaskStatus.open and row.parent_task_id is None}
            if gone:
                self.session.execute(
                    update(TaskRow).where(TaskRow.case_id == case.id, TaskRow.spiff_task_id.in_(sorted(gone)),
                                          TaskRow.status.in_((TaskStatus.open, TaskStatus.waiting)))
                    .values(status=TaskStatus.cancelled, completed_at=now)
                    .execution_options(synchronize_session="evaluate"))
        if not ready:
            return
        definitions = self.pipeline.definitions
        day_kind = definitions.manifest(case.version).get("settings", {}).get("day_kind", "natural")
        notifications = self.pipeline.notifications
        postgresql = self.session.get_bind().dialect.name == "postgresql"
        for spiff_id, task in ready.items():
            spec = task.task_spec
            props = properties_of(spec)
            role = role_of_lane(spec.lane)
            level = self.pipeline.role_levels.get(role or "")
            if level is None:
                raise CaseExecutionError(f"步骤 {spec.bpmn_name} 的泳道 {spec.lane!r} 没有对应的角色")
            step_day_kind = props.day_kind or day_kind
            due_at = self._due_at(props.due_in, now, step_day_kind)
            if props.due_at:  # an expression giving an ISO datetime, e.g. calendar_date(11, 30, plan_year)
                try:
                    due_at = TimerEventDefinition.get_datetime(str(SCRIPT_ENGINE.evaluate(task, props.due_at)))
                except Exception as exc:
                    raise CaseExecutionError(f"步骤 {spec.bpmn_name} 的期限表达式无效: {failure_message(exc)}") from exc
            row = TaskRow(
                case_id=case.id,
                spiff_task_id=spiff_id,
                spec_name=spec.bpmn_id,
                title=spec.bpmn_name or spec.bpmn_id,
                lane=spec.lane,
                role_code=role,
                region_code=case.region_code,
                scope_code=scope_for(case.region_code, level),
                form_key=props.form_key,
                actions=",".join(props.actions),
                status=TaskStatus.open,
                created_at=now,
                due_at=due_at,
                day_kind=step_day_kind,
                case_title=case.title,
                subject_id=case.subject_id,
            )
            if props.assignee_key:  # a named person, e.g. the household's 帮扶责任人
                row.assignee_id = self.named_assignee(task.data.get(props.assignee_key), role, row.scope_code)
            parent = countersign.instance_parent(task)
            if parent is not None:  # 会签/或签: one row per signer, for that signer only
                signer = countersign.signer_of(task)
                row.assignee_id = self.named_assignee(signer, role, row.scope_code)
                if row.assignee_id is None:
                    raise CaseExecutionError(f"步骤 {spec.bpmn_name} 的会签人 {signer!r} 不是本辖区的 {role}")
                row.instance_group, row.multi_sign = countersign.group_of(parent), countersign.sign_mode(spec)
            # a plain table INSERT (the ORM's unit of work is slower and nothing in this transaction needs the
            # object in the session); the row object is the notifications' view of it
            values = {key: getattr(row, key) for key in _TASK_COLUMNS}
            if not row.assignee_id and postgresql:  # the row and its holders' notifications in one statement
                row.id = notifications.insert_opened(
                    _INSERT_TASK_NAMED, {f"t_{key}": value for key, value in values.items()}, row, case.title)
                continue
            inserted = cast("CursorResult[Any]", self.session.execute(_INSERT_TASK, values))
            row.id = inserted.inserted_primary_key[0]
            if row.assignee_id:
                notifications.notify([row.assignee_id], "task", f"新待办:{row.title}", case.title,
                                     case_id=case.id, task_id=row.id)
            else:
                notifications.task_opened(row, case.title)

    def _reconcile_with_rows(self, case: Case, walk: TreeWalk, now: datetime) -> dict[str, Any]:
        """Cancel the case's open rows whose task is no longer ready; return the ready tasks without a row.
        A kept open row names its step as the tree now does (a migrated case's step may be renamed or moved)."""
        ready = dict(walk.ready_manual)
        open_rows = self.session.scalars(
            select(TaskRow).where(TaskRow.case_id == case.id,
                                  TaskRow.status.in_((TaskStatus.open, TaskStatus.waiting)))
        ).all()
        still_ready = set(ready)
        for row in open_rows:
            # a 加签 parent (waiting) and its co-signers' rows share one spiff task: kept or cancelled together
            if row.spiff_task_id in still_ready:
                ready.pop(row.spiff_task_id, None)
                if row.status == TaskStatus.open:
                    self._name_step(row, walk.ready_manual[row.spiff_task_id].task_spec, case)
            else:
                row.status = TaskStatus.cancelled
                row.completed_at = now
        return ready

    def _name_step(self, row: TaskRow, spec: Any, case: Case) -> None:
        """Give a row its step's title, lane, role, scope, form and actions from spec."""
        role = role_of_lane(spec.lane)
        level = self.pipeline.role_levels.get(role or "")
        if role is None or level is None:
            return
        props = properties_of(spec)
        row.title, row.spec_name, row.lane = spec.bpmn_name or spec.bpmn_id, spec.bpmn_id, spec.lane
        row.role_code, row.scope_code = role, scope_for(case.region_code, level)
        row.form_key, row.actions = props.form_key, ",".join(props.actions)

    def _due_at(self, due_in: str | None, now: datetime, day_kind: str) -> datetime | None:
        """A task's due time from its ``dueIn`` duration, in natural or working days."""
        if not due_in:
            return None
        parsed = TimerEventDefinition.parse_iso_duration(due_in)
        if day_kind == "working" and set(parsed) <= {"days"} and float(parsed.get("days", 0)).is_integer():
            local = now.astimezone(CHINA_TZ)
            day = self.pipeline.calendar.add_workdays(local.date(), int(parsed["days"]))
            return datetime.combine(day, local.timetz())
        return now + TimerEventDefinition.get_timedelta_from_start(parsed, now)

    def named_assignee(self, username, role: str | None, scope: str) -> int | None:
        """The user named in the data if they hold the task's role at its scope; else the whole group."""
        if not isinstance(username, str) or not username:
            return None
        return self.session.scalar(
            select(User.id).join(UserRole, UserRole.user_id == User.id)
            .where(User.username == username, User.is_active.is_(True), UserRole.role_code == role,
                   UserRole.region_code == scope))

    # ------------------------------------------------------------------ timer rows
    @staticmethod
    def _timers_unchanged(m: Mutation, walk: TreeWalk) -> bool:
        """The timer rows mirror the stored tree's waiting timers, and those did not change."""
        return m.before is not None and {k: due for k, (_t, due) in m.before.waiting_timers.items()} \
            == {k: due for k, (_t, due) in walk.waiting_timers.items()}

    def sync_timers(self, m: Mutation, walk: TreeWalk, now: datetime) -> None:
        case = m.case
        if self._timers_unchanged(m, walk):
            return
        waiting = dict(walk.waiting_timers)
        # every timer row of the case in one query: the waiting ones are synced, the others re-armed if waiting again
        all_rows = self.session.scalars(select(TimerRow).where(TimerRow.case_id == case.id)).all()
        existing = {row.spiff_task_id for row in all_rows}
        for row in [r for r in all_rows if r.status == TimerStatus.waiting]:
            if row.spiff_task_id in waiting:
                task, due = waiting.pop(row.spiff_task_id)
                if due != row.due_at and row.due_at <= now:  # a cycle timer fired and re-armed
                    m.projected("timer_fired", detail={"timer": row.title})
                    row.claimed_until = None
                row.due_at = due
            else:
                task = find_task(m.workflow, row.spiff_task_id)
                fired = task is not None and task.state == TaskState.COMPLETED
                row.status = TimerStatus.fired if fired else TimerStatus.cancelled
                row.fired_at = now
                row.claimed_until = None
                if fired:
                    m.projected("timer_fired", detail={"timer": row.title})
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

    # ------------------------------------------------------------------ 抄送 elements
    def deliver_cc(self, m: Mutation, walk: TreeWalk, now: datetime) -> None:
        """抄送 elements (``ccRole``) passed in this action: every active holder of the role in the case's
        jurisdiction gets a read-only copy of the case (once) and a notification."""
        case = m.case
        for task in walk.completed:
            role = properties_of(task.task_spec).cc_role
            if not role or task.id in m.completed_before:
                continue
            level = self.pipeline.role_levels.get(role)
            if level is None:
                raise CaseExecutionError(f"步骤 {task.task_spec.bpmn_name} 要抄送的角色 {role!r} 不存在")
            holders = set(self.session.scalars(
                select(User.id).join(UserRole, UserRole.user_id == User.id)
                .where(User.is_active.is_(True), UserRole.role_code == role,
                       UserRole.region_code == scope_for(case.region_code, level))))
            holders -= set(self.session.scalars(select(CaseCc.user_id).where(CaseCc.case_id == case.id)))
            for user_id in sorted(holders):
                self.session.add(CaseCc(case_id=case.id, user_id=user_id, by_user_id=case.started_by_id,
                                        created_at=now))
            if holders:
                self.session.flush()
                self.pipeline.notifications.notify(sorted(holders), "cc", f"抄送:{case.title}",
                                                   task.task_spec.bpmn_name or "", case_id=case.id)
            m.projected("cc_delivered", detail={"role": role, "users": len(holders),
                                                "step": task.task_spec.bpmn_name})

    # ------------------------------------------------------------------ linked cases
    def start_linked_cases(self, m: Mutation, walk: TreeWalk) -> None:
        """Start the procedures named by ``startsProcedure`` on elements completed in this action.

        The new case is for the same subject, linked to this one, and receives the data keys
        listed in the element's ``passData`` property.
        """
        case = m.case
        for task in walk.completed:
            props = properties_of(task.task_spec)
            code = props.starts_procedure
            if not code or task.id in m.completed_before:
                continue
            data = {k: task.data[k] for k in props.pass_data if k in task.data}
            data.update(linked_from_case=case.id, linked_from_title=case.title)
            try:
                version = self.pipeline.definitions.latest(code)
            except NotFoundError as exc:
                raise CaseExecutionError(f"步骤 {task.task_spec.bpmn_name} 要发起的流程 {code!r} 不存在") from exc
            if not procedure_serves(version.procedure.owner_region_code, case.region_code):
                raise CaseExecutionError(f"步骤 {task.task_spec.bpmn_name} 要发起的流程 {code!r} 属于其他地区,"
                                         "不能用于本案件")
            running = guard.guarded_running_case(self.session, self.pipeline.definitions.manifest(version), version,
                                                 case.subject)
            if running is not None:  # the duplicate guard: that case goes on; this start is recorded, not made
                m.projected("linked_case_skipped", detail={"procedure": code, "running_case_id": running.id})
                continue
            child = self.pipeline.create(version, case.subject, case.started_by_id, data, parent=case,
                                         act=lambda c: c.record("linked_from", detail={"case_id": case.id}))
            m.projected("linked_case_started", detail={"case_id": child.id, "procedure": code})

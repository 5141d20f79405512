"""The mutation pipeline: the one shape of every change to a running case (docs/architecture.md).

``pipeline.mutate(case_id, act)`` locks the case row, loads its workflow, runs ``act(m)`` with a
``Mutation``, advances the engine once, saves the state with one compare-and-set UPDATE, runs the
projections (task rows, timer rows, case status and path, linked cases) from one walk of the task
tree, and writes the audit events the act recorded, all in the caller's transaction. ``create`` is
the same for a new case. Nothing else locks, loads or saves a case.

The act works on ``m.workflow`` (loaded when first used: an act that decides nothing changes in the
diagram never pays for it), records history with ``m.record(...)``, completes task rows with
``m.complete_row(...)`` and, for studio migration, swaps the workflow with ``m.replace(...)``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, cast

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import CursorResult, Table, bindparam, func, insert, inspect, select, union_all, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, joinedload, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from engine.access.assignment import scope_for
from engine.access.directory import RoleLevels
from engine.core import clock as clock_mod
from engine.core import workcalendar
from engine.core.errors import CaseExecutionError, ConflictError, NotFoundError, UnsafeExpressionError
from engine.models import (
    Case,
    CaseStatus,
    HolidayOverride,
    ProcedureVersion,
    Region,
    RegionLevel,
    Subject,
    TaskRow,
    TaskStatus,
    User,
    UserRole,
)
from engine.models.audit import AUDIT_TABLE, AuditLog
from engine.models.audit import COLUMNS as AUDIT_COLUMNS
from engine.procedures.definitions import DefinitionService
from engine.procedures.expressions import SCRIPT_ENGINE, failure_message
from engine.procedures.serialization import SERIALIZER_VERSION, dump_state, load_state
from engine.runtime import countersign
from engine.runtime.live_cache import LIVE_WORKFLOWS, database_key
from engine.runtime.notify import NotificationService
from engine.runtime.projections import Projections, TreeWalk, apply_outcome, case_status, completed_path

T = TypeVar("T")
_UNSET: Any = object()
_TASK = cast(Table, TaskRow.__table__)
_CASE = cast(Table, Case.__table__)
# the compare-and-set save, built once; the columns it sets are the parameters given (a plain table UPDATE:
# the case object is brought up to date by hand)
# The locking reads return only what a mutation reads: of the case's procedure version its id and content
# hash (the version's specs, manifest and forms are cached per content hash, engine/procedures/definitions.py),
# not the version's other columns nor its procedure (loaded when first used, e.g. for a case title). A wide
# row costs per column on every read (PostgreSQL: psycopg builds a column description each time). The task
# row's people are loaded only if used.
_NARROW_VERSION = joinedload(Case.version).load_only(ProcedureVersion.id, ProcedureVersion.content_hash) \
    .lazyload(ProcedureVersion.procedure)
_LOCK_CASE = select(Case).where(Case.id == bindparam("case_id")).options(_NARROW_VERSION) \
    .execution_options(populate_existing=True)
_LOCK_CASE_FOR_UPDATE = _LOCK_CASE.with_for_update(of=Case)
# the task row and its case in one statement
_LOCK_TASK = (select(Case, TaskRow).join(TaskRow, TaskRow.case_id == Case.id).where(TaskRow.id == bindparam("task_id"))
              .options(_NARROW_VERSION, lazyload(TaskRow.completed_by), lazyload(TaskRow.assignee))
              .execution_options(populate_existing=True))
_LOCK_TASK_FOR_UPDATE = _LOCK_TASK.with_for_update(of=Case)
_SAVE = update(_CASE).where(_CASE.c.id == bindparam("case_id"), _CASE.c.lock_version == bindparam("expected_lock"))


# the columns the compare-and-set save writes, in its parameters' order
_SAVED = ("state", "updated_at", "lock_version", "status", "outcome_reason", "finished_at", "return_count", "path",
          "procedure_version_id")


@functools.cache
def _complete_row_statement(columns: tuple[str, ...], prefix: str = ""):
    """``UPDATE task SET <columns> WHERE id = :row_id AND status = :expect``, built once per set of columns
    (``prefix`` names its parameters, for several in one statement)."""
    return update(_TASK).where(_TASK.c.id == bindparam(f"{prefix}row_id"),
                               _TASK.c.status == bindparam(f"{prefix}expect")) \
        .values({name: bindparam(f"{prefix}{name}") for name in columns})


@functools.cache
def _combined_save_statement(row_columns: tuple[tuple[str, ...], ...], events: int):
    """PostgreSQL: the compare-and-set save, the task row UPDATEs deferred to it (``complete_row(at_save=True)``)
    and the act's audit rows as one statement, one round trip: each a data-modifying CTE; the case's UPDATE
    returns each row UPDATE's matched-row count (no row returned: the case changed; a count of 0: that task
    row did). Built once per shape."""
    ctes = [_complete_row_statement(columns, f"r{i}_").returning(_TASK.c.id).cte(f"row_{i}")
            for i, columns in enumerate(row_columns)]
    counts = [select(func.count()).select_from(cte).scalar_subquery().label(f"row_{i}") for i, cte in enumerate(ctes)]
    if events:
        # INSERT … SELECT of typed parameters, one SELECT per row in order (UNION ALL), not a multi-row VALUES:
        # SQLAlchemy never caches a statement holding a multi-row VALUES, so it would be compiled again on
        # every save (≈ 3 ms of CPU, more than the rest of the save)
        rows = [select(*(bindparam(f"a{i}_{name}", type_=AUDIT_TABLE.c[name].type) for name in AUDIT_COLUMNS))
                for i in range(events)]
        ctes.append(insert(AUDIT_TABLE).from_select(list(AUDIT_COLUMNS), rows[0] if events == 1 else union_all(*rows))
                    .cte("events"))
    # the case's parameters prefixed too: an execution parameter named like a column (case_id, status) would
    # otherwise also be SET in the task UPDATEs
    return update(_CASE).where(_CASE.c.id == bindparam("c_id"), _CASE.c.lock_version == bindparam("c_expected_lock")) \
        .values({name: bindparam(f"c_{name}") for name in _SAVED}).add_cte(*ctes).returning(_CASE.c.id, *counts)


class Mutation:
    """One change to one locked case, as the act sees it."""

    def __init__(self, pipeline: CasePipeline, case: Case, workflow: BpmnWorkflow | None = None):
        self._pipeline = pipeline
        self.case = case
        self.version: ProcedureVersion = case.version
        self._workflow = workflow
        self.completed_before: set = set()  # ids of the tasks completed before the act (a new case: none)
        # the tree as stored before the act: the task and timer rows mirror it (None: read the rows instead)
        self.before: TreeWalk | None = TreeWalk() if workflow is not None else None
        self.completed_rows: list[tuple[TaskRow, TaskStatus]] = []
        self._row_writes: list[tuple[TaskRow, dict[str, Any]]] = []  # complete_row(at_save=True), not yet sent
        self.kept = False
        self.engine_steps = True
        self._events: list[dict[str, Any]] = []
        self._projected: list[dict[str, Any]] = []

    @property
    def workflow(self) -> BpmnWorkflow:
        """The case's live workflow (loaded on first use)."""
        if self._workflow is None:
            self._workflow, walk = self._pipeline.take(self.case)
            self.before = walk or TreeWalk.of(self._workflow)
            self.completed_before = {t.id for t in self.before.completed}
        return self._workflow

    @property
    def loaded(self) -> bool:
        return self._workflow is not None

    def record(self, action: str, *, task: TaskRow | None = None, user_id: int | None = None,
               opinion: str | None = None, detail: dict[str, Any] | None = None,
               client_addr: str | None = None, step: str | None = None, at: Any = None) -> None:
        """Add an event to the case's history (written once the case is saved)."""
        self._events.append(dict(action=action, task=task, user_id=user_id, opinion=opinion, detail=detail,
                                 client_addr=client_addr, step=step, at=at))

    def projected(self, action: str, *, detail: dict[str, Any] | None = None) -> None:
        """An event a projection found (a timer fired, a linked case started): written before the act's."""
        self._projected.append(dict(action=action, task=None, user_id=None, opinion=None, detail=detail,
                                    client_addr=None, step=None, at=None))

    def complete_row(self, row: TaskRow, *, by: int | None, action: str, expect: TaskStatus = TaskStatus.open,
                     opinion: str | None = _UNSET, data: dict[str, Any] | None = _UNSET,
                     at_save: bool = False) -> None:
        """Mark a task row completed by user ``by``, if it still has status ``expect``.

        ``at_save``: send the UPDATE just before the case's compare-and-set save instead of now (for an act
        that reads no task rows after it). On SQLite a transaction's first write takes the database's one
        write lock until the commit; sent at the save, the lock covers the writes and the commit, not the
        engine steps and the serialization. The check is the same, only later in the same transaction.

        :raises ConflictError: someone else completed (or cancelled) it meanwhile.
        """
        values: dict[str, Any] = dict(status=TaskStatus.completed, completed_at=self._pipeline.clock.now(),
                                      completed_by_id=by, action=action)
        if opinion is not _UNSET:
            values["opinion"] = opinion
        if data is not _UNSET:
            values["data"] = data
        self._row_writes.append((row, {**values, "expect": expect}))
        if not at_save:
            self.write_rows()
        for key, value in values.items():  # the row as it is (or will be, in this transaction) stored
            set_committed_value(row, key, value)
        self.completed_rows.append((row, expect))

    def take_row_writes(self) -> list[tuple[TaskRow, dict[str, Any]]]:
        """The task row UPDATEs ``complete_row`` has not sent yet, as (row, values with ``expect``), taken."""
        writes, self._row_writes = self._row_writes, []
        return writes

    def write_rows(self) -> None:
        """Send the task row UPDATEs ``complete_row`` has not sent yet.

        :raises ConflictError: a row was completed (or cancelled) by someone else meanwhile.
        """
        session = self._pipeline.session
        for row, values in self.take_row_writes():
            columns = tuple(key for key in values if key != "expect")
            with session.no_autoflush:  # a plain table UPDATE: the row object is brought up to date below
                done = cast("CursorResult[Any]", session.execute(
                    _complete_row_statement(columns), {"row_id": row.id, **values}))
            if done.rowcount != 1:
                raise ConflictError("该任务已被处理")

    def replace(self, workflow: BpmnWorkflow, version: ProcedureVersion) -> None:
        """Put the case on another version with its migrated workflow (studio migration)."""
        if self._workflow is None:
            self.completed_before = {t.id for t in workflow.get_tasks(state=TaskState.COMPLETED)}
        self.before = None  # the migrated tree is no longer the stored one: project from the rows
        self._workflow = workflow
        self.version = version
        self.case.procedure_version_id = version.id
        self.case.version = version

    def advance(self) -> None:
        """Run the engine now, inside the act (the pipeline runs it once more after the act)."""
        self._pipeline.advance(self.workflow)

    def keep(self) -> None:
        """Nothing changed in the workflow: do not save or project it (the recorded events are still written)."""
        self.kept = True

    def settled(self) -> None:
        """Save the workflow as the act left it, without running the engine (a cancelled case)."""
        self.engine_steps = False


class CasePipeline:
    """Lock → load → act → advance → save → project → audit, for one session (never commits)."""

    def __init__(self, session: Session, clock, definitions: DefinitionService,
                 notifications: NotificationService):
        self.session = session
        self.clock = clock
        self.definitions = definitions
        self.notifications = notifications
        self.audit = AuditLog(session, clock)
        self.projections = Projections(self)
        self._calendar: workcalendar.WorkCalendar | None = None

    # ------------------------------------------------------------------ what the diagram sees
    @property
    def role_levels(self) -> Mapping[str, RegionLevel]:
        return RoleLevels(self.session)

    @property
    def calendar(self) -> workcalendar.WorkCalendar:
        if self._calendar is None:
            overrides = {o.day: o.is_workday for o in self.session.scalars(select(HolidayOverride))}
            self._calendar = workcalendar.WorkCalendar(overrides)
        return self._calendar

    def role_members_at(self, role_code: str, region_code: str) -> list[str]:
        """Usernames of the active holders of role_code in the jurisdiction of a case in region_code (会签)."""
        level = self.role_levels.get(role_code)
        if level is None:
            raise ValueError(f"角色 {role_code!r} 不存在")
        return list(self.session.scalars(
            select(User.username).join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role_code == role_code, UserRole.region_code == scope_for(region_code, level),
                   User.is_active.is_(True)).order_by(User.username)))

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """The clock and working-day calendar that SpiffWorkflow and expressions see.

        The calendar's overrides are read from the database only if an expression asks for a working day.
        """
        with clock_mod.using(self.clock), workcalendar.using(workcalendar.LazyCalendar(lambda: self.calendar)), \
                countersign.using(self.role_members_at):
            yield

    # ------------------------------------------------------------------ the one shape
    def mutate(self, case_id: int, act: Callable[[Mutation], T]) -> T:
        """Lock the case, run act on it, and save, project and audit what it did.

        :raises NotFoundError: no such case.
        :raises ConflictError: the case is locked or changed by someone else.
        :raises CaseExecutionError: the workflow could not advance; nothing is saved.
        """
        return self.run(self.lock(case_id), act)

    def run(self, case: Case, act: Callable[[Mutation], T]) -> T:
        """``mutate`` for a case the caller has just locked with ``lock`` (to check a row under the lock first)."""
        expected = case.lock_version
        m = Mutation(self, case)
        with self.context():
            result = act(m)
            if m.loaded and not m.kept:
                self._finish(m, expected)
            else:
                m.write_rows()
        self._write_events(m)
        return result

    def create(self, version: ProcedureVersion, subject: Subject, started_by_id: int, data: dict[str, Any],
               parent: Case | None = None, act: Callable[[Mutation], None] | None = None) -> Case:
        """Start a case of version for subject, run it to its first wait state, save and project it."""
        now = self.clock.now()
        manifest = self.definitions.manifest(version)
        spec, subprocess_specs = self.definitions.specs(version)
        region = self.session.get(Region, subject.region_code)
        case = Case(
            procedure_version_id=version.id, subject_id=subject.id, region_code=subject.region_code,
            title=f"{subject.name} · {version.procedure.name}", status=CaseStatus.running, state="{}",
            serializer_version=SERIALIZER_VERSION, lock_version=0, return_count=0, started_by_id=started_by_id,
            parent_case_id=parent.id if parent else None, created_at=now, updated_at=now,
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
        with self.context():
            workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=SCRIPT_ENGINE)
            for task in workflow.get_tasks(state=TaskState.READY):
                task.data.update(initial)
            m = Mutation(self, case, workflow)
            if act is not None:
                act(m)
            self._finish(m, None)
        self._write_events(m)
        return case

    def _finish(self, m: Mutation, expected: int | None) -> None:
        if m.engine_steps:
            self.advance(m.workflow)
        now = self.clock.now()
        walk = TreeWalk.of(m.workflow)  # the one walk every projection reads
        apply_outcome(m.case, case_status(m.workflow, walk.completed, walk.finished), now)
        m.case.path = completed_path(walk.completed)
        self.save(m.case, m.workflow, expected, now, walk, m)
        self.projections.run(m, walk, now)

    def _write_events(self, m: Mutation) -> None:
        self.audit.record_all([{**event, "case_id": m.case.id} for event in [*m._projected, *m._events]])

    # ------------------------------------------------------------------ the steps
    def lock(self, case_id: int) -> Case:
        """The case row, locked for this transaction (FOR UPDATE on PostgreSQL).

        :raises NotFoundError: no such case.
        :raises ConflictError: another transaction holds the lock.
        """
        stmt = _LOCK_CASE_FOR_UPDATE if self.session.get_bind().dialect.name == "postgresql" else _LOCK_CASE
        try:
            case = self.session.execute(stmt, {"case_id": case_id}).scalar_one_or_none()
        except OperationalError as exc:
            raise ConflictError("案件正被他人处理,请稍后重试") from exc
        if case is None:
            raise NotFoundError("案件不存在")
        return case

    def lock_task(self, task_id: int) -> tuple[Case, TaskRow]:
        """A task row, read fresh, and its case locked, in one statement (``lock`` for a task's case).

        :raises NotFoundError: no such task.
        :raises ConflictError: another transaction holds the lock.
        """
        stmt = _LOCK_TASK_FOR_UPDATE if self.session.get_bind().dialect.name == "postgresql" else _LOCK_TASK
        try:
            found = self.session.execute(stmt, {"task_id": task_id}).first()
        except OperationalError as exc:
            raise ConflictError("案件正被他人处理,请稍后重试") from exc
        if found is None:
            raise NotFoundError("任务不存在")
        return found[0], found[1]

    def load(self, case: Case) -> BpmnWorkflow:
        """The case's workflow as stored, deserialized (a change goes through ``mutate``)."""
        version = case.version
        return load_state(case.state, case.serializer_version, self.definitions.specs(version),
                          lambda: version.spec_json)

    def take(self, case: Case) -> tuple[BpmnWorkflow, TreeWalk | None]:
        """The case's workflow for a mutation: this process's live copy of exactly the stored state if it
        has one (taken out of the cache while the mutation uses it, with its walk), else deserialized."""
        entry = LIVE_WORKFLOWS.take((database_key(self.session), case.id), case.lock_version, case.state)
        if entry is None:
            return self.load(case), None
        return entry.workflow, entry.walk

    @contextlib.contextmanager
    def reading(self, case: Case) -> Iterator[BpmnWorkflow]:
        """The case's workflow to read (not change) inside the block, in the diagram's context."""
        key = (database_key(self.session), case.id)
        lock_version, state = case.lock_version, case.state
        with self.context():
            entry = LIVE_WORKFLOWS.take(key, lock_version, state)
            yield entry.workflow if entry is not None else self.load(case)
        if entry is not None:
            LIVE_WORKFLOWS.give_back(key, entry)

    def advance(self, workflow: BpmnWorkflow) -> None:
        """Fire due timers and run the engine steps up to the next wait state.

        :raises CaseExecutionError: the diagram's own logic failed.
        """
        try:
            workflow.refresh_timers()
            workflow.do_engine_steps()
        except (SpiffWorkflowException, UnsafeExpressionError, NameError, TypeError, ValueError) as exc:
            raise CaseExecutionError(f"流程无法继续: {failure_message(exc)}") from exc

    def save(self, case: Case, workflow: BpmnWorkflow, expected_lock: int | None, now,
             walk: TreeWalk | None = None, m: Mutation | None = None) -> None:
        """Write the state with the case's status and path: a compare-and-set on lock_version.

        The act's deferred task row writes (``m``'s) are sent once the state is serialized, just before
        the case's UPDATE; on PostgreSQL in the same statement as it.

        :raises ConflictError: the case (or a deferred task row) changed since it was locked.
        """
        state = dump_state(workflow)
        writes = m.take_row_writes() if m is not None else []
        combined = m is not None and expected_lock is not None \
            and self.session.get_bind().dialect.name == "postgresql"
        events: list[dict[str, Any]] = []
        if m is not None and combined and walk is not None and self.projections.quiet(m, walk):
            # the projections record nothing: the act's events are all there is, in this statement
            events, m._events = self.audit.rows([{**event, "case_id": case.id} for event in m._events]), []
        if writes and not combined:
            assert m is not None
            m._row_writes = writes
            m.write_rows()
        if expected_lock is None:
            case.state = state
            case.updated_at = now
            case.lock_version = 1
            self.session.flush()
            LIVE_WORKFLOWS.remember(self.session, (database_key(self.session), case.id), 1, state, workflow, walk)
            return
        values = dict(state=state, updated_at=now, lock_version=expected_lock + 1, status=case.status,
                      outcome_reason=case.outcome_reason, finished_at=case.finished_at,
                      return_count=case.return_count, path=case.path,
                      procedure_version_id=case.procedure_version_id)
        params = {"case_id": case.id, "expected_lock": expected_lock, **values}
        try:
            # the attribute changes above travel in this one compare-and-set statement; no autoflush of them first
            with self.session.no_autoflush:
                if combined:
                    params = {"c_id": case.id, "c_expected_lock": expected_lock,
                              **{f"c_{key}": value for key, value in values.items()}}
                    for i, (row, row_values) in enumerate(writes):
                        params.update({f"r{i}_{key}": value for key, value in row_values.items()})
                        params[f"r{i}_row_id"] = row.id
                    for i, row_values in enumerate(events):
                        params.update({f"a{i}_{key}": value for key, value in row_values.items()})
                    statement = _combined_save_statement(
                        tuple(tuple(key for key in row_values if key != "expect") for _row, row_values in writes),
                        len(events))
                    counts = self.session.execute(statement, params).first()
                    if counts is not None and any(count != 1 for count in counts[1:]):
                        raise ConflictError("该任务已被处理")
                    saved = counts is not None
                else:
                    res = cast("CursorResult[Any]", self.session.execute(_SAVE, params))
                    saved = res.rowcount == 1
        except OperationalError as exc:
            raise ConflictError("案件正被他人处理,请稍后重试") from exc
        if not saved:
            raise ConflictError("案件已被他人更新,请刷新后重试")
        # the row now holds exactly these values (the case is locked): keep them as loaded instead of
        # reading the row (and its large state) back; any other change is discarded as expire() did
        for key, value in values.items():
            set_committed_value(case, key, value)
        instance = inspect(case)
        # an attribute with a change has its loaded value in committed_state (set_committed_value above took
        # the saved ones out): look only at those, not at the history of every attribute
        unsaved = [key for key in instance.committed_state if instance.attrs[key].history.has_changes()]
        if unsaved:
            self.session.expire(case, unsaved)
        # nothing of the case is pending now: clear its "modified" mark too, or the commit's flush would
        # visit it (a unit-of-work pass that writes nothing, ≈ as costly as the save itself)
        instance._commit_all(instance.dict, self.session.identity_map)
        LIVE_WORKFLOWS.remember(self.session, (database_key(self.session), case.id), expected_lock + 1, state,
                                workflow, walk)

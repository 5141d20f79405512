"""Moving running cases between versions of a procedure with SpiffWorkflow's diff/migration.

``migration_preview`` migrates each running case in memory; ``migrate_cases`` moves the chosen ones,
each move recorded in the case's history. Only cases inside the admin's regions are touched.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.util.diff import diff_workflow, migrate_workflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine.access.assignment import Actor
from engine.access.policy import AccessPolicy
from engine.core.errors import CaseExecutionError, NotFoundError, ValidationError
from engine.models import Case, CaseStatus, ProcedureVersion, TaskRow, TaskStatus
from engine.procedures.serialization import FULL_SERIALIZER, SERIALIZER_VERSION, dump_state, load_state
from engine.runtime.pipeline import Mutation
from engine.runtime.projections import is_timer, prune_event_manager
from engine.studio.ownership import StudioOwnership


@dataclass
class MigrationCheck:
    """Whether one running case can move to another version, and why not."""

    case_id: int
    title: str
    region_code: str
    current_steps: list[str]
    movable: bool
    reasons: list[str]
    moved: bool = False




class StudioMigration(StudioOwnership):
    """Case migration between versions."""

    # -- moving running cases between versions
    def _versions_pair(self, actor: Actor, from_id: int, to_id: int) -> tuple[ProcedureVersion, ProcedureVersion]:
        self.require_admin(actor)
        old, new = self.session.get(ProcedureVersion, from_id), self.session.get(ProcedureVersion, to_id)
        if old is None or new is None:
            raise NotFoundError("流程版本不存在")
        if old.procedure_id != new.procedure_id or old.id == new.id:
            raise ValidationError("版本无效", {"to": "只能迁移到同一流程的另一个版本"})
        self._require_change(actor, old.procedure.owner_region_code, f"流程「{old.procedure.name}」")
        return old, new

    def _running_cases(self, actor: Actor, version: ProcedureVersion) -> list[Case]:
        rows = self.session.scalars(select(Case).where(Case.procedure_version_id == version.id,
                                                       Case.status == CaseStatus.running).order_by(Case.id))
        return [c for c in rows if AccessPolicy.admin_covers(actor, c.region_code)]

    def migration_preview(self, actor: Actor, from_id: int, to_id: int) -> list[MigrationCheck]:
        """For each running case of the old version in the admin's regions: can it move, and if not why.
        Each case is migrated in memory only (nothing is written)."""
        old, new = self._versions_pair(actor, from_id, to_id)
        return [self._trial(case, new)[0] for case in self._running_cases(actor, old)]

    def migrate_cases(self, actor: Actor, from_id: int, to_id: int, case_ids: list[int], reason: str,
                      client_addr: str | None = None) -> list[MigrationCheck]:
        """Move the chosen running cases to the new version where SpiffWorkflow's diff allows it.

        Cases that cannot move stay as they are (their check says why). Each moved case gets a
        ``version_migrated`` event in its history.

        :raises ValidationError: no reason given, or no cases chosen.
        """
        old, new = self._versions_pair(actor, from_id, to_id)
        reason = (reason or "").strip()
        if not reason:
            raise ValidationError("请填写迁移原因", {"reason": "必须填写迁移原因"})
        if not case_ids:
            raise ValidationError("请选择案件", {"case_ids": "请至少选择一个案件"})
        results: list[MigrationCheck] = []
        pipeline = self.cases.pipeline
        for case_id in sorted(set(case_ids)):
            def move(m: Mutation) -> MigrationCheck:
                case = m.case
                if case.procedure_version_id != old.id or case.status != CaseStatus.running \
                        or not AccessPolicy.admin_covers(actor, case.region_code):
                    m.keep()
                    return MigrationCheck(case.id, case.title, case.region_code, [], False,
                                          ["案件不在此版本上运行,或不在您的管辖范围内"])
                check, workflow, completed_before = self._trial(case, new)
                if workflow is None:
                    m.keep()
                    return check
                m.replace(workflow, new)
                m.completed_before = completed_before  # what the move itself completes counts as done now
                m.settled()  # the trial advanced the migrated workflow already
                m.record("version_migrated", user_id=actor.user_id, step=f"版本迁移 v{old.version} → v{new.version}",
                         opinion=reason, client_addr=client_addr,
                         detail={"procedure": new.procedure.code, "from_version": old.version,
                                 "to_version": new.version, "current_steps": check.current_steps})
                check.moved = True
                return check

            results.append(pipeline.mutate(case_id, move))  # its projections also rename the kept rows' steps
        self.audit(actor, "studio_migrated", f"{new.procedure.name} v{old.version} → v{new.version}",
                   {"moved": [r.case_id for r in results if r.moved],
                    "refused": {str(r.case_id): r.reasons for r in results if not r.moved},
                    "owner_region_code": new.procedure.owner_region_code},
                   opinion=reason, client_addr=client_addr)
        self.session.flush()
        return results

    def _trial(self, case: Case, new: ProcedureVersion) -> tuple[MigrationCheck, BpmnWorkflow | None, set]:
        """Migrate a fresh copy of one case's workflow in memory; (check, migrated workflow or None, the ids
        of its tasks completed before the move)."""
        open_steps = [t.title for t in self.session.scalars(
            select(TaskRow).where(TaskRow.case_id == case.id, TaskRow.status == TaskStatus.open))]
        check = MigrationCheck(case.id, case.title, case.region_code, open_steps, False, [])
        new_spec, new_subs = self.definitions.specs(new)
        pipeline = self.cases.pipeline
        with pipeline.context():
            try:
                workflow = pipeline.load(case)  # a copy of its own: the case's live workflow is not touched
            except Exception:  # noqa: BLE001 - a case that cannot load cannot move
                check.reasons.append("案件状态无法读取")
                return check, None, set()
            completed_before = {t.id for t in workflow.get_tasks(state=TaskState.COMPLETED)}
            top, subs = diff_workflow(FULL_SERIALIZER.registry, workflow, new_spec, new_subs)
            live = TaskState.FINISHED_MASK | TaskState.WAITING | TaskState.READY | TaskState.STARTED
            for task in top.removed:
                if task.has_state(live):
                    check.reasons.append(f"{_state_word(task)}的步骤 {_task_label(task)} 在新版本中不存在")
            for sp_id, sp_diff in subs.items():
                sub = workflow.subprocesses[sp_id]
                if sp_diff is None:
                    check.reasons.append(f"子流程 {sub.spec.name} 在新版本中不存在")
                    continue
                for task in sp_diff.removed:
                    if task.has_state(live):
                        check.reasons.append(f"{_state_word(task)}的步骤 {_task_label(task)} 在新版本中不存在")
            if check.reasons:
                return check, None, set()
            kept = _keep_waiting_state(workflow)
            migrate_workflow(top, workflow, new_spec)
            workflow.subprocess_specs = new_subs
            for sp_id, sp_diff in subs.items():
                sub = workflow.subprocesses.get(sp_id)
                if sub is not None:
                    migrate_workflow(sp_diff, sub, new_subs[sub.spec.name])
            prune_event_manager(workflow)
            _restore_waiting_state(workflow, kept)
            try:
                pipeline.advance(workflow)
            except CaseExecutionError as exc:
                check.reasons.append(f"在新版本上无法继续: {exc}")
                return check, None, set()
            stale = _tasks_not_in(workflow, new_spec, new_subs)
            if stale:
                check.reasons.append(f"步骤 {', '.join(sorted(stale))} 无法对应到新版本")
                return check, None, set()
            try:
                load_state(dump_state(workflow), SERIALIZER_VERSION, (new_spec, new_subs), lambda: new.spec_json)
            except Exception:  # noqa: BLE001 - a state that cannot round-trip must not be saved
                check.reasons.append("迁移后的状态无法保存(序列化失败)")
                return check, None, set()
        check.movable = True
        return check, workflow, completed_before


def _task_label(task) -> str:
    spec = task.task_spec
    return f"{getattr(spec, 'bpmn_name', None) or ''}[{getattr(spec, 'bpmn_id', None) or spec.name}]"


def _state_word(task) -> str:
    if task.has_state(TaskState.COMPLETED):
        return "已完成"
    if task.has_state(TaskState.READY | TaskState.STARTED):
        return "正在办理"
    if task.has_state(TaskState.WAITING):
        return "正在等待"
    return "已取消" if task.has_state(TaskState.CANCELLED) else "当前"


def _all_tasks(workflow: BpmnWorkflow):
    yield from workflow.tasks.values()
    for sub in workflow.subprocesses.values():
        yield from sub.tasks.values()


def _keep_waiting_state(workflow: BpmnWorkflow) -> dict[Any, tuple[str, str | None, Any, dict[str, Any]]]:
    """Data and frozen timer due values of ready and waiting tasks, which migration resets."""
    kept = {}
    for task in _all_tasks(workflow):
        if task.has_state(TaskState.READY | TaskState.WAITING):
            event_def = getattr(task.task_spec, "event_definition", None)
            kept[task.id] = (task.task_spec.name, getattr(event_def, "expression", None),
                             deepcopy(task.internal_data.get("event_value")), deepcopy(task.data))
    return kept


def _restore_waiting_state(workflow: BpmnWorkflow, kept) -> None:
    """Give reset tasks back their data, and timers whose expression did not change their due time
    (a 公示 that had run five of seven days must not start again from zero)."""
    for task in _all_tasks(workflow):
        if task.id not in kept:
            continue
        name, expression, event_value, data = kept[task.id]
        if task.task_spec.name != name:
            continue
        task.data = data
        event_def = getattr(task.task_spec, "event_definition", None)
        if event_value is not None and is_timer(task) and getattr(event_def, "expression", None) == expression:
            task.internal_data["event_value"] = event_value


def _tasks_not_in(workflow: BpmnWorkflow, spec, subprocess_specs) -> set[str]:
    stale = set()
    for task in workflow.tasks.values():
        if spec.task_specs.get(task.task_spec.name) is not task.task_spec:
            stale.add(_task_label(task))
    for sub in workflow.subprocesses.values():
        sub_spec = subprocess_specs.get(sub.spec.name)
        for task in sub.tasks.values():
            if sub_spec is None or sub_spec.task_specs.get(task.task_spec.name) is not task.task_spec:
                stale.add(_task_label(task))
    return stale

"""Dry runs: a draft executed in memory under a FixedClock with sample data; nothing is stored but the
audit record that it happened (no case, task, timer or notification rows)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState

from engine.access.assignment import Actor
from engine.core import clock as clock_mod
from engine.core import workcalendar
from engine.core.clock import FixedClock
from engine.core.errors import CaseExecutionError, UnsafeExpressionError, ValidationError
from engine.procedures import checks
from engine.procedures import forms as forms_mod
from engine.procedures.checks.rules import DATA_KEY_RE, is_reserved_data_key
from engine.procedures.definitions import ProcedureBundle, bundle_from_files, role_of_lane
from engine.procedures.expressions import SCRIPT_ENGINE, failure_message
from engine.procedures.steps import properties_of
from engine.runtime import countersign
from engine.runtime.projections import case_status, completed_path, is_timer, timer_due
from engine.studio.validation import DraftProblems, StudioValidation

MAX_DRY_RUN_STEPS = 200
DRY_RUN_SECONDS = 5.0  # wall time a dry run may take (each expression is bounded too; this bounds their sum)


class DryRunTimeout(Exception):
    """The dry run used up its time budget (a cycle of automatic steps, or many costly expressions)."""


def _budget(seconds: float):
    """A did_complete_task callback for do_engine_steps that stops a dry run past its wall-time budget,
    also inside one engine-steps call (a cycle of script tasks never returns to the loop)."""
    deadline = time.monotonic() + seconds

    def check(_task=None) -> None:
        if time.monotonic() > deadline:
            raise DryRunTimeout(f"试运行超过 {seconds:g} 秒仍未结束,已停止:请检查流程中是否有不经过人工步骤的循环或过于复杂的表达式")
    return check
MAX_SAMPLE_BYTES = 64 * 1024


@dataclass
class DryRunStep:
    element_id: str
    name: str
    kind: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"element_id": self.element_id, "name": self.name, "kind": self.kind, "detail": self.detail}


@dataclass
class DryRunResult:
    """What a sandboxed run of a draft did: the elements completed (in order) and how it ended."""

    completed: bool
    status: str
    path: list[str]
    steps: list[DryRunStep]
    error: str | None = None
    error_element: str | None = None
    waiting: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"completed": self.completed, "status": self.status, "path": self.path,
                "steps": [s.as_dict() for s in self.steps], "error": self.error,
                "error_element": self.error_element, "waiting": self.waiting,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "ended_at": self.ended_at.isoformat() if self.ended_at else None}




def run_sandbox(bundle: ProcedureBundle, spec, subprocess_specs, sample: dict[str, Any], start: datetime,
                calendar: workcalendar.WorkCalendar | None = None) -> DryRunResult:
    """Run a compiled bundle in memory with sample data under a FixedClock; nothing is stored.

    Sample: ``{"data": {...}, "steps": {"<user task id>": {...}}}`` — each user task is approved with
    the values of its form's fields found in ``steps[id]`` or ``data`` (validated against the form);
    a waiting timer is fired by moving the sandbox clock to its due time.
    """
    data = sample.get("data") or {}
    per_step = sample.get("steps") or {}
    clock = FixedClock(start)
    steps: list[DryRunStep] = []
    result = DryRunResult(False, "running", [], steps, started_at=start)
    settings = bundle.settings
    with clock_mod.using(clock), workcalendar.using(calendar or workcalendar.WorkCalendar()), \
            countersign.using(lambda role, _region: [f"试运行{role}{i}" for i in (1, 2, 3)]):
        workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=SCRIPT_ENGINE)
        initial = {"case_id": 0, "subject_name": "试运行对象", "subject_kind": bundle.subject_kind,
                   "region_code": "000000000000", "region_name": "试运行", "settings": settings, **data}
        for task in workflow.get_tasks(state=TaskState.READY):
            task.data.update(initial)
        current = None
        over_budget = _budget(DRY_RUN_SECONDS)
        try:
            for _ in range(MAX_DRY_RUN_STEPS):
                current = None
                over_budget()
                workflow.refresh_timers()
                workflow.do_engine_steps(did_complete_task=over_budget)
                if workflow.is_completed():
                    result.completed = True
                    break
                ready = workflow.get_tasks(state=TaskState.READY, manual=True)
                if ready:
                    current = ready[0]
                    steps.append(_sandbox_user_task(bundle, current, data, per_step))
                    continue
                timers = [t for t in workflow.get_tasks(state=TaskState.WAITING) if is_timer(t)]
                dues = [(d, t) for t in timers if (d := timer_due(t)) is not None]
                if not dues:
                    result.waiting = [t.task_spec.bpmn_name or t.task_spec.bpmn_id
                                      for t in workflow.get_tasks(state=TaskState.WAITING)
                                      if getattr(t.task_spec, "bpmn_id", None)]
                    result.error = "流程在等待外部事件(如信号或消息),试运行到此为止"
                    break
                due, timer = min(dues, key=lambda pair: pair[0])
                current = timer
                clock.set(max(clock.now(), due) + timedelta(seconds=1))
                steps.append(DryRunStep(timer.task_spec.bpmn_id, timer.task_spec.bpmn_name or timer.task_spec.bpmn_id,
                                        "timer", f"定时到期 {due.isoformat()}"))
            else:
                result.error = f"超过 {MAX_DRY_RUN_STEPS} 步仍未结束(可能有死循环)"
        except DryRunTimeout as exc:
            result.error = str(exc)
            result.error_element = current.task_spec.bpmn_id if current is not None else None
        except ValidationError as exc:
            result.error = f"{exc}: " + ";".join(exc.errors.values())
            result.error_element = current.task_spec.bpmn_id if current is not None else None
        except (SpiffWorkflowException, UnsafeExpressionError, CaseExecutionError, NameError, TypeError,
                ValueError, KeyError) as exc:
            failed = getattr(exc, "task", None) or current
            result.error = f"流程无法继续: {failure_message(exc)}"
            result.error_element = getattr(getattr(failed, "task_spec", None), "bpmn_id", None)
        completed = workflow.get_tasks(state=TaskState.COMPLETED)
        result.path = completed_path(completed)
        result.status = case_status(workflow, completed, result.completed).label  # the runtime's one status rule
        result.ended_at = clock.now()
    return result


def _sandbox_user_task(bundle: ProcedureBundle, task, data: dict[str, Any], per_step: dict[str, Any]) -> DryRunStep:
    spec = task.task_spec
    props = properties_of(spec)
    schema = json.loads(bundle.files.get(f"form/{props.form_key}", '{"components": []}'))
    values = {**data, **(per_step.get(spec.bpmn_id) or {})}
    keys = {c["key"] for c in forms_mod.input_components(schema)}
    cleaned = forms_mod.validate(schema, {k: v for k, v in values.items() if k in keys})
    task.data.update(cleaned)
    task.data["decision"] = "approve"
    task.data["last_opinion"] = "试运行"
    if countersign.instance_parent(task) is not None:  # each sample signer agrees
        countersign.record_vote(task, "approve", "试运行")
    task.run()
    role = role_of_lane(spec.lane)
    filled = "、".join(f"{k}={v}" for k, v in cleaned.items())
    return DryRunStep(spec.bpmn_id, spec.bpmn_name or spec.bpmn_id, "user_task",
                      f"{role} 通过" + (f";{filled}" if filled else ""))




def _checked_sample(sample: Any) -> dict[str, Any]:
    if sample is None:
        sample = {}
    if not isinstance(sample, dict):
        raise ValidationError("样例数据无效", {"sample": "样例数据必须是 JSON 对象"})
    if len(json.dumps(sample, ensure_ascii=False).encode("utf-8")) > MAX_SAMPLE_BYTES:
        raise ValidationError("样例数据过大", {"sample": f"不能超过 {MAX_SAMPLE_BYTES // 1024} KB"})
    if set(sample) - {"data", "steps"}:
        sample = {"data": sample}
    data, steps = sample.get("data") or {}, sample.get("steps") or {}
    if not isinstance(data, dict) or not isinstance(steps, dict) or not all(isinstance(v, dict) for v in steps.values()):
        raise ValidationError("样例数据无效", {"sample": "格式应为 {\"data\": {...}, \"steps\": {\"步骤id\": {...}}}"})
    for key in data:
        if not DATA_KEY_RE.fullmatch(str(key)) or is_reserved_data_key(str(key)):
            raise ValidationError("样例数据无效", {"sample": f"字段名 {key!r} 不允许"})
    return {"data": data, "steps": steps}




class StudioDryRun(StudioValidation):
    """Dry runs of drafts."""

    # -- dry run
    def dry_run(self, actor: Actor, draft_id: int, sample: Any, client_addr: str | None = None) -> DryRunResult:
        """Run a draft in a sandbox with sample data (see ``run_sandbox``).

        :raises DefinitionError: the draft has problems; fix them first.
        :raises ValidationError: the sample is not ``{"data": {...}, "steps": {...}}``.
        """
        draft = self.get_draft(actor, draft_id)
        sample = _checked_sample(sample)
        inspected = checks.inspect(draft.files, self.check_context(self.draft_owner(draft)))
        if inspected.problems:
            raise DraftProblems("草稿未通过校验,不能试运行", inspected.problems)
        bundle = bundle_from_files(draft.files)
        result = run_sandbox(bundle, inspected.spec, inspected.subprocess_specs, sample, self.clock.now(),
                             self.cases.calendar)
        self.audit(actor, "studio_dry_run", f"{draft.name}({draft.code})",
                   {"draft_id": draft.id, "path": result.path, "status": result.status, "error": result.error,
                    "owner_region_code": self.draft_owner(draft)}, client_addr=client_addr)
        return result


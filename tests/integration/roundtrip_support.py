"""Explicit SpiffWorkflow save/restore between engine steps, shared by the procedure walk-throughs.

``round_trip_case`` loads a case's stored workflow, dumps and reloads it, checks the reload changed
nothing, lets the caller check the restored workflow against the task rows, and stores the round-tripped
state back, so the next engine step runs on a workflow that went through an explicit save and restore.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from engine.models import Case, TaskRow, TaskStatus
from engine.procedures.serialization import SERIALIZER_VERSION, dump_state, load_state


class _UpstreamSpecFreeConverter(BpmnWorkflowConverter):
    """The spec-free workflow dict as upstream's converters write it (engine/procedures/serialization.py
    writes the same dict faster: this is the reference it is checked against)."""

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct


_UPSTREAM = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure({**SPIFF_CONFIG,
                                                                      BpmnWorkflow: _UpstreamSpecFreeConverter}))


def upstream_dump_state(workflow) -> str:
    """``dump_state`` with SpiffWorkflow's own task and workflow converters."""
    _UPSTREAM.registry._encoder_mode = True
    try:
        return json.dumps(_UPSTREAM.to_dict(workflow), cls=_UPSTREAM._encoder_cls, ensure_ascii=False)
    finally:
        _UPSTREAM.registry._encoder_mode = False


def _spec_name(task) -> str:
    return task.task_spec.name


def snapshot(workflow, ready_name: Callable[[object], str] = _spec_name) -> dict[str, list[tuple[str, str]]]:
    """READY tasks as (name, data JSON) and WAITING tasks as (spec name, frozen event value), sorted."""
    ready = sorted((ready_name(t), json.dumps(t.data, sort_keys=True, ensure_ascii=False, default=str))
                   for t in workflow.get_tasks(state=TaskState.READY))
    waiting = sorted((t.task_spec.name, str(t.internal_data.get("event_value")))
                     for t in workflow.get_tasks(state=TaskState.WAITING))
    return {"ready": ready, "waiting": waiting}


def open_task_names(session, case_id: int) -> list[str]:
    """Sorted spec names of the case's open task rows."""
    return sorted(r.spec_name for r in session.scalars(
        select(TaskRow).where(TaskRow.case_id == case_id, TaskRow.status == TaskStatus.open)))


def round_trip_case(db, case_id: int, check: Callable[[object, object, dict], None],
                    ready_name: Callable[[object], str] = _spec_name) -> dict[str, list[tuple[str, str]]]:
    """Save/restore the case's workflow, assert it is unchanged, call ``check(session, restored, snap)``
    and store the restored state; returns the restored workflow's snapshot."""
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        version = case.version
        specs = work.definitions.specs(version)
        first = load_state(case.state, case.serializer_version, specs, version.spec_json)
        saved = dump_state(first)
        assert saved == upstream_dump_state(first)  # the faster converters write exactly upstream's state
        second = load_state(saved, SERIALIZER_VERSION, specs, version.spec_json)
        after = snapshot(second, ready_name)
        assert after == snapshot(first, ready_name)
        assert dump_state(second) == saved  # restore → save is stable
        assert second.is_completed() == first.is_completed()
        check(work.session, second, after)
        case.state = saved
        return after

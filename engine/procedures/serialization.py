"""Workflow state (de)serialization with the spec kept once per procedure version.

SpiffWorkflow embeds the whole spec in every serialized workflow (about half of a small
case). XiangFlow stores the spec once, in ``procedure_version.spec_json``, keeps the
restored spec objects in a per-process cache, and stores only the instance state per case.

Loading always goes through the serializer's ``migrate`` step. When a case was written by
an older serializer version, the stored spec dict is put back in so the upstream migrations
see the full structure they expect.
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Callable
from copy import copy, deepcopy
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, TaskConverter
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from engine.procedures.expressions import SCRIPT_ENGINE

_specs_for_restore: contextvars.ContextVar[tuple[Any, dict[str, Any]]] = contextvars.ContextVar("specs")
# during one load: each task id string → its UUID, parsed once (an id is read as a key, an id, a parent, a child)
_uuids_for_restore: contextvars.ContextVar[dict[str, UUID]] = contextvars.ContextVar("uuids")


class _SpecFreeWorkflowConverter(BpmnWorkflowConverter):
    """Writes the instance without its spec; restores it onto cached spec objects."""

    def to_dict(self, workflow):
        # WorkflowConverter.to_dict's keys, in its order; the tasks keyed by the id their dicts already
        # hold (``mapping_to_dict`` formats each UUID once more)
        registry = self.registry
        dct = {
            "data": registry.convert(registry.clean(workflow.data)),
            "correlations": workflow.correlations,
            "last_task": str(workflow.last_task.id) if workflow.last_task is not None else None,
            "success": workflow.success,
            "completed": workflow.completed,
            "tasks": {task_dct["id"]: task_dct for task_dct in map(registry.convert, workflow.tasks.values())},
            "root": str(workflow.task_tree.id),
        }
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct):
        if "spec" in dct:  # a full, migrated serialization of an older version
            return super().from_dict(dct)
        spec, subprocess_specs = _specs_for_restore.get()
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], _uuid, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(_uuid(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


_IDS = "_xf_ids"  # on a task: its id, parent and children as serialized (UUID objects → str is not free)


class _TaskConverter(TaskConverter):
    """``TaskConverter.to_dict`` with the same output, written for speed: the procedure walk-throughs
    (``tests/integration/roundtrip_support.py``) check every step's state against upstream's converters, and
    ``tests/integration/test_serialization_upstream.py`` every save of a live workflow.

    A save serializes every task of the tree (29 for a finished approval). The upstream method looks the
    parent up four times (a dict lookup by UUID each), compares the data through a helper call per key and
    formats every UUID again on every save; here a task keeps the strings of its id and parent (fixed) and
    of its children (made again when the children change).
    """

    def to_dict(self, task):
        parent = task.workflow.tasks.get(task._parent)
        if parent is None:
            data, delta = task.data, {}
        else:
            mine, theirs = task.data, parent.data
            data = {}
            delta = {
                "updates": {key: value for key, value in mine.items() if key not in theirs or value != theirs[key]},
                "deletions": [key for key in theirs if key not in mine],
            }
        ids = task.__dict__.get(_IDS)
        children = tuple(task._children)
        if ids is None or ids[0] is not task.id or ids[1] is not task._parent:
            ids = (task.id, task._parent, str(task.id), None if task._parent is None else str(task._parent), (), [])
        if ids[4] != children:
            ids = (*ids[:4], children, [str(child) for child in children])
        task.__dict__[_IDS] = ids
        return {
            "id": ids[2],
            "parent": ids[3] if parent is not None else None,
            "children": list(ids[5]),
            "last_state_change": task.last_state_change,
            "state": task.state,
            "task_spec": task.task_spec.name,
            "triggered": task.triggered,
            "internal_data": self.registry.convert(task.internal_data) if task.internal_data else {},
            "data": data,
            "delta": delta,
        }

    def from_dict(self, dct, workflow):
        """``TaskConverter.from_dict`` with the same result: each id parsed once per load, the parent's data
        copied as ``DeepMerge.merge({}, parent.data)`` does (a new dict, its dict/list/set values shallow-copied)
        without its per-key comparisons, and the strings of the ids kept for the next save (``to_dict``)."""
        uuid = _uuid
        task_id, parent_id, children_ids = dct["id"], dct["parent"], dct["children"]
        task = self.target_class(workflow, workflow.spec.task_specs.get(dct["task_spec"]), state=dct["state"],
                                 id=uuid(task_id))
        task._parent = None if parent_id is None else uuid(parent_id)
        children = [uuid(child) for child in children_ids]
        task._children = children
        task.last_state_change = dct["last_state_change"]
        task.triggered = dct["triggered"]
        internal = dct["internal_data"]
        task.internal_data = {} if internal == {} else self.registry.restore(internal)
        if isinstance(task.task_spec, CatchingEvent) and task.has_state(TaskState.WAITING):
            task.workflow.top_workflow.event_manager.add_task(task)
        delta = dct.get("delta")
        parent = workflow.tasks.get(task._parent) if task._parent is not None else None
        if delta and parent is not None:
            data = {key: copy(value) if isinstance(value, (dict, list, set)) else value
                    for key, value in parent.data.items()}
            updates = delta.get("updates")
            if updates:
                data.update(self.registry.restore(updates))
            for key in delta.get("deletions", ()):
                data.pop(key, None)
        else:
            data = self.registry.restore(dct["data"])
        task.data = data
        task.__dict__[_IDS] = (task.id, task._parent, task_id, parent_id, tuple(children), list(children_ids))
        return task


def _uuid(value: str) -> UUID:
    """The UUID of a task id string, parsed once per load (a fresh one outside a load)."""
    cache = _uuids_for_restore.get(None)
    if cache is None:
        return UUID(value)
    found = cache.get(value)
    if found is None:
        found = cache[value] = UUID(value)
    return found


_config = dict(SPIFF_CONFIG)
_config[BpmnWorkflow] = _SpecFreeWorkflowConverter
_config[Task] = _TaskConverter
_registry = BpmnWorkflowSerializer.configure(_config)
SERIALIZER = BpmnWorkflowSerializer(_registry)
SERIALIZER_VERSION: str = SERIALIZER.VERSION

# The full upstream serializer, for spec dicts and for the naive benchmark baseline.
FULL_SERIALIZER = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))


def spec_to_json(spec, subprocess_specs: dict[str, Any]) -> str:
    """Serialize a parsed process spec and its subprocess specs."""
    reg = FULL_SERIALIZER.registry
    return json.dumps(
        {
            "spec": reg.convert(spec),
            "subprocess_specs": {k: reg.convert(v) for k, v in subprocess_specs.items()},
        }
    )


def spec_from_json(text: str):
    reg = FULL_SERIALIZER.registry
    dct = json.loads(text)
    spec = reg.restore(dct["spec"])
    subs = {k: reg.restore(v) for k, v in dct["subprocess_specs"].items()}
    return spec, subs


class SpecCache:
    """Restored specs keyed by content hash: identical content is the same spec in any database,
    and a hash never changes meaning, so entries are never invalidated."""

    def __init__(self) -> None:
        self._specs: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, content_hash: str, spec_json: Callable[[], str]):
        found = self._specs.get(content_hash)
        if found is None:
            found = spec_from_json(spec_json())
            with self._lock:
                found = self._specs.setdefault(content_hash, found)
        return found


SPEC_CACHE = SpecCache()


def dump_state(workflow: BpmnWorkflow) -> str:
    """Serialize a workflow's instance state (without its spec) to JSON."""
    SERIALIZER.registry._encoder_mode = True
    try:
        return json.dumps(SERIALIZER.to_dict(workflow), cls=SERIALIZER._encoder_cls, ensure_ascii=False)
    finally:
        SERIALIZER.registry._encoder_mode = False


def load_state(state: str, serializer_version: str, specs: tuple[Any, dict[str, Any]],
               spec_json: Callable[[], str] | str) -> BpmnWorkflow:
    """Restore a workflow, migrating state written by an older serializer version.

    spec_json (the version's full spec, or a callable returning it) is read only for such a migration.
    """
    dct = json.loads(state)
    if serializer_version != SERIALIZER_VERSION:
        full = json.loads(spec_json() if callable(spec_json) else spec_json)
        dct["spec"] = deepcopy(full["spec"])
        dct["subprocess_specs"] = deepcopy(full["subprocess_specs"])
    dct[SERIALIZER.VERSION_KEY] = serializer_version
    SERIALIZER.migrate(dct)
    token = _specs_for_restore.set(specs)
    uuids = _uuids_for_restore.set({})
    try:
        workflow = SERIALIZER.from_dict(dct)
    finally:
        _uuids_for_restore.reset(uuids)
        _specs_for_restore.reset(token)
    workflow.script_engine = SCRIPT_ENGINE
    return workflow

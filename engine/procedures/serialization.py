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
from copy import deepcopy
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

from engine.procedures.expressions import SCRIPT_ENGINE

_specs_for_restore: contextvars.ContextVar[tuple[Any, dict[str, Any]]] = contextvars.ContextVar("specs")


class _SpecFreeWorkflowConverter(BpmnWorkflowConverter):
    """Writes the instance without its spec; restores it onto cached spec objects."""

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
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


def _uuid(value):
    from uuid import UUID

    return UUID(value)


_config = dict(SPIFF_CONFIG)
_config[BpmnWorkflow] = _SpecFreeWorkflowConverter
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
    try:
        workflow = SERIALIZER.from_dict(dct)
    finally:
        _specs_for_restore.reset(token)
    workflow.script_engine = SCRIPT_ENGINE
    return workflow

"""The state a save writes is exactly what SpiffWorkflow's own converters write, also for a live workflow
that this process keeps and changes across mutations (engine/procedures/serialization.py keeps strings
on its tasks between saves)."""

from __future__ import annotations

from engine import demo_data as D
from engine.models import CaseStatus
from engine.procedures.serialization import dump_state
from engine.runtime import pipeline
from tests.integration.notices_support import complete_exit_notice
from tests.integration.roundtrip_support import upstream_dump_state


def test_every_save_of_an_exit_case_writes_upstreams_state(db, monkeypatch):
    saves = []

    def checked(workflow):
        ours = dump_state(workflow)
        assert ours == upstream_dump_state(workflow)
        saves.append(len(ours))
        return ours

    monkeypatch.setattr(pipeline, "dump_state", checked)
    hits = pipeline.LIVE_WORKFLOWS.hits
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    for number, (username, data) in enumerate(D.REVIEW_STEPS):
        db.complete(case_id, username, data=data)
        if number in (0, 3):  # the public-notice periods: issue, then the timer fires
            assert db.pass_notice() == 1
    complete_exit_notice(db, case_id)
    assert db.case(case_id).status == CaseStatus.exited
    assert len(saves) >= 10
    assert pipeline.LIVE_WORKFLOWS.hits > hits, "the saves were of live workflows kept across mutations"


def _upstream_load(state: str, specs):
    """``load_state`` with SpiffWorkflow's own task converter (the reference for ours)."""
    import json

    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

    from engine.procedures import serialization

    upstream = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(
        {**SPIFF_CONFIG, BpmnWorkflow: serialization._SpecFreeWorkflowConverter}))
    dct = json.loads(state)
    dct[upstream.VERSION_KEY] = serialization.SERIALIZER_VERSION
    upstream.migrate(dct)
    token = serialization._specs_for_restore.set(specs)
    try:
        return upstream.from_dict(dct)
    finally:
        serialization._specs_for_restore.reset(token)


def _tasks(workflow) -> list[tuple]:
    everything = [workflow, *workflow.subprocesses.values()]
    return [(str(t.id), str(t._parent), [str(c) for c in t._children], t.state, t.task_spec.name, t.triggered,
             t.last_state_change, t.data, t.internal_data)
            for w in everything for t in sorted(w.tasks.values(), key=lambda t: str(t.id))]


def test_every_load_of_an_exit_case_restores_what_upstream_restores(db, monkeypatch):
    loads = []
    original = pipeline.load_state

    def checked(state, serializer_version, specs, spec_json):
        ours = original(state, serializer_version, specs, spec_json)
        theirs = _upstream_load(state, specs)
        assert _tasks(ours) == _tasks(theirs)
        assert sorted(map(str, ours.event_manager.tasks)) == sorted(map(str, theirs.event_manager.tasks))
        for task in ours.get_tasks():  # a copy of the parent's data, not the parent's objects
            parent = task.parent
            if parent is not None:
                assert task.data is not parent.data
                assert all(value is not parent.data.get(key) for key, value in task.data.items()
                           if isinstance(value, (dict, list, set)))
        assert dump_state(ours) == state
        loads.append(state)
        return ours

    monkeypatch.setattr(pipeline, "load_state", checked)
    capacity = pipeline.LIVE_WORKFLOWS.capacity
    pipeline.LIVE_WORKFLOWS.capacity = 0  # every mutation loads the stored state
    try:
        case_id = db.start_case()
        db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
        for number, (username, data) in enumerate(D.REVIEW_STEPS):
            db.complete(case_id, username, data=data)
            if number in (0, 3):
                assert db.pass_notice() == 1
        complete_exit_notice(db, case_id)
    finally:
        pipeline.LIVE_WORKFLOWS.capacity = capacity
    assert db.case(case_id).status == CaseStatus.exited
    assert len(loads) >= 8

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

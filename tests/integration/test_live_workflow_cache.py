"""The per-process cache of live workflows (engine/runtime/live_cache.py) never stands for a state the
database does not hold: another process's save, a rolled-back transaction or savepoint, and a row that
changed under the same lock_version all make it miss, and the case goes on from what is stored."""

from __future__ import annotations

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select, update

from engine import demo_data as D
from engine.models import AuditEvent, Case, Subject, TaskRow
from engine.runtime import live_cache, pipeline
from engine.runtime.live_cache import LiveWorkflows, database_key


@pytest.fixture
def cache(monkeypatch) -> LiveWorkflows:
    """This test's process cache (the module's one, replaced so tests do not share entries)."""
    fresh = LiveWorkflows(capacity=64)
    monkeypatch.setattr(pipeline, "LIVE_WORKFLOWS", fresh)
    return fresh


def _key(db, case_id: int) -> tuple[str, int]:
    with db.uow() as work:
        return database_key(work.session), case_id


def _households(db, count: int) -> list[int]:
    actor = db.actor("demo_village")
    with db.uow() as work:
        ids = [s.id for s in work.session.scalars(select(Subject).where(Subject.kind == "household")
                                                  .order_by(Subject.id)) if actor.covers(s.region_code)]
    return ids[:count]


def _steps(db, case_id: int) -> list[tuple[str, str, str | None]]:
    with db.uow() as work:
        return [(r.spec_name, r.status.value, r.action) for r in work.session.scalars(
            select(TaskRow).where(TaskRow.case_id == case_id).order_by(TaskRow.id))]


def test_consecutive_completions_in_one_process_reuse_the_saved_workflow_and_end_as_a_cold_run_does(
        db, cache, monkeypatch):
    first, second = _households(db, 2)
    warm = db.start_case(subject_id=first)
    db.complete(warm, "demo_village", data=D.HOUSEHOLD_CHECK)
    hits = cache.hits
    db.complete(warm, "demo_village", data=D.VILLAGE_REVIEW)
    assert cache.hits > hits, "the second completion did not reuse the workflow the first one saved"

    monkeypatch.setattr(pipeline, "LIVE_WORKFLOWS", LiveWorkflows(capacity=0))  # a process without the cache
    cold = db.start_case(subject_id=second)
    db.complete(cold, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(cold, "demo_village", data=D.VILLAGE_REVIEW)
    assert _steps(db, warm) == _steps(db, cold)
    assert [t.spec_name for t in db.open_tasks(warm)] == ["issue_village_notice"]
    assert db.case(warm).path == db.case(cold).path
    assert db.case(warm).lock_version == db.case(cold).lock_version == 3


def test_a_save_by_another_process_makes_this_processs_cached_workflow_miss(db, cache, monkeypatch):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    key = _key(db, case_id)
    assert key in cache._entries and cache._entries[key].lock_version == 2

    other_process = LiveWorkflows(capacity=64)
    monkeypatch.setattr(pipeline, "LIVE_WORKFLOWS", other_process)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)  # lock_version 2 → 3, elsewhere
    monkeypatch.setattr(pipeline, "LIVE_WORKFLOWS", cache)

    assert cache._entries[key].lock_version == 2  # this process still holds the old one
    misses = cache.misses
    with db.uow() as work:  # reading the case does not use the stale entry
        computed = work.cases.decision_data(work.session.get(Case, case_id))
    assert cache.misses == misses + 1
    assert isinstance(computed, dict)
    with db.uow() as work:  # a mutation from the stored state (3), not the cached one (2)
        done = work.cases.complete_issuance(case_id, "village_public_notice", db.actor("demo_village"), "T-1")
    assert done is not None and done[0].spec_name == "issue_village_notice"
    assert [t.spec_name for t in done[1]] == ["village_notice_timer"]
    assert db.case(case_id).lock_version == 4
    assert [t.spec_name for t in db.open_tasks(case_id)] == []  # the village notice period runs
    assert _steps(db, case_id)[-1] == ("issue_village_notice", "completed", "issue")


def test_a_rolled_back_transaction_leaves_nothing_in_the_cache(db, cache):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    key = _key(db, case_id)
    (row,) = db.open_tasks(case_id)
    with pytest.raises(RuntimeError, match="after the save"):
        with db.uow() as work:
            work.cases.complete_task(row.id, db.actor("demo_village"), "approve", "同意", D.VILLAGE_REVIEW)
            assert work.session.get(Case, case_id).lock_version == 3
            raise RuntimeError("the request fails after the save")
    assert key not in cache._entries  # taken by the failed mutation, and its result never committed
    assert db.case(case_id).lock_version == 2
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)  # goes on from the stored state
    assert [t.spec_name for t in db.open_tasks(case_id)] == ["issue_village_notice"]
    assert cache._entries[key].lock_version == 3


def test_a_rolled_back_savepoint_leaves_nothing_in_the_cache_while_the_rest_commits(db, cache):
    first, second = (db.start_case(subject_id=s) for s in _households(db, 2))
    rows = {c: db.open_tasks(c)[0] for c in (first, second)}
    for c in (first, second):
        db.sign_if_asked(rows[c].id, "demo_village")
    village = db.actor("demo_village")
    with db.uow() as work:
        with pytest.raises(RuntimeError):
            with work.session.begin_nested():
                work.cases.complete_task(rows[first].id, village, "approve", "同意", D.HOUSEHOLD_CHECK)
                raise RuntimeError("this one is rolled back")
        work.cases.complete_task(rows[second].id, village, "approve", "同意", D.HOUSEHOLD_CHECK)
    assert _key(db, first) not in cache._entries
    assert cache._entries[_key(db, second)].lock_version == 2
    assert db.case(first).lock_version == 1 and db.case(second).lock_version == 2


def test_a_row_changed_under_the_same_lock_version_is_not_served_from_the_cache(db, cache):
    """A re-created database (ids and lock_versions start again) holds another state under the same key."""
    one, two = _households(db, 2)
    case_id = db.start_case(subject_id=one)
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    other = db.start_case(subject_id=two)
    with db.uow() as work:
        fresh_state = work.session.get(Case, other).state  # a case that has not passed 入户核查
        work.session.execute(update(Case).where(Case.id == case_id).values(state=fresh_state))
    misses = cache.misses
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        assert case.lock_version == 2
        with work.cases.pipeline.reading(case) as workflow:
            ready = [t.task_spec.bpmn_id for t in workflow.get_tasks(manual=True) if t.state == TaskState.READY]
    assert cache.misses == misses + 1
    assert ready == ["household_check"]  # what the row holds, not what the cache held


def test_a_cached_workflow_is_handed_to_one_mutation_at_a_time():
    cache = LiveWorkflows(capacity=4)
    state, workflow = '{"x": 1}', object()
    cache.store(("db", 1), live_cache.Entry(5, hash(state), len(state), workflow))
    entry = cache.take(("db", 1), 5, state)
    assert entry is not None and entry.workflow is workflow
    assert cache.take(("db", 1), 5, state) is None  # the first taker holds it; a second one deserializes
    cache.give_back(("db", 1), entry)
    assert cache.take(("db", 1), 6, state) is None  # another lock_version: a miss, and the entry is gone
    assert len(cache) == 0


def test_the_cache_keeps_at_most_its_capacity_and_zero_turns_it_off(db):
    cache = LiveWorkflows(capacity=2)
    for case_id in range(5):
        cache.store(("db", case_id), live_cache.Entry(1, 0, 0, object()))
    assert sorted(k[1] for k in cache._entries) == [3, 4]
    off = LiveWorkflows(capacity=0)
    with db.uow() as work:
        off.remember(work.session, ("db", 1), 1, "{}", object())
    assert len(off) == 0 and not off.enabled


def test_audit_rows_of_a_completion_are_written_once(db, cache):
    case_id = db.start_case()
    db.complete(case_id, "demo_village", data=D.HOUSEHOLD_CHECK)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    with db.uow() as work:
        actions = [e.action for e in work.session.scalars(
            select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.id))]
    assert actions.count("approve") == 2 and actions[0] == "start"

"""退回 from a step after a parallel join into one of the parallel branches.

The countersign_support procedure: 申请 → split → 乡镇审核 (branch_a) ∥ 部门审核 (branch_b) → join → 领导小组会签
(sign) → 结果登记. Returning from after the join to one branch reopens that branch only: the other
branch's work is kept, everything after the join is cancelled, and when the branch is completed again
the join fires once and the step after it opens once. Task rows are counted by step and status.
"""

from __future__ import annotations

from collections import Counter

import pytest
from SpiffWorkflow.util.task import TaskState

from engine.models import Case
from engine.procedures.serialization import SERIALIZER_VERSION, SPEC_CACHE, dump_state, load_state
from engine.queries.inbox import merged_data
from tests.integration.test_countersign import (
    SIGNERS,
    _act,
    _counts,
    _deploy,
    _open,
    _private_spec_cache,  # noqa: F401 (autouse fixture)
    _to_signing,
    _workflow_data,
)

BRANCH_DATA = {"branch_a": ("demo_township", "乡镇意见:同意"), "branch_b": ("demo_dept", "部门意见:同意")}


def _review(db, case_id: int, step: str, note: str | None = None) -> None:
    user, default = BRANCH_DATA[step]
    _act(db, case_id, step, user, data={"review_note": note or default})


def _save_and_restore(db, case_id: int) -> None:
    """Write the case's state back through a fresh serialization, as a new process would."""
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        version = case.version
        SPEC_CACHE._specs.clear()
        workflow = load_state(case.state, case.serializer_version, work.definitions.specs(version),
                              version.spec_json)
        saved = dump_state(workflow)
        SPEC_CACHE._specs.clear()
        again = load_state(saved, SERIALIZER_VERSION, work.definitions.specs(version), version.spec_json)
        assert dump_state(again) == saved
        case.state = saved
    SPEC_CACHE._specs.clear()


def _ready_data(db, case_id: int) -> dict[str, dict]:
    """READY user tasks of the stored workflow: step → task data."""
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        workflow = load_state(case.state, case.serializer_version, work.definitions.specs(case.version),
                              case.version.spec_json)
        return {t.task_spec.bpmn_id: dict(t.data) for t in workflow.get_tasks(state=TaskState.READY, manual=True)}


def _sign_row(db, case_id: int, user: str = "demo_county"):
    return next(r for r in db.open_tasks(case_id) if r.spec_name == "sign" and r.assignee.username == user)


@pytest.mark.parametrize(("branch", "other"), [("branch_a", "branch_b"), ("branch_b", "branch_a")])
def test_return_from_after_the_join_into_one_branch_keeps_the_other_and_the_join_fires_once(db, branch, other):
    case_id = _to_signing(db)  # 乡镇审核 completed first, then 部门审核 completed the join
    with db.uow() as work:  # both branches are offered: the one that completed the join first
        assert work.cases.return_targets(_sign_row(db, case_id)) == [
            ("branch_b", "部门审核"), ("branch_a", "乡镇审核"), ("apply", "申请")]
    _act(db, case_id, "sign", "demo_county")  # one vote in, then another signer returns
    before = _counts(db, case_id)
    assert before == Counter({("apply", "completed"): 1, ("branch_a", "completed"): 1,
                              ("branch_b", "completed"): 1, ("sign", "completed"): 1, ("sign", "open"): 2})
    _act(db, case_id, "sign", "demo_leader1", "return", opinion="请重新审核投资", return_to=branch)
    assert _counts(db, case_id) == before - Counter({("sign", "open"): 2}) + Counter({
        ("sign", "completed"): 1, ("sign", "cancelled"): 1, (branch, "open"): 1})
    assert _open(db, case_id) == Counter({branch: 1})  # the other branch is not redone
    ready = _ready_data(db, case_id)
    assert list(ready) == [branch]
    assert (ready[branch]["return_reason"], ready[branch]["returned_from"]) == ("请重新审核投资", "领导小组会签")

    _review(db, case_id, branch, "复核后同意")
    rows = db.open_tasks(case_id)
    assert sorted(r.assignee.username for r in rows) == SIGNERS  # one fresh set of signers, once
    assert len({r.instance_group for r in rows}) == 1
    assert _counts(db, case_id) == Counter({
        ("apply", "completed"): 1, (branch, "completed"): 2, (other, "completed"): 1,
        ("sign", "completed"): 2, ("sign", "cancelled"): 1, ("sign", "open"): 3})
    data = _workflow_data(db, case_id)
    assert data["review_note"] in ("复核后同意", BRANCH_DATA[other][1])
    assert "votes" not in data  # no vote of the dropped round survives
    for user in SIGNERS[:2]:
        _act(db, case_id, "sign", user)
    assert _open(db, case_id) == Counter({"register": 1})


def test_the_kept_branch_stays_completed_and_its_data_reaches_the_steps_after_the_join(db):
    case_id = db.start_case(procedure=_deploy(db, "ratio"))
    _act(db, case_id, "apply", "demo_village", data={"project": "村级光伏电站", "signers": SIGNERS})
    _review(db, case_id, "branch_b", "部门意见:投资核定无误")
    _review(db, case_id, "branch_a", "乡镇意见:同意")  # 乡镇 completes the join this time
    _act(db, case_id, "sign", "demo_county", "return", opinion="乡镇复核", return_to="branch_a")
    _act(db, case_id, "branch_a", "demo_township", data={})  # redone without a note of its own
    with db.uow() as work:
        rows = work.inbox.case_tasks(case_id)
    kept = [r for r in rows if r.spec_name == "branch_b"]
    assert [(r.status.value, r.action, r.data) for r in kept] == [
        ("completed", "approve", {"review_note": "部门意见:投资核定无误"})]
    signing = _ready_data(db, case_id)["sign"]  # the join merged the kept branch's data once more
    assert signing["review_note"] == "部门意见:投资核定无误"
    assert merged_data(rows)["project"] == "村级光伏电站"


def test_save_and_restore_between_every_step_of_a_return_into_a_branch(db):
    case_id = _to_signing(db)
    _save_and_restore(db, case_id)
    _act(db, case_id, "sign", "demo_county", "return", opinion="乡镇复核", return_to="branch_a")
    _save_and_restore(db, case_id)
    assert _open(db, case_id) == Counter({"branch_a": 1})
    with db.uow() as work:
        assert work.cases.return_targets(db.open_tasks(case_id)[0]) == [("apply", "申请")]
    _review(db, case_id, "branch_a")
    _save_and_restore(db, case_id)
    assert _open(db, case_id) == Counter({"sign": 3})
    for user in SIGNERS[:2]:
        _act(db, case_id, "sign", user)
        _save_and_restore(db, case_id)
    assert _open(db, case_id) == Counter({"register": 1})


def test_two_rounds_of_returns_into_each_branch_leave_no_duplicate_task(db):
    case_id = _to_signing(db)
    for round_no, branch in enumerate(["branch_a", "branch_b", "branch_a", "branch_b"], start=1):
        _act(db, case_id, "sign", "demo_leader2", "return", opinion=f"第{round_no}次退回", return_to=branch)
        assert _open(db, case_id) == Counter({branch: 1})
        _review(db, case_id, branch)
        assert _open(db, case_id) == Counter({"sign": 3})
    counts = _counts(db, case_id)
    assert counts[("branch_a", "completed")] == 3 and counts[("branch_b", "completed")] == 3
    assert counts[("sign", "open")] == 3 and counts[("sign", "cancelled")] == 3 * 4 - 4
    for user in SIGNERS[:2]:
        _act(db, case_id, "sign", user)
    (register,) = db.open_tasks(case_id)
    with db.uow() as work:
        assert work.cases.return_targets(register) == [
            ("sign", "领导小组会签"), ("branch_b", "部门审核"), ("branch_a", "乡镇审核"), ("apply", "申请")]
    _act(db, case_id, "register", "demo_township", "return", opinion="乡镇补登", return_to="branch_a")
    assert _open(db, case_id) == Counter({"branch_a": 1})
    _review(db, case_id, "branch_a")
    assert _open(db, case_id) == Counter({"sign": 3})


def test_return_from_after_the_join_to_before_the_split_cancels_both_branches(db):
    case_id = _to_signing(db)
    _act(db, case_id, "sign", "demo_county", "return", opinion="重新申请", return_to="apply")
    assert _open(db, case_id) == Counter({"apply": 1})
    _act(db, case_id, "apply", "demo_village", data={"project": "村级光伏电站", "signers": SIGNERS})
    assert _open(db, case_id) == Counter({"branch_a": 1, "branch_b": 1})  # both branches again, once each

"""会签/或签 (multi-instance user steps) and 退回 across parallel branches and 会签 steps.

The small procedure of countersign_support (an application naming its signers, two parallel
reviews, a 会签 of the county leading group, a registration) runs in three variants: all must
agree, any one agrees, two thirds agree. Every 退回 test counts the task rows by step and status
before and after: no task is lost or duplicated. P4 (项目库) shows signers taken from the role.
"""

from __future__ import annotations

from collections import Counter

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select, update

from engine.core.errors import ForbiddenError, ValidationError
from engine.models import AuditEvent, Case, CaseStatus, TaskRow, TaskStatus, User
from engine.procedures.serialization import SERIALIZER_VERSION, SPEC_CACHE, dump_state, load_state
from tests.integration import countersign_support as support

SIGNERS = ["demo_county", "demo_leader1", "demo_leader2"]
APPLICATION = {"project": "村级光伏电站", "signers": SIGNERS}


@pytest.fixture(autouse=True)
def _private_spec_cache(monkeypatch):
    """SQLite test databases are copies of one template: a version id made here may name another
    procedure in another test, and SPEC_CACHE is keyed by version id."""
    monkeypatch.setattr(SPEC_CACHE, "_specs", {})


def _deploy(db, mode: str) -> str:
    with db.uow() as work:
        work.definitions.deploy(support.bundle(mode), "tester", set(work.directory.role_levels()))
    return f"cs_{mode}"


def _rows(db, case_id: int) -> list[TaskRow]:
    with db.uow() as work:
        return work.inbox.case_tasks(case_id)


def _counts(db, case_id: int) -> Counter:
    """(step, status) → how many task rows."""
    return Counter((r.spec_name, r.status.value) for r in _rows(db, case_id))


def _open(db, case_id: int) -> Counter:
    return Counter(r.spec_name for r in db.open_tasks(case_id))


def _act(db, case_id: int, step: str, user: str, action: str = "approve", opinion: str = "同意",
         data: dict | None = None, **kwargs) -> None:
    (row,) = [r for r in db.open_tasks(case_id)
              if r.spec_name == step and (r.instance_group is None or r.assignee.username == user)]
    with db.uow() as work:
        work.cases.complete_task(row.id, db.actor(user), action, opinion, data or {}, **kwargs)


def _to_signing(db, mode: str = "ratio", signers: list[str] | None = None) -> int:
    """A case of the variant through its application and both parallel reviews: the 会签 is open."""
    case_id = db.start_case(procedure=_deploy(db, mode))
    _act(db, case_id, "apply", "demo_village", data={**APPLICATION, "signers": signers or SIGNERS})
    _act(db, case_id, "branch_a", "demo_township")
    _act(db, case_id, "branch_b", "demo_dept")
    return case_id


def _workflow_data(db, case_id: int) -> dict:
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        workflow = load_state(case.state, case.serializer_version, work.definitions.specs(case.version),
                              lambda: case.version.spec_json)
        return dict((workflow.last_task or workflow.task_tree).data)


# ----------------------------------------------------------------------------- signers and completion
def test_each_signer_named_on_the_form_gets_their_own_row_and_two_thirds_move_the_case_on(db):
    case_id = _to_signing(db)
    rows = db.open_tasks(case_id)
    assert [(r.spec_name, r.assignee.username, r.multi_sign) for r in rows] == [
        ("sign", u, "ratio") for u in SIGNERS]
    assert len({r.instance_group for r in rows}) == 1
    with db.uow() as work:  # a signer's row is theirs alone, even for another holder of the role
        with pytest.raises(ForbiddenError):
            work.cases.complete_task(rows[0].id, db.actor("demo_leader1"), "approve", "同意", {})
        todo = work.inbox.todo(db.actor("demo_leader1"))
        assert [(t.spec_name, t.assignee.username) for t in todo] == [("sign", "demo_leader1")]
        assert work.inbox.instance_progress(todo)[todo[0].id]["label"] == "会签 0/3"

    _act(db, case_id, "sign", "demo_leader1", opinion="同意,资金安排合理", data={"sign_note": "已核"})
    with db.uow() as work:
        open_rows = work.inbox.todo(db.actor("demo_leader2"))
        progress = work.inbox.instance_progress(open_rows)[open_rows[0].id]
    assert progress == {"mode": "ratio", "label": "会签 1/3", "signer": "demo_leader2", "done": 1, "total": 3}
    assert _counts(db, case_id)[("sign", "open")] == 2
    _act(db, case_id, "sign", "demo_leader2", opinion="同意")

    assert _counts(db, case_id) == Counter({
        ("apply", "completed"): 1, ("branch_a", "completed"): 1, ("branch_b", "completed"): 1,
        ("sign", "completed"): 2, ("sign", "cancelled"): 1, ("register", "open"): 1})
    cancelled = [r for r in _rows(db, case_id) if r.status == TaskStatus.cancelled]
    assert [r.assignee.username for r in cancelled] == ["demo_county"]  # 无需处理: the ratio was met
    data = _workflow_data(db, case_id)  # what the later steps see
    assert data["votes"] == [
        {"signer": "demo_leader1", "decision": "approve", "opinion": "同意,资金安排合理"},
        {"signer": "demo_leader2", "decision": "approve", "opinion": "同意"}]
    assert (data["nr_of_instances"], data["nr_of_approvals"], data["nr_of_rejections"]) == (3, 2, 0)
    with db.uow() as work:  # each signer's opinion is in the case history
        events = work.session.execute(select(User.username, AuditEvent.action, AuditEvent.opinion).join(
            User, User.id == AuditEvent.user_id).where(AuditEvent.case_id == case_id, AuditEvent.step == "领导小组会签")
            .order_by(AuditEvent.id)).all()
    assert events == [("demo_leader1", "approve", "同意,资金安排合理"), ("demo_leader2", "approve", "同意")]
    _act(db, case_id, "register", "demo_township", data={"register_no": "登记-1"})
    assert db.case(case_id).status == CaseStatus.approved


@pytest.mark.parametrize("signers, problem", [
    (["demo_county", "demo_dept"], "demo_dept"),  # holds another role
    (["demo_county", "nobody"], "nobody"),
    (["demo_county", "demo_county"], "不能重复"),
    ([], "必填"),  # the form requires it; countersign.signer_problem refuses an empty list too
])
def test_a_signer_list_the_role_does_not_cover_refuses_the_application_with_a_field_error(db, signers, problem):
    case_id = db.start_case(procedure=_deploy(db, "ratio"))
    before = _counts(db, case_id)
    with pytest.raises(ValidationError) as info:
        _act(db, case_id, "apply", "demo_village", data={**APPLICATION, "signers": signers})
    assert problem in info.value.errors["signers"]
    assert _counts(db, case_id) == before == Counter({("apply", "open"): 1})


def test_a_signer_who_leaves_the_county_leading_group_can_no_longer_be_named(db):
    with db.uow() as work:
        work.session.execute(update(User).where(User.username == "demo_leader2").values(is_active=False))
    case_id = db.start_case(procedure=_deploy(db, "ratio"))
    with pytest.raises(ValidationError) as info:
        _act(db, case_id, "apply", "demo_village", data=APPLICATION)
    assert "demo_leader2" in info.value.errors["signers"]


def test_countersign_of_all_one_disagreement_decides_the_step_and_the_case_is_rejected(db):
    case_id = _to_signing(db, "all")
    _act(db, case_id, "sign", "demo_county")
    with pytest.raises(ValidationError):  # 不同意 needs a reason
        _act(db, case_id, "sign", "demo_leader1", "reject", opinion=" ")
    _act(db, case_id, "sign", "demo_leader1", "reject", opinion="选址存在地质灾害隐患")
    case = db.case(case_id)
    assert (case.status, case.outcome_reason) == (CaseStatus.rejected, "选址存在地质灾害隐患")
    assert _counts(db, case_id) == Counter({
        ("apply", "completed"): 1, ("branch_a", "completed"): 1, ("branch_b", "completed"): 1,
        ("sign", "completed"): 2, ("sign", "cancelled"): 1})
    assert [r.action for r in _rows(db, case_id) if r.spec_name == "sign"] == ["approve", "reject", None]


def test_or_sign_the_first_agreement_completes_the_step_and_the_others_need_not_act(db):
    case_id = _to_signing(db, "any")
    with db.uow() as work:
        todo = work.inbox.todo(db.actor("demo_county"))
        assert work.inbox.instance_progress(todo)[todo[0].id]["label"] == "或签 0/3"
    _act(db, case_id, "sign", "demo_leader2")
    assert _counts(db, case_id)[("sign", "cancelled")] == 2
    assert _open(db, case_id) == Counter({"register": 1})


@pytest.mark.parametrize("votes, outcome", [
    (["reject", "approve", "approve"], "register"),  # one against, two thirds still agree
    (["approve", "reject", "reject"], None),  # two against: two thirds can no longer be met
])
def test_ratio_counts_a_disagreement_as_one_vote_and_fails_once_the_ratio_cannot_be_met(db, votes, outcome):
    case_id = _to_signing(db, "ratio")
    for signer, vote in zip(SIGNERS, votes, strict=True):
        _act(db, case_id, "sign", signer, vote, opinion="同意" if vote == "approve" else "不同意:预算偏高")
    if outcome:
        assert _open(db, case_id) == Counter({outcome: 1})
    else:
        assert db.case(case_id).status == CaseStatus.rejected and db.open_tasks(case_id) == []
        assert db.case(case_id).outcome_reason == "不同意:预算偏高"


# ----------------------------------------------------------------------------- 退回 and parallel branches
def test_return_from_a_parallel_branch_to_before_the_split_cancels_both_branches_and_reopens_once(db):
    case_id = db.start_case(procedure=_deploy(db, "ratio"))
    _act(db, case_id, "apply", "demo_village", data=APPLICATION)
    _act(db, case_id, "branch_b", "demo_dept")
    assert _counts(db, case_id) == Counter({("apply", "completed"): 1, ("branch_a", "open"): 1,
                                            ("branch_b", "completed"): 1})
    _act(db, case_id, "branch_a", "demo_township", "return", opinion="申请材料缺少村民代表签字", return_to="apply")
    assert _counts(db, case_id) == Counter({("apply", "completed"): 1, ("branch_a", "completed"): 1,
                                            ("branch_b", "completed"): 1, ("apply", "open"): 1})
    _act(db, case_id, "apply", "demo_village", data=APPLICATION)
    assert _open(db, case_id) == Counter({"branch_a": 1, "branch_b": 1})  # both branches run again, once each


def test_return_from_the_countersign_after_the_join_to_before_the_split_reopens_the_application_once(db):
    case_id = _to_signing(db)
    _act(db, case_id, "sign", "demo_county")
    before = _counts(db, case_id)
    assert before[("sign", "open")] == 2 and before[("sign", "completed")] == 1
    with db.uow() as work:
        row = next(r for r in db.open_tasks(case_id) if r.assignee.username == "demo_leader1")
        assert work.cases.return_targets(row)[-1] == ("apply", "申请")
    _act(db, case_id, "sign", "demo_leader1", "return", opinion="请补充村民代表会议记录", return_to="apply")
    after = _counts(db, case_id)
    assert after == before - Counter({("sign", "open"): 2}) + Counter({
        ("sign", "completed"): 1, ("sign", "cancelled"): 1, ("apply", "open"): 1})
    assert _open(db, case_id) == Counter({"apply": 1})
    assert "votes" not in _workflow_data(db, case_id)  # no vote survives the return


def test_return_into_one_branch_of_a_finished_parallel_section_keeps_the_other_and_signs_once_again(db):
    case_id = _to_signing(db)
    _act(db, case_id, "sign", "demo_leader2", "return", opinion="部门核定投资有误", return_to="branch_b")
    assert _open(db, case_id) == Counter({"branch_b": 1})  # 乡镇审核 stays done: its branch is not redone
    _act(db, case_id, "branch_b", "demo_dept")
    rows = db.open_tasks(case_id)
    assert sorted(r.assignee.username for r in rows) == SIGNERS  # one fresh set, not one per branch
    assert _counts(db, case_id) == Counter({
        ("apply", "completed"): 1, ("branch_a", "completed"): 1, ("branch_b", "completed"): 2,
        ("sign", "completed"): 1, ("sign", "cancelled"): 2, ("sign", "open"): 3})


def test_after_a_join_each_branch_is_a_return_target_and_a_step_not_reached_is_refused(db):
    """The branch that completed the join comes first, then the other branch (test_return_parallel
    returns into each), then the steps before the split."""
    case_id = _to_signing(db)  # 乡镇审核 (branch_a) completed first, then 部门审核 (branch_b)
    row = next(r for r in db.open_tasks(case_id) if r.assignee.username == "demo_county")
    with db.uow() as work:
        assert work.cases.return_targets(row) == [("branch_b", "部门审核"), ("branch_a", "乡镇审核"), ("apply", "申请")]
    before = _counts(db, case_id)
    with pytest.raises(ValidationError) as info:
        _act(db, case_id, "sign", "demo_county", "return", opinion="退回登记", return_to="register")
    assert "return_to" in info.value.errors
    assert _counts(db, case_id) == before


def test_return_from_inside_a_countersign_drops_every_vote_and_resubmission_signs_afresh(db):
    case_id = _to_signing(db)
    _act(db, case_id, "sign", "demo_county")  # one vote in
    first_group = {r.instance_group for r in db.open_tasks(case_id)}
    _act(db, case_id, "sign", "demo_leader1", "return", opinion="需先补充环评意见", return_to="branch_b")
    assert _counts(db, case_id)[("sign", "open")] == 0
    assert _open(db, case_id) == Counter({"branch_b": 1})
    _act(db, case_id, "branch_b", "demo_dept")
    rows = db.open_tasks(case_id)
    assert sorted(r.assignee.username for r in rows) == SIGNERS
    assert {r.instance_group for r in rows}.isdisjoint(first_group)
    _act(db, case_id, "sign", "demo_leader2")  # the earlier vote of demo_county does not count: 1 of 3
    assert _counts(db, case_id)[("sign", "open")] == 2 and _open(db, case_id)["register"] == 0
    with db.uow() as work:
        todo = work.inbox.todo(db.actor("demo_county"))
        assert work.inbox.instance_progress(todo)[todo[0].id]["label"] == "会签 1/3"


def test_return_to_the_countersign_step_from_a_later_step_opens_a_fresh_set_of_instances(db):
    case_id = _to_signing(db)
    _act(db, case_id, "sign", "demo_county")
    _act(db, case_id, "sign", "demo_leader1")
    (register,) = db.open_tasks(case_id)
    with db.uow() as work:
        assert work.cases.return_targets(register)[0] == ("sign", "领导小组会签")
    before = _counts(db, case_id)
    _act(db, case_id, "register", "demo_township", "return", opinion="请领导小组重新审定资金", return_to="sign")
    after = _counts(db, case_id)
    assert after == before - Counter({("register", "open"): 1}) + Counter({
        ("register", "completed"): 1, ("sign", "open"): 3})
    rows = db.open_tasks(case_id)
    assert sorted(r.assignee.username for r in rows) == SIGNERS
    with db.uow() as work:  # the new round counts from zero, not from the two earlier votes
        assert {p["label"] for p in work.inbox.instance_progress(rows).values()} == {"会签 0/3"}
    _act(db, case_id, "sign", "demo_leader2")
    assert _open(db, case_id) == Counter({"sign": 2})
    _act(db, case_id, "sign", "demo_leader1")
    assert _open(db, case_id) == Counter({"register": 1})


def test_save_and_restore_in_the_middle_of_a_countersign_keeps_the_instance_rows_consistent(db):
    case_id = _to_signing(db)
    _act(db, case_id, "sign", "demo_county")
    with db.uow() as work:
        case = work.session.get(Case, case_id)
        version = case.version
        first = load_state(case.state, case.serializer_version, work.definitions.specs(version), version.spec_json)
        saved = dump_state(first)
        SPEC_CACHE._specs.clear()  # as in a fresh process: specs (and their instance callbacks) rebuilt
        second = load_state(saved, SERIALIZER_VERSION, work.definitions.specs(version), version.spec_json)
        assert dump_state(second) == saved
        ready = {str(t.id): t.data["signer"] for t in second.get_tasks(state=TaskState.READY, manual=True)}
        open_rows = {r.spiff_task_id: r.assignee.username for r in work.session.scalars(
            select(TaskRow).where(TaskRow.case_id == case_id, TaskRow.status == TaskStatus.open))}
        assert ready == open_rows and sorted(ready.values()) == ["demo_leader1", "demo_leader2"]
        case.state = saved
    SPEC_CACHE._specs.clear()
    _act(db, case_id, "sign", "demo_leader2")  # the restored step still counts the vote before it
    assert _open(db, case_id) == Counter({"register": 1})
    assert _counts(db, case_id)[("sign", "cancelled")] == 1


# ----------------------------------------------------------------------------- P4: signers from the role
def test_project_library_leading_group_signers_are_the_active_county_leaders_of_the_case(db):
    from tests.integration.test_procedure_project_library import REVIEWS, _do, _start

    with db.uow() as work:
        work.session.execute(update(User).where(User.username == "demo_leader3").values(is_active=False))
    case_id = _start(db)
    for step, _title, user, _role, _scope, data in REVIEWS[:3]:
        _do(db, case_id, step, user, data=data)
    rows = db.open_tasks(case_id)
    assert [(r.spec_name, r.assignee.username, r.scope_code) for r in rows] == [
        ("leader_decision", u, "510921000000") for u in ("demo_county", "demo_leader1", "demo_leader2")]
    _do(db, case_id, "leader_decision", ("demo_leader1", "demo_leader2"), data={"leader_materials_reviewed": True})
    assert _open(db, case_id) == Counter({"leader_record": 1})  # 2 of 3: more than half
    assert [v["signer"] for v in _workflow_data(db, case_id)["leader_votes"]] == ["demo_leader1", "demo_leader2"]


# ----------------------------------------------------------------------------- studio and deploy checks
def test_the_studio_accepts_countersign_steps_and_a_dry_run_signs_with_sample_signers(db):
    from tests.integration.studio_support import admin, draft_with, new_code, studio

    with db.uow() as work:
        p4 = work.definitions.files(work.definitions.latest("project_library"))
        assert studio(work).validate_files(support.files("ratio")) == []
        assert studio(work).validate_files(p4) == []  # role_members(...) in a preScript, tallies in the gateway
    draft_id = draft_with(db, support.files("ratio", new_code("cs")))  # a code not deployed yet
    with db.uow() as work:
        result = studio(work).dry_run(admin(db), draft_id, {"data": {"project": "试运行", "signers": ["a", "b", "c"],
                                                                      "register_no": "1"}})
    assert result.completed and result.error is None and result.status == "approved"
    assert [s.element_id for s in result.steps].count("sign") == 2  # two of three: the ratio is met
    assert result.path[-3:] == ["outcome", "register", "end_ok"]


@pytest.mark.parametrize("change, problem", [
    ("<bpmn:loopDataInputRef>signers</bpmn:loopDataInputRef>", "loopCardinality"),
    ('<bpmn:inputDataItem id="signer" name="会签人" />', "inputDataItem"),
    ("nr_of_rejections > 0", "no_such_tally"),
])
def test_the_studio_and_deploy_refuse_a_countersign_they_cannot_run(db, change, problem):
    from engine.core.errors import DefinitionError
    from engine.procedures.definitions import bundle_from_files
    from tests.integration.studio_support import studio

    files = support.files("all")
    replacement = {"loopCardinality": "<bpmn:loopCardinality>3</bpmn:loopCardinality>", "inputDataItem": "",
                   "no_such_tally": "no_such_tally > 0"}[problem]
    assert change in files["bpmn/cs.bpmn"]
    files["bpmn/cs.bpmn"] = files["bpmn/cs.bpmn"].replace(change, replacement)
    with db.uow() as work:
        problems = studio(work).validate_files(files)
        assert any(p.element_id == "sign" and problem in p.message for p in problems), problems
        if problem != "no_such_tally":  # an unknown name is the studio's check; deploy checks structure
            with pytest.raises(DefinitionError) as info:
                work.definitions.deploy(bundle_from_files(files), "tester", set(work.directory.role_levels()))
            assert any(problem in reason for _where, reason in info.value.problems)


# ----------------------------------------------------------------------------- pages and API
def test_inbox_task_page_and_api_show_the_signer_and_the_progress_of_the_countersign(db, client_for):
    case_id = _to_signing(db)
    _act(db, case_id, "sign", "demo_county", opinion="同意")
    leader = client_for("demo_leader1")
    inbox = leader.get("/").get_data(as_text=True)
    assert "领导小组会签(会签 1/3)" in inbox
    row = next(r for r in db.open_tasks(case_id) if r.assignee.username == "demo_leader1")
    page = leader.get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'data-testid="countersign-progress">(会签 1/3)' in page
    assert 'data-action="reject"' in page and ">不同意</button>" in page
    api = leader.get(f"/api/v1/tasks/{row.id}").get_json()
    assert api["countersign"] == {"mode": "ratio", "label": "会签 1/3", "signer": "demo_leader1", "done": 1,
                                  "total": 3}
    listed = leader.get("/api/v1/tasks").get_json()["tasks"]
    assert [(t["id"], t["countersign"]["label"]) for t in listed] == [(row.id, "会签 1/3")]
    # the case page's history names each signer with their opinion
    history = client_for("demo_county").get(f"/api/v1/cases/{case_id}").get_json()["history"]
    assert {"user": "demo_county", "action": "approve", "step": "领导小组会签", "opinion": "同意"} in [
        {k: e[k] for k in ("user", "action", "step", "opinion")} for e in history]


def test_a_countersign_disagreement_is_logged_as_the_vote_it_was_not_as_a_rejection_of_the_case(db, client_for):
    case_id = _to_signing(db, "ratio")
    _act(db, case_id, "sign", SIGNERS[0], "reject", opinion="不同意:预算偏高")
    with db.uow() as work:
        actions = [e.action for e in work.inbox.case_history(case_id)]
    assert "vote_reject" in actions and "reject" not in actions  # the case goes on: two may still agree
    page = client_for("demo_village").get(f"/cases/{case_id}").get_data(as_text=True)
    history = page.split('data-testid="history"', 1)[1]
    assert "<strong>不同意</strong>" in history and "<strong>不通过</strong>" not in history

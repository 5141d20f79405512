"""Step rules the diagram decides: ``opinionRequired`` (every action needs an opinion) and
``attachments`` (what a step accepts, or none) — engine, JSON API, HTML forms, deploy and studio.

The shipped 四步法 marks 部门审定 and 县级公告 ``opinionRequired``; 入户核查 accepts 入户照片, 民主评议
会议记录, and 出具村级公示 takes no attachment. The 危房改造's 农户申请 accepts 房屋照片 and 身份证明.
"""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from engine import demo_data as D
from engine.core import settings
from engine.core.errors import ConflictError, DefinitionError, ForbiddenError, ValidationError
from engine.models import Attachment, AuditEvent, CaseStatus, ProcedureVersion, TaskRow, TaskStatus
from engine.procedures.definitions import bundle_from_files, compile_bundle, read_folder
from engine.procedures.step_rules import OPINION_MISSING, attachment_kinds, opinion_required, step_properties
from tests.integration import upload_samples
from tests.integration.dates_support import dated
from tests.integration.studio_support import studio
from tests.integration.test_procedure_project_library import REVIEWS, _do, _start

PDF = upload_samples.pdf()
PNG = upload_samples.png()  # real files: uploads are decoded and opened, not sniffed (issue 15)
ROLES = {"village_cadre", "township_officer", "county_department", "county_leader", "office_clerk", "admin"}


def only_task(db, case_id: int) -> TaskRow:
    (row,) = db.open_tasks(case_id)
    return row


def files_uploaded(db) -> tuple[int, list[str]]:
    """Attachments other than signatures, and every stored file: what a refused upload must leave alone."""
    with db.uow() as work:
        count = work.session.scalar(select(func.count(Attachment.id)).where(Attachment.kind != "signature"))
    return count, sorted(str(p) for p in db.storage_dir.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- opinion: engine
@pytest.mark.db_snapshot("at_dept_decision")
def test_approving_a_step_that_requires_an_opinion_without_one_is_refused_and_changes_nothing(
        db, at_dept_decision, snapshot):
    case_id = at_dept_decision.value
    row = only_task(db, case_id)
    assert row.spec_name == "dept_decision"
    before = snapshot()
    for empty in ("", "   ", None):
        with db.uow() as work, pytest.raises(ValidationError) as info:
            work.cases.complete_task(row.id, db.actor("demo_dept"), "approve", empty, D.DEPT_DECISION)
        assert info.value.errors == {"opinion": OPINION_MISSING}
    assert snapshot() == before
    db.complete(case_id, "demo_dept", opinion="行业数据核实无误,同意退出", data=D.DEPT_DECISION)
    with db.uow() as work:
        done = work.session.get(TaskRow, row.id)
        assert (done.status, done.opinion) == (TaskStatus.completed, "行业数据核实无误,同意退出")


@pytest.mark.db_snapshot("at_township_recheck")
def test_a_step_without_the_rule_is_approved_without_an_opinion_and_reject_still_needs_one(db, at_township_recheck):
    case_id = at_township_recheck.value
    row = only_task(db, case_id)
    with db.uow() as work, pytest.raises(ValidationError) as info:
        work.cases.complete_task(row.id, db.actor("demo_township"), "reject", "", {})
    assert info.value.errors == {"opinion": "不通过或退回时必须填写意见"}
    db.complete(case_id, "demo_township", opinion="", data=D.TOWNSHIP_RECHECK)
    assert only_task(db, case_id).spec_name == "dept_decision"


@pytest.mark.db_snapshot("at_dept_decision")
def test_co_signers_and_an_after_sign_decision_on_a_required_step_need_an_opinion(db, at_dept_decision, snapshot):
    case_id = at_dept_decision.value
    row = only_task(db, case_id)
    before = snapshot()
    with db.uow() as work, pytest.raises(ValidationError) as info:  # 后加签 holds the decision now: checked now
        work.operations.add_sign(row.id, db.actor("demo_dept"), ["demo_county"], "after", "", D.DEPT_DECISION)
    assert info.value.errors == {"opinion": OPINION_MISSING}
    assert snapshot() == before
    with db.uow() as work:  # 前加签: the co-signer agrees first, through the same approve path
        (child,) = work.operations.add_sign(row.id, db.actor("demo_dept"), ["demo_county"], "before", "")
        child_id = child.id
    with db.uow() as work, pytest.raises(ValidationError) as info:
        work.cases.complete_task(child_id, db.actor("demo_county"), "approve", "", {})
    assert info.value.errors == {"opinion": OPINION_MISSING}
    with db.uow() as work:
        work.cases.complete_task(child_id, db.actor("demo_county"), "approve", "同意退出", {})
    with db.uow() as work:  # back with the holder, who still needs an opinion to approve
        assert work.session.get(TaskRow, row.id).status == TaskStatus.open
        with pytest.raises(ValidationError):
            work.cases.complete_task(row.id, db.actor("demo_dept"), "approve", "", D.DEPT_DECISION)
    db.complete(case_id, "demo_dept", opinion="会商后同意", data=D.DEPT_DECISION)
    assert only_task(db, case_id).spec_name == "county_announcement"


def test_a_leading_group_vote_without_an_opinion_is_refused(db):
    case_id = _start(db)
    for step, _title, user, _role, _scope, data in REVIEWS[:3]:
        _do(db, case_id, step, user, data=data)
    (vote, *_others) = [r for r in db.open_tasks(case_id) if r.spec_name == "leader_decision"]
    signer = vote.assignee.username
    with db.uow() as work, pytest.raises(ValidationError) as info:
        work.cases.complete_task(vote.id, db.actor(signer), "approve", " ", {"leader_materials_reviewed": True})
    assert info.value.errors == {"opinion": OPINION_MISSING}
    with db.uow() as work:
        assert work.session.get(TaskRow, vote.id).status == TaskStatus.open
        work.cases.complete_task(vote.id, db.actor(signer), "approve", "同意入库", {"leader_materials_reviewed": True})


def _at_township_later(db) -> int:
    """A second case at 镇复核, started after the first one's 公示 moved the clock: its dates are that day."""
    case_id = db.start_case(subject_id=db.household("王建国"))
    db.complete(case_id, "demo_village", data=dated(db, D.HOUSEHOLD_CHECK))
    db.complete(case_id, "demo_village", data=dated(db, D.VILLAGE_REVIEW))
    assert db.pass_notice() == 1
    return case_id


# ----------------------------------------------------------------------------- opinion: API and HTML form
@pytest.mark.db_snapshot("at_dept_decision")
def test_the_api_says_which_step_requires_an_opinion_and_refuses_an_approval_without_one(
        db, at_dept_decision, client_for, snapshot):
    case_id = at_dept_decision.value
    row = only_task(db, case_id)
    dept = client_for("demo_dept")
    shown = dept.get(f"/api/v1/tasks/{row.id}").get_json()
    assert shown["opinion_required"] is True
    before = snapshot()
    refused = dept.post(f"/api/v1/tasks/{row.id}/complete", json={"action": "approve", "data": D.DEPT_DECISION})
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {"opinion": OPINION_MISSING}
    assert snapshot() == before
    done = dept.post(f"/api/v1/tasks/{row.id}/complete",
                     json={"action": "approve", "opinion": "同意", "data": D.DEPT_DECISION})
    assert done.status_code == 200
    (county_row,) = db.open_tasks(case_id)
    assert client_for("demo_county").get(f"/api/v1/tasks/{county_row.id}").get_json()["opinion_required"] is True

    other = _at_township_later(db)
    assert client_for("demo_township").get(f"/api/v1/tasks/{only_task(db, other).id}").get_json()[
        "opinion_required"] is False


@pytest.mark.db_snapshot("at_dept_decision")
def test_the_task_page_marks_the_opinion_required_and_the_form_refuses_an_empty_one(
        db, at_dept_decision, client_for, csrf_token, snapshot):
    case_id = at_dept_decision.value
    row = only_task(db, case_id)
    dept = client_for("demo_dept")
    page = dept.get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'data-testid="opinion-required"' in page
    assert 'placeholder="此步骤必须填写审批意见" required>' in page
    token = csrf_token(dept, f"/tasks/{row.id}")
    form = {"csrf_token": token, "action": "approve", "sector_data_verified": "true", "department_name": "蓬溪县乡村振兴局"}
    before = snapshot()
    refused = dept.post(f"/tasks/{row.id}", data={**form, "opinion": ""})
    assert refused.status_code == 422
    assert OPINION_MISSING in refused.get_data(as_text=True)
    assert snapshot() == before
    done = dept.post(f"/tasks/{row.id}", data={**form, "opinion": "同意退出"})
    assert done.status_code == 302
    assert only_task(db, case_id).spec_name == "county_announcement"

    other = _at_township_later(db)
    plain = client_for("demo_township").get(f"/tasks/{only_task(db, other).id}").get_data(as_text=True)
    assert 'data-testid="opinion-required"' not in plain
    assert 'placeholder="不通过或退回时必须填写意见">' in plain


# ----------------------------------------------------------------------------- attachments: engine
def test_an_upload_to_a_step_names_a_kind_it_accepts_and_is_shown_with_its_step(db, client_for):
    case_id = db.start_case("demo_village", procedure="housing_renovation", subject_id=db.household("张德明"))
    row = only_task(db, case_id)
    village = db.actor("demo_village")
    with db.uow() as work:
        assert work.operations.accepted_kinds(work.session.get(TaskRow, row.id)) == ["房屋照片", "身份证明"]
        photo = work.operations.add_attachment(case_id, village, "房屋照片.png", PNG, "image/png", task_id=row.id,
                                               kind="房屋照片")
        assert (photo.kind, photo.task_id) == ("房屋照片", row.id)
    before = files_uploaded(db)
    for kind, message in [("鉴定报告", "「农户申请」接受的附件:房屋照片、身份证明"),  # not this step's kind
                          (None, "「农户申请」接受的附件:房屋照片、身份证明"),  # two kinds: one must be named
                          ("signature", "签字请在任务页的签字板上完成")]:
        with db.uow() as work, pytest.raises(ValidationError) as info:
            work.operations.add_attachment(case_id, village, "报告.pdf", PDF, "application/pdf", task_id=row.id,
                                           kind=kind)
        assert info.value.errors == {"kind": message}
    assert files_uploaded(db) == before

    shown = client_for("demo_village").get(f"/api/v1/tasks/{row.id}").get_json()
    assert (shown["attachment_kinds"], shown["may_attach"]) == (["房屋照片", "身份证明"], True)
    page = client_for("demo_village").get(f"/tasks/{row.id}").get_data(as_text=True)
    assert 'data-testid="task-upload-form"' in page
    assert '<option value="房屋照片">房屋照片</option><option value="身份证明">身份证明</option>' in page
    case_page = client_for("demo_village").get(f"/cases/{case_id}").get_data(as_text=True)
    assert "<td>房屋照片</td><td>农户申请</td>" in case_page


def test_a_single_kind_step_takes_its_kind_without_being_told(db, exit_case):
    case_id = exit_case(0)
    row = only_task(db, case_id)
    with db.uow() as work:
        photo = work.operations.add_attachment(case_id, db.actor("demo_village"), "入户.jpg", upload_samples.jpeg(),
                                               "image/jpeg", task_id=row.id)
        assert photo.kind == "入户照片"


def test_an_upload_to_a_step_that_takes_none_is_refused_and_nothing_is_stored(db, exit_case, client_for):
    case_id = exit_case(1)
    db.complete(case_id, "demo_village", data=D.VILLAGE_REVIEW)
    row = only_task(db, case_id)
    assert row.spec_name == "issue_village_notice"
    before = files_uploaded(db)
    with db.uow() as work, pytest.raises(ValidationError) as info:
        work.operations.add_attachment(case_id, db.actor("demo_village"), "公示.pdf", PDF, "application/pdf",
                                       task_id=row.id)
    assert info.value.errors == {"file": "「出具村级公示」不接受附件"}
    assert files_uploaded(db) == before
    village = client_for("demo_village")
    assert village.get(f"/api/v1/tasks/{row.id}").get_json()["attachment_kinds"] == []
    assert 'data-testid="task-upload-form"' not in village.get(f"/tasks/{row.id}").get_data(as_text=True)
    refused = village.post(f"/api/v1/cases/{case_id}/attachments", content_type="multipart/form-data",
                           data={"file": (io.BytesIO(PDF), "公示.pdf", "application/pdf"), "task_id": str(row.id)})
    assert refused.status_code == 422 and refused.get_json()["errors"] == {"file": "「出具村级公示」不接受附件"}
    assert files_uploaded(db) == before


@pytest.mark.db_snapshot("at_township_recheck")
def test_an_upload_by_someone_who_may_not_act_on_the_task_or_the_case_is_refused(db, at_township_recheck, client_for,
                                                                                   csrf_token):
    case_id = at_township_recheck.value
    row = only_task(db, case_id)
    before = files_uploaded(db)
    audits = _audits(db)
    with db.uow() as work, pytest.raises(ForbiddenError):  # the starter does not hold 镇复核
        work.operations.add_attachment(case_id, db.actor("demo_village"), "a.pdf", PDF, "application/pdf",
                                       task_id=row.id)
    with db.uow() as work, pytest.raises(ForbiddenError):  # a case-level upload is the starter's
        work.operations.add_attachment(case_id, db.actor("demo_township"), "a.pdf", PDF, "application/pdf")
    with db.uow() as work, pytest.raises(ForbiddenError):  # above the case, but not this step's holder
        work.operations.add_attachment(case_id, db.actor("demo_dept"), "a.pdf", PDF, "application/pdf",
                                       task_id=row.id)
    dept = client_for("demo_dept")
    res = dept.post(f"/api/v1/cases/{case_id}/attachments", content_type="multipart/form-data",
                    data={"file": (io.BytesIO(PDF), "a.pdf", "application/pdf"), "task_id": str(row.id)})
    assert res.status_code == 403
    township = client_for("demo_township")  # the HTML form: a flash on the case page
    token = csrf_token(township, f"/cases/{case_id}")
    res = township.post(f"/cases/{case_id}/attachments", content_type="multipart/form-data", follow_redirects=True,
                        data={"csrf_token": token, "file": (io.BytesIO(PDF), "a.pdf", "application/pdf")})
    assert "未成功:只有案件发起人可以上传案件材料" in res.get_data(as_text=True)
    assert files_uploaded(db) == before
    assert _audits(db) == audits

    res = township.post(f"/cases/{case_id}/attachments", content_type="multipart/form-data", follow_redirects=True,
                        data={"csrf_token": token, "task_id": str(row.id),
                              "file": (io.BytesIO(PDF), "复核材料.pdf", "application/pdf")})
    assert "附件已上传" in res.get_data(as_text=True)
    with db.uow() as work:  # 镇复核 states nothing: its holder adds general attachments, as before
        (added,) = [a for a in work.operations.attachments(case_id) if a.kind != "signature"]
        assert (added.kind, added.task_id, added.file_name) == ("file", row.id, "复核材料.pdf")


@pytest.mark.db_snapshot("at_township_recheck")
def test_an_upload_to_a_finished_case_is_refused_and_nothing_is_stored(db, at_township_recheck, client_for):
    case_id = at_township_recheck.value
    row = only_task(db, case_id)
    db.complete(case_id, "demo_township", action="reject", opinion="收入未稳定超过监测线")
    assert db.case(case_id).status == CaseStatus.rejected
    before = files_uploaded(db)
    with db.uow() as work, pytest.raises(ConflictError, match="案件已办结"):
        work.operations.add_attachment(case_id, db.actor("demo_village"), "a.pdf", PDF, "application/pdf")
    with db.uow() as work, pytest.raises(ConflictError):
        work.operations.add_attachment(case_id, db.actor("demo_township"), "a.pdf", PDF, "application/pdf",
                                       task_id=row.id)
    res = client_for("demo_village").post(f"/api/v1/cases/{case_id}/attachments", content_type="multipart/form-data",
                                          data={"file": (io.BytesIO(PDF), "a.pdf", "application/pdf")})
    assert res.status_code == 409
    page = client_for("demo_village").get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'data-testid="case-upload-form"' not in page
    assert files_uploaded(db) == before


def _audits(db) -> int:
    with db.uow() as work:
        return work.session.scalar(select(func.count(AuditEvent.id)))


# ----------------------------------------------------------------------------- deploy and studio
@pytest.mark.parametrize(("old", "new", "message"), [
    ('name="opinionRequired" value="true"', 'name="opinionRequired" value="maybe"',
     "opinionRequired 只能是 true 或 false(现为 'maybe')"),
    ('name="attachments" value="行业核查材料"', 'name="attachments" value="照片,,报告"',
     "attachments 中有空的附件类别(用逗号分隔,如 房屋照片,鉴定报告)"),
    ('name="attachments" value="行业核查材料"', 'name="attachments" value="signature"',
     "attachments 的附件类别 signature 无效:不能是 file、signature、none,每项不超过 16 字;不接受附件时只写 none"),
])
def test_deploy_and_the_studio_refuse_a_bad_step_rule_naming_the_element(db, old, new, message):
    files = dict(read_folder(settings.WORKFLOWS_DIR / "monitoring_exit", settings.FORMS_DIR).files)
    (bpmn,) = [k for k in files if k.startswith("bpmn/")]
    start = files[bpmn].index('<bpmn:userTask id="dept_decision"')
    end = files[bpmn].index("</bpmn:userTask>", start)
    assert old in files[bpmn][start:end]
    files[bpmn] = files[bpmn][:start] + files[bpmn][start:end].replace(old, new) + files[bpmn][end:]
    with pytest.raises(DefinitionError) as info:
        compile_bundle(bundle_from_files(files), ROLES)
    assert ("部门审定[dept_decision]", message) in info.value.problems
    with db.uow() as work:
        before = work.session.scalar(select(func.count(ProcedureVersion.id)))
        with pytest.raises(DefinitionError):
            work.definitions.deploy(bundle_from_files(files), "tester", set(work.directory.role_levels()))
        assert work.session.scalar(select(func.count(ProcedureVersion.id))) == before
        problems = studio(work).validate_files(files)  # the studio reports the same rule on the same element
    assert ("dept_decision", message) in [(p.element_id, p.message) for p in problems]


def test_the_shipped_procedures_state_the_rules_and_compile(db):
    for code, step, opinion, kinds in [
        ("monitoring_exit", "dept_decision", True, ["行业核查材料"]),
        ("monitoring_exit", "village_review", False, ["会议记录"]),
        ("housing_renovation", "county_approval", True, ["鉴定报告"]),
        ("housing_renovation", "township_audit", False, ["鉴定报告", "房屋照片"]),
        ("monitoring_identification", "county_identification", True, ["file"]),
        ("project_library", "leader_decision", True, ["会议纪要"]),
        ("project_library", "issue_project_notice", False, []),
    ]:
        with db.uow() as work:
            props = step_properties(work.definitions, work.definitions.latest(code), step)
        assert (opinion_required(props), attachment_kinds(props)) == (opinion, kinds), (code, step)

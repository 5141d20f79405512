"""Notice templates come from the procedure's deployed version: a procedure a county admin made in the studio,
with no folder on disk, issues its own signed notice at its issuance step; changing a template and deploying
again makes a new version, and the notices issued before stay as they were."""

from __future__ import annotations

import io
import json

import pdfplumber
import pytest
from notices_support import OFFICES, TOWNSHIP, ensure_office_keys, issue, stored
from sqlalchemy import select
from studio_support import EDU_SAMPLE, Step, admin, deploy, draft_with, edu_files, form_json, new_code, studio

from engine.core import settings
from engine.core.errors import NotFoundError
from engine.models import IssuedNotice, TaskRow, TaskStatus
from engine.notices.pki import KeyStore
from engine.notices.verify import validate_signature
from engine.procedures.notice_catalog import load_catalog
from engine.runtime.cases import ISSUE_ACTION
from engine.studio.service import DraftProblems

KIND = "school_aid_notice"
ISSUE_STEP = "issue_school_notice"
CONTACT = {"contact_phone": "0825-5426677"}
STEPS = (
    Step("school_survey", "学校摸底", "Lane_school", "school_survey", "approve", "P10D"),
    Step(ISSUE_STEP, "出具学校公示", "Lane_school", "issue_notice", "approve", "P3D", {"noticeKind": KIND}),
    Step("county_review", "县教育部门审核", "Lane_county", "county_review", "approve,reject,return", "P10D",
         {"caseStatus": "approved"}),
)
CATALOG = {
    "stylesheets": ["gbt9704.css"],  # the shared layout's: this procedure has no stylesheet of its own
    "kinds": [{
        "code": KIND, "name": "教育资助公示", "template": "school_aid_notice.html",
        "title": "关于{{ cases[0].data.student_name }}同学教育资助的公示", "group_by": "case", "public": True,
        "office_level": "township", "issuer_roles": ["township_officer"],
        "fields": [{"key": "contact_phone", "label": "学校联系电话", "type": "phone", "required": True}],
    }],
}
TEMPLATE = """{% extends "_base.html" %}
{% block content %}
{%- set d = cases[0].data %}
<p>经学校摸底，{{ d.school_name }}{{ d.grade }}学生{{ d.student_name }}家庭经济困难类型为{{ d.family_difficulty }}，拟纳入教育资助范围。</p>
<p>WORDING</p>
<p>联系电话：<span class="nobr">{{ params.contact_phone }}</span>。</p>
{% endblock %}
"""
FIRST = "公示期间如有异议，请向学校反映。"
SECOND = "公示期间如有异议，请向县教育部门反映。"


def school_aid_files(code: str, wording: str = FIRST) -> dict[str, str]:
    """The 教育资助 procedure with a 出具学校公示 step that issues its own notice, as studio draft files only."""
    files = edu_files(code, steps=STEPS)
    files[f"form/{code}/issue_notice"] = form_json(code, "issue_notice", [
        {"type": "textarea", "key": "notice_remark", "label": "备注", "validate": {"required": False}}])
    files["template/notices.json"] = json.dumps(CATALOG, ensure_ascii=False, indent=2)
    files["template/school_aid_notice.html"] = TEMPLATE.replace("WORDING", wording)
    return files


def _text(pdf: bytes) -> str:
    with pdfplumber.open(io.BytesIO(pdf)) as doc:
        return "".join((page.extract_text() or "").replace("\n", "") for page in doc.pages)


def at_issue_step(db, code: str) -> int:
    case_id = db.start_case("demo_township", procedure=code, subject_id=db.household(username="demo_village"))
    db.complete(case_id, "demo_township", data=EDU_SAMPLE)
    (row,) = db.open_tasks(case_id)
    assert (row.spec_name, row.actions) == (ISSUE_STEP, ISSUE_ACTION)
    return case_id


def test_a_studio_made_procedure_issues_its_own_signed_notice_and_that_completes_its_issuance_step(db):
    code = new_code("aid")
    assert not (settings.WORKFLOWS_DIR / code).exists()
    _version_id, number, created = deploy(db, draft_with(db, school_aid_files(code)))
    assert (number, created) == (1, True)
    with db.uow() as work:
        version = work.definitions.latest(code)
        assert {"template/notices.json", "template/school_aid_notice.html"} <= set(work.definitions.files(version))
        catalog = load_catalog(work.definitions, code)
    assert list(catalog.kinds) == [KIND] and "_base.html" not in catalog.files  # the layout comes from the shared one
    ensure_office_keys(db)
    case_id = at_issue_step(db, code)

    serial, pdf = issue(db, "demo_township", KIND, [case_id], CONTACT, procedure=code)

    text = _text(pdf)
    assert "(cid:" not in text and "\ufffd" not in text
    for expected in ("关于张小明同学教育资助的公示", "经学校摸底，宝梵镇中心小学小学学生张小明家庭经济困难类型为脱贫家庭",
                     FIRST, "联系电话：0825-5426677", OFFICES[TOWNSHIP], f"编号：{serial}"):
        assert expected in text, expected
    with db.uow() as work:
        report = validate_signature(pdf, KeyStore(work.session, db.clock).trust_roots())
        assert report.ok, report
        assert OFFICES[TOWNSHIP] in report.signer
        step = work.session.scalar(select(TaskRow).where(TaskRow.case_id == case_id, TaskRow.spec_name == ISSUE_STEP))
        assert (step.status, step.action, step.data.get("notice_serial")) == (TaskStatus.completed, ISSUE_ACTION,
                                                                              serial)
    assert [r.spec_name for r in db.open_tasks(case_id)] == ["county_review"]
    notice = stored(db, serial)
    assert (notice.procedure_code, notice.kind, notice.template_sha256) == (code, KIND, catalog.content_sha256)


def test_a_changed_template_deploys_as_a_new_version_and_notices_issued_before_stay_as_they_were(db):
    code = new_code("aid")
    first_id, _number, _created = deploy(db, draft_with(db, school_aid_files(code)))
    ensure_office_keys(db)
    early_case = at_issue_step(db, code)
    early_serial, early_pdf = issue(db, "demo_township", KIND, [early_case], CONTACT, procedure=code)
    early = stored(db, early_serial)

    with db.uow() as work:  # the admin opens the deployed version: the draft holds its templates
        service = studio(work)
        draft = service.open_version(admin(db), first_id)
        files = dict(draft.files)
        assert files["template/school_aid_notice.html"] == TEMPLATE.replace("WORDING", FIRST)
        files["template/school_aid_notice.html"] = TEMPLATE.replace("WORDING", SECOND)
        service.save_draft(admin(db), draft.id, files, draft.lock_version)
        draft_id = draft.id
    second_id, number, created = deploy(db, draft_id)
    assert (number, created) == (2, True) and second_id != first_id
    with db.uow() as work:
        assert work.definitions.latest(code).id == second_id
        catalog = load_catalog(work.definitions, code)
    assert catalog.content_sha256 != early.template_sha256

    late_case = at_issue_step(db, code)
    late_serial, late_pdf = issue(db, "demo_township", KIND, [late_case], CONTACT, procedure=code)
    assert SECOND in _text(late_pdf) and FIRST not in _text(late_pdf)
    assert stored(db, late_serial).template_sha256 == catalog.content_sha256
    with db.uow() as work:  # the earlier notice is the file it was, made with the first version's template
        kept = work.session.scalar(select(IssuedNotice).where(IssuedNotice.serial == early_serial))
        assert (kept.sha256, kept.template_sha256) == (early.sha256, early.template_sha256)
        assert work.notices.pdf(kept) == early_pdf
    assert FIRST in _text(early_pdf) and SECOND not in _text(early_pdf)


def test_a_draft_whose_notices_name_a_template_it_does_not_hold_is_refused_and_nothing_is_deployed(db):
    code = new_code("aid")
    files = school_aid_files(code)
    del files["template/school_aid_notice.html"]
    files["template/notices.json"] = files["template/notices.json"].replace('"gbt9704.css"', '"school.css"')
    draft_id = draft_with(db, files)
    with db.uow() as work:
        problems = studio(work).validate_files(files)
    assert {(p.file, p.message) for p in problems} == {
        ("template/notices.json", f"{KIND}: 模板 school_aid_notice.html 不存在"),
        ("template/notices.json", "school.css: 样式表不存在")}
    with pytest.raises(DraftProblems):
        deploy(db, draft_id)
    with db.uow() as work, pytest.raises(NotFoundError):
        work.definitions.latest(code)

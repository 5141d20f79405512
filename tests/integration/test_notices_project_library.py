"""P4 项目库's 项目公示 is a signed notice issued at the 出具项目公示 step by the project's village (seed 000
item 21: 镇、村项目安排和资金使用情况一律公告公示): one notice lists the village's projects waiting for it,
issuing it completes each project's step and starts its period; deploy refuses a step naming a notice
kind that the procedure's notices.json does not declare (the studio's rule, shared)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from notices_support import OFFICES, VILLAGE, ensure_office_keys, fonts, issue, notdef_glyphs, stored
from sqlalchemy import func, select
from test_notices_render import _text

from engine.core import settings
from engine.core.errors import DefinitionError, NotFoundError
from engine.models import AuditEvent, CaseStatus, ProcedureVersion, TaskRow, TaskStatus, TimerStatus
from engine.notices.formatting import cn_date
from engine.notices.pki import KeyStore
from engine.notices.verify import validate_signature
from engine.procedures.definitions import bundle_from_files, compile_bundle, read_folder
from engine.procedures.expressions import CHINA_TZ
from tests.integration.studio_support import studio
from tests.integration.test_procedure_project_library import (
    APPLICATION,
    LEADER_RECORD,
    PUBLIC_NOTICE,
    REVIEWS,
    _do,
    _start,
)

PROCEDURE = "project_library"
KIND = "project_public_notice"
STEP = "issue_project_notice"
NOTICE_DAYS = json.loads((settings.WORKFLOWS_DIR / PROCEDURE / "procedure.json").read_text("utf-8"))["settings"][
    "notice_days"]
ROAD = {**APPLICATION, "project_type": "基础设施", "link_mode": "务工就业", "budget_yuan": 450000,
        "construction_content": "硬化村道 2.4 公里,宽 4.5 米,配套波形护栏 800 米",
        "link_description": "以工代赈,优先吸纳脱贫劳动力务工"}
ROAD_RECORD = {**LEADER_RECORD, "approved_funds_yuan": 430000, "decision_number": "蓬巩衔组〔2026〕9号"}
CONTACT = {"contact_phone": "0825-5421234"}


def _at_issue(db, project: int, application: dict, record: dict) -> int:
    """A project case through the reviews and 项目公示准备: its 出具项目公示 step is open."""
    case_id = _start(db, project)
    for step, _title, user, _role, _scope, data in REVIEWS:
        data = application if step == "apply" else record if step == "leader_record" else data
        _do(db, case_id, step, user, data=data)
    _do(db, case_id, "public_notice", "demo_village", data=PUBLIC_NOTICE)
    return case_id


def _waiting(work, case_id: int) -> list:
    return [t for t in work.inbox.case_timers(case_id) if t.status == TimerStatus.waiting]


@pytest.fixture
def two_projects(db) -> list[int]:
    """宝梵镇柑橘产业园提升项目 and 村道硬化及安全防护项目, both of the demo village, waiting for their notice."""
    ensure_office_keys(db)
    return [_at_issue(db, 0, APPLICATION, LEADER_RECORD), _at_issue(db, 1, ROAD, ROAD_RECORD)]


def test_one_project_notice_for_two_projects_completes_both_issuance_steps_and_their_periods_run_from_the_issue(
        db, two_projects):
    for case_id in two_projects:
        (row,) = db.open_tasks(case_id)
        assert (row.spec_name, row.title, row.role_code, row.scope_code, row.actions) == (
            STEP, "出具项目公示", "village_cadre", VILLAGE, "issue")
        with db.uow() as work:
            assert _waiting(work, case_id) == []  # no period before the notice is issued
    db.clock.advance(timedelta(days=1, hours=3))
    issued_at = db.clock.now()
    serial, _pdf = issue(db, "demo_village", KIND, two_projects, CONTACT, procedure=PROCEDURE)

    period = timedelta(days=NOTICE_DAYS)
    for case_id in two_projects:
        with db.uow() as work:
            (step,) = work.session.scalars(select(TaskRow).where(TaskRow.case_id == case_id, TaskRow.spec_name == STEP))
            assert (step.status, step.action, step.completed_at, step.data) == (
                TaskStatus.completed, "issue", issued_at, {"notice_serial": serial})
            (timer,) = _waiting(work, case_id)
            assert (timer.spec_name, timer.status, timer.due_at) == ("notice_expired", TimerStatus.waiting,
                                                                     issued_at + period)
            (event,) = work.session.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id,
                                                                      AuditEvent.action == "notice_issued"))
            assert (event.task_id, event.step, event.created_at, event.data_diff["serial"]) == (
                step.id, "出具项目公示", issued_at, serial)
        assert db.open_tasks(case_id) == []
    notice = stored(db, serial)
    assert [c["case_id"] for c in notice.covers] == two_projects
    assert notice.params["complaint_phone"] == "12317"  # procedure.json settings.complaint_phone
    assert notice.params["period_until"] == (issued_at + period).isoformat()

    db.clock.set(issued_at + period - timedelta(minutes=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 0
    db.clock.set(issued_at + period + timedelta(minutes=1))
    with db.uow() as work:
        assert work.cases.fire_due_timers() == 2
    for case_id in two_projects:
        assert db.case(case_id).status == CaseStatus.approved  # 纳入储备项目库
        assert [r.spec_name for r in db.open_tasks(case_id)] == ["completion_report"]


def test_the_project_notice_renders_chinese_project_names_with_embedded_fonts_no_notdef_and_a_valid_signature(
        db, two_projects):
    serial, pdf = issue(db, "demo_village", KIND, two_projects, CONTACT, procedure=PROCEDURE)
    text = _text(pdf)
    assert "(cid:" not in text and "\ufffd" not in text
    start = db.clock.now().astimezone(CHINA_TZ).date()
    for expected in [
        "关于冬笋街社区衔接资金项目安排的公示",
        "一、宝梵镇柑橘产业园提升项目", "二、村道硬化及安全防护项目",
        "实施地点：宝梵镇冬笋街社区", "项目类别：产业发展", "项目类别：基础设施",
        "新建柑橘分拣冷藏库 1 座 600 平方米", "硬化村道 2.4 公里",
        "核定投资78.00万元，安排财政衔接推进乡村振兴补助资金78.00万元（审定文号：蓬巩衔组〔2026〕8号）",
        "安排财政衔接推进乡村振兴补助资金43.00万元（审定文号：蓬巩衔组〔2026〕9号）",
        "联农带农机制：入股分红", "联农带农机制：务工就业，以工代赈,优先吸纳脱贫劳动力务工",
        "带动脱贫户（含监测户）36户", "行业主管部门：蓬溪县农业农村局",
        "以上2个项目共安排衔接资金121.00万元",
        f"公示时间：{cn_date(start)}至{cn_date(start + timedelta(days=NOTICE_DAYS - 1))}（共{NOTICE_DAYS}天）",
        "公示地点：村务公开栏", "0825-5421234", "监督举报电话12317",
        OFFICES[VILLAGE], cn_date(start), f"编号：{serial}",
    ]:
        assert expected in text, expected

    used = fonts(pdf)
    assert used
    for font in used:
        assert font["embedded"] and font["subtype"] == "/Type0", font
        assert re.fullmatch(r"/[A-Z]{6}\+.+", font["base_font"]), font  # subset
    assert notdef_glyphs(pdf) == 0

    with db.uow() as work:
        report = validate_signature(pdf, KeyStore(work.session, db.clock).trust_roots())
    assert report.ok, report
    assert OFFICES[VILLAGE] in report.signer
    assert stored(db, serial).sha256 and stored(db, serial).office_name == OFFICES[VILLAGE]


def test_the_village_of_another_township_cannot_issue_the_project_notice_and_nothing_advances(db, two_projects):
    with pytest.raises(NotFoundError):  # the cases are outside its jurisdiction
        issue(db, "demo_other_village", KIND, two_projects, CONTACT, procedure=PROCEDURE)
    assert [[r.spec_name for r in db.open_tasks(c)] for c in two_projects] == [[STEP], [STEP]]


# ----------------------------------------------------------------------------- deploy check
ROLES = {"village_cadre", "township_officer", "county_department", "county_leader", "office_clerk", "admin"}


def _p4_files() -> dict[str, str]:
    return dict(read_folder(settings.WORKFLOWS_DIR / PROCEDURE, settings.FORMS_DIR).files)


def test_the_shipped_project_library_declares_the_kind_its_issuance_step_names(db):
    files = _p4_files()
    assert KIND in {k["code"] for k in json.loads(files["template/notices.json"])["kinds"]}
    spec, _subs = compile_bundle(bundle_from_files(files), ROLES)
    assert spec.task_specs[STEP].extensions["properties"]["noticeKind"] == KIND
    with db.uow() as work:  # the deployed version carries the catalog it was checked against
        assert "template/notices.json" in work.definitions.files(work.definitions.latest(PROCEDURE))


@pytest.mark.parametrize("change", ["undeclared_kind", "no_catalog"])
def test_deploy_refuses_an_issuance_step_whose_notice_kind_the_catalog_does_not_declare(db, change):
    files = _p4_files()
    (bpmn,) = [k for k in files if k.startswith("bpmn/")]
    if change == "undeclared_kind":
        files[bpmn] = files[bpmn].replace(f'name="noticeKind" value="{KIND}"', 'name="noticeKind" value="project_notice_typo"')
        kind = "project_notice_typo"
    else:
        del files["template/notices.json"]
        kind = KIND
    with db.uow() as work:
        before = work.session.scalar(select(func.count(ProcedureVersion.id)))
        with pytest.raises(DefinitionError) as info:
            work.definitions.deploy(bundle_from_files(files), "tester", set(work.directory.role_levels()))
        assert work.session.scalar(select(func.count(ProcedureVersion.id))) == before
    message = f"通知模板 {kind!r} 未在 notices.json 中声明"
    assert ("出具项目公示[issue_project_notice]", message) in info.value.problems

    with db.uow() as work:  # the studio reports the same rule on the same element
        problems = studio(work).validate_files(files)
    assert [(p.element_id, p.message) for p in problems if "notices.json" in p.message] == [(STEP, message)]


def test_the_issue_page_counts_projects_as_projects_not_households(db, two_projects, client_for):
    page = client_for("demo_village").get(f"/notices/{PROCEDURE}/{KIND}").get_data(as_text=True)
    assert '<span data-testid="group-count">2 个项目</span>' in page and " 户)" not in page

"""Studio validation: each kind of invalid draft is refused with a message naming its element, and
refusing changes nothing; hostile files are not even saved.

Rules (issue 6): every lane maps to an existing role, every user task has a form that exists, timer
expressions evaluate, expressions pass the safe evaluator, every path reaches an end, no unreachable
elements — plus actions, DMN references, case statuses, form patterns, and SpiffWorkflow's own parse.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from engine.core.errors import DefinitionError
from engine.models import AuditEvent, Procedure, ProcedureDraft, ProcedureVersion
from engine.studio.service import DraftProblems
from tests.integration.studio_support import (
    EDU_FORMS,
    EDU_STEPS,
    admin,
    draft_with,
    edu_files,
    form_json,
    new_code,
    studio,
    sysadmin,
)

STEP = {s.id: s for s in EDU_STEPS}


def _steps(**changes):
    return [replace(s, **changes[s.id]) if s.id in changes else s for s in EDU_STEPS]


def _linear(code, ids):
    return [(f"Flow_{a}_{b}", a, b) for a, b in zip(ids, ids[1:], strict=False)]


ORDER = ["start", *[s.id for s in EDU_STEPS], "end"]
TIMER = ('<bpmn:intermediateCatchEvent id="timer_notice" name="公示期满"><bpmn:timerEventDefinition>'
         '<bpmn:timeDuration>{expr}</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>')


def _with_timer(expr):
    order = ORDER[:5] + ["timer_notice"] + ORDER[5:]
    return dict(extra_nodes=TIMER.format(expr=expr), flows=_linear("", order),
                lane_extra={"Lane_school": ["timer_notice"]})


GATEWAY = ('<bpmn:exclusiveGateway id="gw_review" name="评议结果?" default="Flow_gw_yes" />'
           '<bpmn:endEvent id="end_refused" name="不予资助" />')


def _with_gateway(condition, default=True):
    order = ORDER[:4] + ["gw_review"] + ORDER[4:]
    flows = _linear("", order)
    flows = [(("Flow_gw_yes" if a == "gw_review" else f), a, b) for f, a, b in flows]
    node = GATEWAY if default else GATEWAY.replace(' default="Flow_gw_yes"', "")
    cond = f'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{condition}</bpmn:conditionExpression>'
    return dict(extra_nodes=node, flows=flows,
                extra_flows=f'<bpmn:sequenceFlow id="Flow_gw_no" sourceRef="gw_review" targetRef="end_refused">{cond}'
                            '</bpmn:sequenceFlow>',
                lane_extra={"Lane_school": ["gw_review", "end_refused"]})


CASES = {
    # kind: (bpmn/edu_files kwargs, element id the problem must name, words the message must contain)
    "lane role does not exist": (dict(lane_names={"Lane_county": "县教育局 (education_bureau)"}),
                                 "Lane_county", "education_bureau"),
    "lane without a role": (dict(lane_names={"Lane_village": "村里"}), "Lane_village", "village"),
    "user task without form": (dict(steps=_steps(school_review={"form": ""})), "school_review", "formKey"),
    "form that does not exist": (dict(steps=_steps(school_review={"form": "no_such_form"})), "school_review",
                                 "不存在"),
    "timer literal not quoted": (_with_timer("P5D"), "timer_notice", "P5D"),
    "timer that is no duration": (_with_timer('"five days"'), "timer_notice", "无法求值"),
    "timer reading an unknown field": (_with_timer('"P" + str(notice_dayz) + "D"'), "timer_notice", "notice_dayz"),
    "unsafe condition": (_with_gateway("().__class__.__bases__"), "Flow_gw_no", "不安全"),
    "condition calling a forbidden function": (_with_gateway('__import__("os")'), "Flow_gw_no", "不安全"),
    "condition on an unknown field": (_with_gateway('review_reslt == "不同意"'), "Flow_gw_no", "review_reslt"),
    "gateway branch without condition": (_with_gateway('review_result == "不同意"', default=False),
                                         "Flow_gw_yes", "条件"),
    "path that never reaches an end": (dict(flows=_linear("", ORDER[:-1])), "county_review", "结束事件"),
    "unreachable element": (dict(flows=_linear("", ["start", "school_survey", "school_review", "school_notice",
                                                     "county_review", "end"])
                                 + [("Flow_app_review", "student_application", "school_review")]),
                            "student_application", "不可达"),
    "action that does not exist": (dict(steps=_steps(school_review={"actions": "approve,delete"})), "school_review",
                                   "delete"),
    "case status that does not exist": (dict(steps=_steps(county_review={"extra": {"caseStatus": "paid"}})),
                                        "county_review", "paid"),
    "due time that is no duration": (dict(steps=_steps(school_notice={"due_in": "7 days"})), "school_notice",
                                     "dueIn"),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_each_kind_of_invalid_draft_is_refused_naming_its_element(db, kind):
    kwargs, element_id, words = CASES[kind]
    code = new_code()
    draft_id = draft_with(db, edu_files(code, **kwargs))
    with db.uow() as work:
        problems = studio(work).validate_draft(admin(db), draft_id)
    named = [p for p in problems if p.element_id == element_id]
    assert named, f"{kind}: no problem names {element_id}: {[p.as_dict() for p in problems]}"
    assert any(words in p.message for p in named), [p.as_dict() for p in named]
    assert any(element_id in p.where for p in named)

    with db.uow() as work, pytest.raises(DraftProblems) as refused:
        studio(work).deploy_draft(admin(db), draft_id)
    assert any(d.element_id == element_id for d in refused.value.details)
    assert element_id in str(refused.value)
    with db.uow() as work:
        assert work.session.scalar(select(Procedure).where(Procedure.code == code)) is None
        assert work.session.get(ProcedureDraft, draft_id).status == "editing"


def test_the_valid_draft_has_no_problems_and_every_shipped_procedure_validates(db):
    code = new_code()
    draft_id = draft_with(db, edu_files(code))
    with db.uow() as work:
        assert studio(work).validate_draft(admin(db), draft_id) == []
        shipped = [v.id for v in work.definitions.list_latest() if v.procedure.owner_region_code is None]
    assert len(shipped) >= 3
    for version_id in shipped:
        with db.uow() as work:
            service = studio(work)
            draft = service.open_version(sysadmin(db), version_id)
            assert service.validate_draft(sysadmin(db), draft.id) == [], draft.code


def test_business_rule_task_must_name_an_existing_decision(db):
    code = new_code()
    rule = ('<bpmn:businessRuleTask id="decide_level" name="判定资助档次"><bpmn:extensionElements>'
            '<spiffworkflow:calledDecisionId>no_such_decision</spiffworkflow:calledDecisionId>'
            '</bpmn:extensionElements></bpmn:businessRuleTask>')
    order = ORDER[:4] + ["decide_level"] + ORDER[4:]
    files = edu_files(code, extra_nodes=rule, flows=_linear("", order), lane_extra={"Lane_school": ["decide_level"]})
    with db.uow() as work:
        problems = studio(work).validate_files(files)
    assert [(p.element_id, "no_such_decision" in p.message) for p in problems] == [("decide_level", True)]


def test_user_task_outside_every_lane_is_refused(db):
    code = new_code()
    extra = (f'<bpmn:userTask id="loose_task" name="无泳道任务"><bpmn:extensionElements><spiffworkflow:properties>'
             f'<spiffworkflow:property name="formKey" value="{code}/school_review" /></spiffworkflow:properties>'
             '</bpmn:extensionElements></bpmn:userTask>')
    order = ORDER[:4] + ["loose_task"] + ORDER[4:]
    files = edu_files(code, extra_nodes=extra, flows=_linear("", order))
    with db.uow() as work:
        problems = studio(work).validate_files(files)
    assert [p.element_id for p in problems] == ["loose_task"], [p.as_dict() for p in problems]
    assert "泳道" in problems[0].message


def test_form_problems_name_the_form_file(db):
    code = new_code()
    files = edu_files(code)
    evil = [*EDU_FORMS["school_survey"], {"type": "textfield", "key": "phone", "label": "电话",
                                         "validate": {"pattern": "(a+)+$"}}]
    files[f"form/{code}/school_survey"] = form_json(code, "school_survey", evil)
    files[f"form/{code}/school_notice"] = json.dumps({"components": [{"type": "button", "key": "go", "label": "提交"}]})
    with db.uow() as work:
        problems = studio(work).validate_files(files)
    by_file = {p.file: p.message for p in problems}
    assert "嵌套重复" in by_file[f"form/{code}/school_survey"]
    assert "button" in by_file[f"form/{code}/school_notice"]


@pytest.mark.parametrize("hostile", [
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>',
    '<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><d>&b;</d>',
    "<bpmn:definitions",
])
def test_hostile_or_broken_xml_is_not_saved_and_nothing_changes(db, hostile):
    code = new_code()
    draft_id = draft_with(db, edu_files(code))
    with db.uow() as work:
        before = work.session.get(ProcedureDraft, draft_id)
        before_files, before_lock = dict(before.files), before.lock_version
        audits = work.session.scalar(select(func.count(AuditEvent.id)))
    files = edu_files(code)
    files[f"bpmn/{code}.bpmn"] = hostile
    with db.uow() as work, pytest.raises(DefinitionError) as refused:
        studio(work).save_draft(admin(db), draft_id, files, before_lock)
    assert f"bpmn/{code}.bpmn" in str(refused.value)
    with db.uow() as work:
        after = work.session.get(ProcedureDraft, draft_id)
        assert (after.files, after.lock_version) == (before_files, before_lock)
        assert work.session.scalar(select(func.count(AuditEvent.id))) == audits
        assert work.session.scalar(select(func.count(ProcedureVersion.id)).join(Procedure)
                                   .where(Procedure.code == code)) == 0


@pytest.mark.parametrize("files", [
    {"procedure.json": "{}", "bpmn/a.bpmn": "<x/>", "../../etc/passwd": "x"},
    {"procedure.json": "{}", "bpmn/a.bpmn": "<x/>", "bpmn/b.bpmn": "<x/>"},
    {"procedure.json": "{}", "bpmn/a.bpmn": "<x/>", "form/x": 5},
    "not a mapping",
])
def test_a_file_set_of_the_wrong_shape_is_refused(db, files):
    code = new_code()
    draft_id = draft_with(db, edu_files(code))
    with db.uow() as work, pytest.raises(DefinitionError):
        studio(work).save_draft(admin(db), draft_id, files, None)


def test_start_data_and_data_passed_by_other_procedures_are_known_names(db):
    code = new_code()
    condition = _with_gateway('risk_cause == "因学"')
    with db.uow() as work:
        problems = studio(work).validate_files(edu_files(code, **condition))
    assert [(p.element_id, "risk_cause" in p.message) for p in problems] == [("Flow_gw_no", True)]
    declared = edu_files(code, **condition)
    manifest = json.loads(declared["procedure.json"])
    manifest["start_data"] = ["risk_cause"]
    declared["procedure.json"] = json.dumps(manifest, ensure_ascii=False)
    with db.uow() as work:
        assert studio(work).validate_files(declared) == []
        # 监测识别 starts 四步法退出 with passData risk_cause,…: a monitoring_exit draft may read it
        assert "risk_cause" in studio(work).passed_in()["monitoring_exit"]
        assert studio(work).validate_files(edu_files("monitoring_exit", **condition)) == []

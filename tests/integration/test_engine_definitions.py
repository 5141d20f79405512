"""Deploying procedures: unsafe expressions, hostile or broken XML, and content versioning.

Every refused deploy runs inside a unit of work that then *commits*, so "nothing stored"
means the deploy itself wrote nothing, not merely that a rollback hid it.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from xml.sax.saxutils import escape

import pytest
from lxml import etree
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, select

from engine import demo_data as D
from engine.core import settings
from engine.core.errors import DefinitionError, UnsafeExpressionError
from engine.models import CaseStatus, Procedure, ProcedureVersion
from engine.procedures.definitions import bundle_from_files, read_folder
from engine.procedures.expressions import SCRIPT_ENGINE
from engine.procedures.serialization import SPEC_CACHE

FORM = json.dumps({"type": "default", "components": [
    {"type": "number", "key": "score", "label": "得分", "validate": {"required": True, "min": 0}},
]})
RECHECK_FORM = json.dumps({"type": "default", "components": [
    {"type": "textfield", "key": "note", "label": "复核意见"},
]})


@pytest.fixture(autouse=True)
def _private_spec_cache(monkeypatch):
    """SPEC_CACHE is per process and keyed by version id only. SQLite test databases are
    copies of one template, so a version id made here (2, 3, ...) can be reused in another
    test's database for another procedure: start each test with an empty cache."""
    monkeypatch.setattr(SPEC_CACHE, "_specs", {})


def _user_task(bpmn_id: str, name: str, incoming: str, outgoing: str, form_key: str | None,
               actions: str = "approve", extra: str = "") -> str:
    props = f'<spiffworkflow:property name="formKey" value="{form_key}" />' if form_key else ""
    return f"""
    <bpmn:userTask id="{bpmn_id}" name="{name}">
      <bpmn:extensionElements>
        <spiffworkflow:properties>
          {props}
          <spiffworkflow:property name="actions" value="{actions}" />
        </spiffworkflow:properties>
        {extra}
      </bpmn:extensionElements>
      <bpmn:incoming>{incoming}</bpmn:incoming>
      <bpmn:outgoing>{outgoing}</bpmn:outgoing>
    </bpmn:userTask>"""


def small_bpmn(process_id: str = "t_proc", script: str = "doubled = score * 2",
               condition: str = "doubled > 5", town_lane: str = "乡镇 (township_officer)",
               check_form_key: str | None = "t/check", check_extra: str = "",
               prolog: str = '<?xml version="1.0" encoding="UTF-8"?>', body_extra: str = "") -> str:
    """start → 核查 (village) → 计算 (script) → gateway: condition → 复核 (township) | default → end."""
    return f"""{prolog}
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    id="Definitions_t" targetNamespace="http://xiangflow.cn/test">
  <bpmn:process id="{process_id}" name="测试流程" isExecutable="true">
    <bpmn:laneSet id="LaneSet_t">
      <bpmn:lane id="Lane_village" name="村级 (village_cadre)">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>check</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>calc</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>gw</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_plain</bpmn:flowNodeRef>
      </bpmn:lane>
      <bpmn:lane id="Lane_town" name="{escape(town_lane)}">
        <bpmn:flowNodeRef>recheck</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_recheck</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start" name="发起"><bpmn:outgoing>f_start</bpmn:outgoing></bpmn:startEvent>
    {_user_task("check", "核查", "f_start", "f_calc", check_form_key, extra=check_extra)}
    <bpmn:scriptTask id="calc" name="计算" scriptFormat="python">
      <bpmn:incoming>f_calc</bpmn:incoming>
      <bpmn:outgoing>f_gw</bpmn:outgoing>
      <bpmn:script>{escape(script)}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:exclusiveGateway id="gw" name="是否复核" default="f_plain">
      <bpmn:incoming>f_gw</bpmn:incoming>
      <bpmn:outgoing>f_recheck</bpmn:outgoing>
      <bpmn:outgoing>f_plain</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    {_user_task("recheck", "复核", "f_recheck", "f_end", "t/recheck")}
    <bpmn:endEvent id="end_recheck" name="复核完成"><bpmn:incoming>f_end</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_plain" name="直接完成"><bpmn:incoming>f_plain</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f_start" sourceRef="start" targetRef="check" />
    <bpmn:sequenceFlow id="f_calc" sourceRef="check" targetRef="calc" />
    <bpmn:sequenceFlow id="f_gw" sourceRef="calc" targetRef="gw" />
    <bpmn:sequenceFlow id="f_recheck" name="需复核" sourceRef="gw" targetRef="recheck">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{escape(condition)}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_plain" sourceRef="gw" targetRef="end_plain" />
    <bpmn:sequenceFlow id="f_end" sourceRef="recheck" targetRef="end_recheck" />
    {body_extra}
  </bpmn:process>
</bpmn:definitions>
"""


def small_bundle(code: str, bpmn: str | None = None, forms: dict[str, str] | None = None,
                 process_id: str = "t_proc", extra_files: dict[str, str] | None = None):
    files = {
        "procedure.json": json.dumps({"code": code, "name": f"测试 {code}", "subject_kind": "household",
                                      "process_id": process_id}),
        "bpmn/t.bpmn": bpmn if bpmn is not None else small_bpmn(process_id),
        **({"form/t/check": FORM, "form/t/recheck": RECHECK_FORM} if forms is None else forms),
        **(extra_files or {}),
    }
    return bundle_from_files(files)


def _deploy(db, bundle):
    with db.uow() as work:
        return work.definitions.deploy(bundle, "tester", set(work.directory.role_levels()))


def _refused(db, bundle) -> DefinitionError:
    """Deploy expecting DefinitionError inside a unit of work that commits anyway."""
    with db.uow() as work:
        with pytest.raises(DefinitionError) as info:
            work.definitions.deploy(bundle, "tester", set(work.directory.role_levels()))
    assert info.value.problems, "a refusal must say which element and why"
    for element, reason in info.value.problems:
        assert element and reason
    with db.uow() as work:
        assert work.session.scalar(select(Procedure).where(Procedure.code == bundle.code)) is None
        assert work.session.scalar(select(func.count(ProcedureVersion.id)).join(Procedure).where(
            Procedure.code == bundle.code)) == 0
    return info.value


def _code(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- positive control
def test_the_small_test_procedure_deploys_and_its_safe_script_and_condition_route_the_case(db):
    code = _code("t_valid")
    version = _deploy(db, small_bundle(code))
    assert version.version == 1

    high = db.start_case(procedure=code)
    db.complete(high, "demo_village", data={"score": 4})  # doubled = 8 > 5 → 复核
    (row,) = db.open_tasks(high)
    assert (row.spec_name, row.role_code, row.scope_code) == ("recheck", "township_officer", "510921107000")

    low = db.start_case(procedure=code)
    db.complete(low, "demo_village", data={"score": 2})  # doubled = 4 → default flow, case completes
    assert db.open_tasks(low) == []
    assert db.case(low).status == CaseStatus.completed


# ----------------------------------------------------------------------------- 7. unsafe expressions at deploy
UNSAFE_SCRIPTS = {
    "import": "import os",
    "dunder_import": "x = __import__('os')",
    "subclasses": "x = ().__class__.__subclasses__()",
    "open": "x = open('/etc/passwd')",
    "import_in_later_line": "doubled = score * 2\nimport subprocess",
    "loop": "for i in range(3):\n    doubled = i",
}


@pytest.mark.parametrize("script", list(UNSAFE_SCRIPTS.values()), ids=list(UNSAFE_SCRIPTS))
def test_a_script_task_with_unsafe_code_is_refused_at_deploy_naming_the_script_task(db, script):
    err = _refused(db, small_bundle(_code("t_unsafe_script"), small_bpmn(script=script)))
    assert any("calc" in element for element, _reason in err.problems)


@pytest.mark.parametrize("condition", [
    "doubled.__class__.__name__ == 'int'",
    "__class__ == 1",
    "__import__('os').system('true') == 0",
    "open('/etc/passwd') != None",
])
def test_a_gateway_condition_with_unsafe_code_is_refused_at_deploy_naming_the_flow(db, condition):
    err = _refused(db, small_bundle(_code("t_unsafe_cond"), small_bpmn(condition=condition)))
    assert any("f_recheck" in element for element, _reason in err.problems)


def test_an_unsafe_pre_script_on_a_user_task_is_refused_at_deploy(db):
    pre = "<spiffworkflow:preScript>x = ().__class__.__base__.__subclasses__()</spiffworkflow:preScript>"
    err = _refused(db, small_bundle(_code("t_unsafe_pre"), small_bpmn(check_extra=pre)))
    assert any("check" in element for element, _reason in err.problems)


def _monitoring_exit_files(code: str) -> dict[str, str]:
    bundle = read_folder(settings.WORKFLOWS_DIR / "monitoring_exit", settings.FORMS_DIR)
    files = dict(bundle.files)
    manifest = json.loads(files["procedure.json"])
    manifest["code"] = code
    files["procedure.json"] = json.dumps(manifest, ensure_ascii=False)
    return files


@pytest.mark.parametrize(("old", "new"), [
    ('<inputEntry id="rule_dibao_in"><text>"低保"</text>',
     '<inputEntry id="rule_dibao_in"><text>().__class__.__subclasses__()</text>'),
    ('<inputEntry id="rule_tekun_in"><text>"特困"</text>',
     '<inputEntry id="rule_tekun_in"><text>__import__("os").system("true")</text>'),
    ("<text>special_category</text>", "<text>open('/etc/passwd')</text>"),
    ('<outputEntry id="rule_other_out"><text>"normal"</text>',
     '<outputEntry id="rule_other_out"><text>special_category.__class__</text>'),
], ids=["input_entry_subclasses", "input_entry_import", "input_expression_open", "output_entry_dunder"])
def test_an_unsafe_dmn_entry_is_refused_at_deploy_naming_the_decision_file(db, old, new):
    code = _code("t_unsafe_dmn")
    files = _monitoring_exit_files(code)
    assert old in files["dmn/exit_mode.dmn"]
    files["dmn/exit_mode.dmn"] = files["dmn/exit_mode.dmn"].replace(old, new)
    err = _refused(db, bundle_from_files(files))
    assert any("exit_mode.dmn" in element for element, _reason in err.problems)


@pytest.mark.parametrize("script", ["x = __import__('os').system('touch {marker}')",
                                    "x = open('{marker}', 'w')",
                                    "x = ().__class__.__base__.__subclasses__()"])
def test_the_script_engine_refuses_unsafe_scripts_at_run_time_even_when_deploy_checks_are_bypassed(
        tmp_path, script):
    """Parse straight with SpiffWorkflow (no deploy check) and run with XiangFlow's script engine."""
    marker = tmp_path / "pwned"
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_bpmn_xml(etree.fromstring(small_bpmn(script=script.format(marker=marker)).encode()), "t.bpmn")
    wf = BpmnWorkflow(parser.get_spec("t_proc"), script_engine=SCRIPT_ENGINE)
    wf.do_engine_steps()
    (check,) = wf.get_tasks(state=TaskState.READY, manual=True)
    check.data["score"] = 4
    check.run()
    with pytest.raises(WorkflowException) as info:
        wf.do_engine_steps()
    assert isinstance(info.value.__context__, UnsafeExpressionError)
    assert "UnsafeExpressionError" in str(info.value)
    assert not marker.exists()
    assert "x" not in wf.get_tasks(spec_name="calc")[0].data


# ----------------------------------------------------------------------------- 8. hostile / broken XML
VALID = small_bpmn()
BODY = VALID.split("\n", 1)[1]  # without the XML declaration

HOSTILE = {
    "xxe": ('<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
            + BODY.replace('name="测试流程"', 'name="&xxe;"')),
    "billion_laughs": ('<?xml version="1.0"?>\n<!DOCTYPE d [\n <!ENTITY lol "lol">\n'
                       + "".join(f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
                                 for i in range(1, 10))
                       + "]>\n" + BODY.replace('name="测试流程"', 'name="&lol9;"')),
    "xxe_in_text": ('<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
                    + BODY.replace("<bpmn:laneSet", "<bpmn:documentation>&xxe;</bpmn:documentation><bpmn:laneSet")),
    "billion_laughs_in_text": ('<?xml version="1.0"?>\n<!DOCTYPE d [\n <!ENTITY lol "lol">\n'
                               + "".join(f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
                                         for i in range(1, 10))
                               + "]>\n"
                               + BODY.replace("<bpmn:laneSet", "<bpmn:documentation>&lol9;</bpmn:documentation><bpmn:laneSet")),
    "doctype": '<?xml version="1.0"?>\n<!DOCTYPE bpmn:definitions>\n' + BODY,
    "malformed": VALID[: len(VALID) // 2],
    "not_xml": "这不是 XML",
}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_or_malformed_bpmn_xml_is_refused_and_nothing_is_stored(db, text):
    err = _refused(db, small_bundle(_code("t_xml"), text))
    assert any(element == "bpmn/t.bpmn" for element, _reason in err.problems)
    assert "root:" not in str(err)  # /etc/passwd never leaks into a message


def test_a_dmn_file_with_an_external_entity_is_refused(db):
    code = _code("t_xml_dmn")
    files = _monitoring_exit_files(code)
    dmn = files["dmn/exit_mode.dmn"]
    files["dmn/exit_mode.dmn"] = dmn.replace(
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    ).replace('label="特殊类别"', 'label="&xxe;"')
    err = _refused(db, bundle_from_files(files))
    assert any(element == "dmn/exit_mode.dmn" for element, _reason in err.problems)


def test_a_bpmn_that_fails_the_xsd_is_refused_with_file_and_reason(db):
    bad = small_bpmn(body_extra='<bpmn:approvalStep id="not_bpmn" />')
    err = _refused(db, small_bundle(_code("t_xsd"), bad))
    ((element, reason),) = err.problems
    assert "t.bpmn" in element
    assert "approvalStep" in reason


def test_a_user_task_in_a_lane_of_an_unknown_role_is_refused_naming_the_task_and_role(db):
    err = _refused(db, small_bundle(_code("t_role"), small_bpmn(town_lane="乡镇 (township_boss)")))
    problems = dict(err.problems)
    assert "复核[recheck]" in problems
    assert "township_boss" in problems["复核[recheck]"]


def test_a_user_task_without_form_key_is_refused_naming_the_task(db):
    err = _refused(db, small_bundle(_code("t_nokey"), small_bpmn(check_form_key=None)))
    problems = dict(err.problems)
    assert "formKey" in problems["核查[check]"]


def test_a_form_key_whose_form_is_missing_is_refused_naming_the_task_and_form(db):
    err = _refused(db, small_bundle(_code("t_noform"), forms={"form/t/check": FORM}))
    problems = dict(err.problems)
    assert "t/recheck" in problems["复核[recheck]"]
    assert "核查[check]" not in problems


def test_a_user_task_with_an_unknown_action_is_refused(db):
    bpmn = small_bpmn().replace('value="approve" />', 'value="approve,delete_everything" />', 1)
    err = _refused(db, small_bundle(_code("t_action"), bpmn))
    assert "核查[check]" in dict(err.problems)


# ----------------------------------------------------------------------------- 9. versioning
def test_versions_identical_content_reuses_a_version_and_running_cases_stay_on_theirs(db):
    code = _code("t_version")
    files_v1 = _monitoring_exit_files(code)
    # this copy has no notice templates on disk: its 出具 steps become plain approvals (no noticeKind) and
    # 退出告知 needs no 退出告知书 first (no requiresNotice)
    files_v1["bpmn/monitoring_exit.bpmn"] = re.sub(
        r'\s*<spiffworkflow:property name="(?:noticeKind|requiresNotice)" value="[a-z_]+" />', "",
        files_v1["bpmn/monitoring_exit.bpmn"])
    v1 = _deploy(db, bundle_from_files(files_v1))
    again = _deploy(db, bundle_from_files(dict(files_v1)))
    assert (again.id, again.version) == (v1.id, 1)
    assert v1.version == 1

    old_case = db.start_case(procedure=code)
    (row,) = db.open_tasks(old_case)
    assert (row.title, row.due_at - row.created_at) == ("入户核查", timedelta(days=10))
    db.complete(old_case, "demo_village", data=D.HOUSEHOLD_CHECK)

    files_v2 = dict(files_v1)
    bpmn = files_v2["bpmn/monitoring_exit.bpmn"]
    changed = bpmn.replace('name="入户核查"', 'name="入户核查(新版)"').replace(
        '<spiffworkflow:property name="dueIn" value="P10D" />', '<spiffworkflow:property name="dueIn" value="P7D" />')
    assert changed != bpmn
    files_v2["bpmn/monitoring_exit.bpmn"] = changed
    db.clock.advance(timedelta(hours=1))
    v2 = _deploy(db, bundle_from_files(files_v2))
    assert v2.version == 2 and v2.id != v1.id
    assert v2.deployed_at == db.clock.now()
    with db.uow() as work:
        assert work.definitions.latest(code).id == v2.id
        assert [v.version for v in work.session.scalars(
            select(ProcedureVersion).join(Procedure).where(Procedure.code == code)
            .order_by(ProcedureVersion.id))] == [1, 2]  # in deploy order (a table's row order is no order)

    # the case started on v1 keeps running on v1, through both public-notice periods
    for number, (username, data) in enumerate(D.REVIEW_STEPS):
        db.complete(old_case, username, data=data)
        if number in (0, 3):  # 民主评议 → 出具村级公示 → 村级公示; 县级公告 → 出具县级公告 → 县级公告期
            db.complete(old_case, username)
            assert db.pass_notice() == 1
    db.complete(old_case, "demo_village", data=D.EXIT_NOTICE)
    case = db.case(old_case)
    assert case.procedure_version_id == v1.id
    assert case.status == CaseStatus.exited

    # a new case runs on v2
    new_case = db.start_case(procedure=code)
    assert db.case(new_case).procedure_version_id == v2.id
    (row,) = db.open_tasks(new_case)
    assert (row.title, row.due_at - row.created_at) == ("入户核查(新版)", timedelta(days=7))



# ----------------------------------------------------------------------------- manifest
@pytest.mark.parametrize("field", ["code", "name", "process_id"])
def test_a_manifest_value_longer_than_its_column_is_refused_as_a_definition_error(db, field):
    """procedure.json is untrusted upload input like the XML: an over-long value must be a
    DefinitionError naming procedure.json, not a database error (PostgreSQL) or silently
    stored (SQLite, which does not enforce VARCHAR lengths)."""
    long_value = "t_" + "x" * 200
    manifest = {"code": _code("t_manifest"), "name": "测试", "subject_kind": "household", "process_id": "t_proc"}
    manifest[field] = long_value
    bpmn = small_bpmn(manifest["process_id"])
    files = {"procedure.json": json.dumps(manifest), "bpmn/t.bpmn": bpmn,
             "form/t/check": FORM, "form/t/recheck": RECHECK_FORM}
    try:  # refused while reading the bundle, before anything reaches the database
        err = _refused(db, bundle_from_files(files))
    except DefinitionError as exc:
        err = exc
    assert any(element == "procedure.json" for element, _reason in err.problems)

"""The procedure checks (engine/procedures/checks): every check of the registry refuses a bundle that
breaks its rule with one problem naming the element (id, name, file) in Chinese; a valid bundle and every
shipped procedure pass all of them; the editor's bpmnlint lane rule and the server agree on lane names."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.access.directory import ROLES
from engine.core import settings
from engine.procedures import checks
from engine.procedures.checks import CheckContext, CheckedBundle
from engine.procedures.checks import engine as engine_checks
from engine.procedures.definitions import read_folder
from engine.procedures.steps import role_of_lane

KNOWN_ROLES = frozenset(code for code, _name, _level in ROLES)
REPO = Path(__file__).resolve().parents[2]
LANE_RULE = REPO / "web/assets/src/bpmnlint-plugin-xiangflow/rules/lane-role.js"

FORM = {"type": "default", "components": [{"type": "number", "key": "score", "label": "得分"}]}
RECHECK_FORM = {"type": "default", "components": [{"type": "textfield", "key": "note", "label": "复核意见"}]}
CATALOG = {"kinds": []}


def bpmn(check_props='<spiffworkflow:property name="formKey" value="t/check" />'
                     '<spiffworkflow:property name="actions" value="approve,reject" />',
         condition="score &gt; 5", extra_nodes="", extra_flows="", village_lane="村级 (village_cadre)",
         village_refs=("start", "check", "gw", "end_plain"), town_lane="乡镇 (township_officer)",
         town_refs=("recheck", "end_recheck"), end_flow="f_end", start_in_lane=True,
         process_attrs='isExecutable="true"') -> str:
    """start → 核查 (village) → gateway: score > 5 → 复核 (township) → end | default → end."""
    if not start_in_lane:
        village_refs = tuple(r for r in village_refs if r != "start")
    refs = lambda ids: "".join(f"<bpmn:flowNodeRef>{i}</bpmn:flowNodeRef>" for i in ids)  # noqa: E731
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="Definitions_t" targetNamespace="http://xiangflow.cn/test">
  <bpmn:process id="t_proc" name="测试流程" {process_attrs}>
    <bpmn:laneSet id="LaneSet_t">
      <bpmn:lane id="Lane_village" name="{village_lane}">{refs(village_refs)}</bpmn:lane>
      <bpmn:lane id="Lane_town" name="{town_lane}">{refs(town_refs)}</bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start" name="发起"><bpmn:outgoing>f_start</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="check" name="核查">
      <bpmn:extensionElements><spiffworkflow:properties>{check_props}</spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f_start</bpmn:incoming><bpmn:outgoing>f_gw</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:exclusiveGateway id="gw" name="是否复核" default="f_plain">
      <bpmn:incoming>f_gw</bpmn:incoming><bpmn:outgoing>f_recheck</bpmn:outgoing><bpmn:outgoing>f_plain</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:userTask id="recheck" name="复核">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formKey" value="t/recheck" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f_recheck</bpmn:incoming><bpmn:outgoing>{end_flow}</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end_recheck" name="复核完成"><bpmn:incoming>f_end</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_plain" name="直接完成"><bpmn:incoming>f_plain</bpmn:incoming></bpmn:endEvent>
    {extra_nodes}
    <bpmn:sequenceFlow id="f_start" sourceRef="start" targetRef="check" />
    <bpmn:sequenceFlow id="f_gw" sourceRef="check" targetRef="gw" />
    <bpmn:sequenceFlow id="f_recheck" name="需复核" sourceRef="gw" targetRef="recheck">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{condition}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_plain" sourceRef="gw" targetRef="end_plain" />
    <bpmn:sequenceFlow id="{end_flow}" sourceRef="recheck" targetRef="end_recheck" />
    {extra_flows}
  </bpmn:process>
</bpmn:definitions>
"""


DMN = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="d" namespace="http://xiangflow.cn/dmn">
  <decision id="level" name="档次">
    <decisionTable id="table">
      <input id="in_score" label="得分"><inputExpression id="in_expr" typeRef="number"><text>{expression}</text></inputExpression></input>
      <output id="out_level" name="level" typeRef="string" />
      <rule id="rule_high"><inputEntry id="rule_high_in"><text>{entry}</text></inputEntry>
        <outputEntry id="rule_high_out"><text>"高"</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>
"""


def files(manifest: dict | None = None, forms: dict | None = None, dmn: str | None = None, **bpmn_args) -> dict:
    found = {
        "procedure.json": json.dumps({"code": "t_registry", "name": "测试", "subject_kind": "household",
                                      "process_id": "t_proc", **(manifest or {})}, ensure_ascii=False),
        "bpmn/t.bpmn": bpmn(**bpmn_args),
        "form/t/check": json.dumps(FORM), "form/t/recheck": json.dumps(RECHECK_FORM),
        **{f"form/{k}": v for k, v in (forms or {}).items()},
    }
    if dmn is not None:
        found["dmn/level.dmn"] = dmn
    return found


def context(**more) -> CheckContext:
    return CheckContext(KNOWN_ROLES, **{"known_procedures": frozenset({"t_registry", "other"}),
                                        "linkable": frozenset({"t_registry"}), "passed_in": {}, **more})


def _task(props: str) -> str:
    return ('<spiffworkflow:property name="formKey" value="t/check" />'
            '<spiffworkflow:property name="actions" value="approve,reject" />' + props)


RULE_TASK = ('<bpmn:businessRuleTask id="decide" name="判定档次"><bpmn:extensionElements>'
             '<spiffworkflow:calledDecisionId>{decision}</spiffworkflow:calledDecisionId></bpmn:extensionElements>'
             '</bpmn:businessRuleTask>')
TIMER = ('<bpmn:boundaryEvent id="late" name="超期" attachedToRef="recheck" cancelActivity="false">'
         '<bpmn:outgoing>f_late</bpmn:outgoing><bpmn:timerEventDefinition id="late_def">'
         '<bpmn:timeDuration xsi:type="bpmn:tFormalExpression">{expr}</bpmn:timeDuration>'
         '</bpmn:timerEventDefinition></bpmn:boundaryEvent><bpmn:endEvent id="end_late" name="超期结束">'
         '<bpmn:incoming>f_late</bpmn:incoming></bpmn:endEvent>')
TIMER_FLOW = '<bpmn:sequenceFlow id="f_late" sourceRef="late" targetRef="end_late" />'
TOWN = ("recheck", "end_recheck", "late", "end_late")

# check → (files that break only its rule, the element id the one problem names (None: a file), its file)
BROKEN = {
    "file_set": (lambda: {**files(), "../etc/passwd": "x"}, None, "../etc/passwd"),
    "xml_well_formed": (lambda: {**files(), "bpmn/t.bpmn": "<bpmn:definitions"}, None, "bpmn/t.bpmn"),
    "manifest_fields": (lambda: files({"code": "X-1"}), None, "procedure.json"),
    "template_json": (lambda: {**files(), "template/notes.json": "{"}, None, "template/notes.json"),
    "form_schemas": (lambda: files(forms={"t/extra": json.dumps({"components": [{"type": "iframe", "key": "x"}]})}),
                     None, "form/t/extra"),
    "form_fields": (lambda: files(forms={"t/extra": json.dumps({"components": [
        {"type": "textfield", "key": "case_id", "label": "编号"}]})}), None, "form/t/extra"),
    "decision_tables": (lambda: files(dmn=DMN.format(expression="score", entry="().__class__"),
                                      extra_nodes=RULE_TASK.format(decision="level")), "rule_high", "dmn/level.dmn"),
    "executable_process": (lambda: files({"process_id": "nope"}), None, "bpmn/t.bpmn"),
    "lane_roles": (lambda: files(town_lane="乡镇 (township_boss)", town_refs=("end_recheck",),
                                 village_refs=("start", "check", "gw", "end_plain", "recheck")), "Lane_town", None),
    "supported_elements": (lambda: files(extra_nodes='<bpmn:serviceTask id="svc" name="调用接口" />'), "svc", None),
    "flow_reachability": (lambda: files(extra_nodes='<bpmn:manualTask id="loose" name="孤立步骤" />',
                                        village_refs=("start", "check", "gw", "end_plain", "loose")), "loose", None),
    "gateway_branches": (lambda: files(extra_flows='<bpmn:sequenceFlow id="f_third" sourceRef="gw" targetRef="end_plain" />'),
                         "f_third", None),
    "user_task_forms": (lambda: files(check_props=_task("").replace("t/check", "t/missing")), "check", None),
    "user_task_actions": (lambda: files(check_props=_task("").replace("approve,reject", "approve,delete")), "check", None),
    "user_task_time_limits": (lambda: files(check_props=_task('<spiffworkflow:property name="dueIn" value="5天" />')),
                              "check", None),
    "user_task_rules": (lambda: files(check_props=_task('<spiffworkflow:property name="opinionRequired" value="yes" />')),
                        "check", None),
    "notice_kinds": (lambda: files(check_props=_task('<spiffworkflow:property name="noticeKind" value="village_notice" />')),
                     "check", None),
    "required_notices": (lambda: files(check_props=_task('<spiffworkflow:property name="requiresNotice" '
                                                         'value="exit_notice" />')), "check", None),
    "case_statuses": (lambda: files(check_props=_task('<spiffworkflow:property name="caseStatus" value="paid" />')),
                      "check", None),
    "linked_procedures": (lambda: files(check_props=_task('<spiffworkflow:property name="startsProcedure" value="other" />')),
                          "check", None),
    "cc_roles": (lambda: files(check_props=_task('<spiffworkflow:property name="ccRole" value="mayor" />')),
                 "check", None),
    "business_rule_decisions": (lambda: files(extra_nodes=RULE_TASK.format(decision="no_such")), "decide", None),
    "conditions": (lambda: files(condition="scroe &gt; 5"), "f_recheck", None),
    "timers": (lambda: files(extra_nodes=TIMER.format(expr="P5D"), extra_flows=TIMER_FLOW, town_refs=TOWN), "late", None),
    "due_dates": (lambda: files(check_props=_task('<spiffworkflow:property name="dueAt" value="__import__(1)" />')),
                  "check", None),
    "scripts": (lambda: files(check_props=_task("") + "</spiffworkflow:properties><spiffworkflow:preScript>import os"
                              "</spiffworkflow:preScript><spiffworkflow:properties>"), "check", None),
    "notice_catalog": (lambda: {**files(), "template/notices.json": json.dumps({"kinds": [{"code": "k"}]})},
                       None, "template/notices.json"),
    "spiff_parse": (lambda: files(process_attrs='isExecutable="false"'), "t_proc", "bpmn/t.bpmn"),
    "user_task_lanes": (lambda: files(town_refs=("end_recheck",)), "recheck", None),
    "start_lane": (lambda: files(start_in_lane=False), "start", None),
}


def _countersign_files() -> dict:
    found = files()
    found["bpmn/t.bpmn"] = found["bpmn/t.bpmn"].replace(
        '<bpmn:incoming>f_recheck</bpmn:incoming>',
        '<bpmn:incoming>f_recheck</bpmn:incoming><bpmn:multiInstanceLoopCharacteristics>'
        '<bpmn:loopCardinality>3</bpmn:loopCardinality></bpmn:multiInstanceLoopCharacteristics>')
    return found


BROKEN["countersigns"] = (_countersign_files, "recheck", None)
ALL_CHECKS = {one.__name__: one for _phase, group in checks.REGISTRY for one in group}


def test_every_check_of_the_registry_has_a_broken_bundle_here():
    assert set(ALL_CHECKS) == set(BROKEN)


def test_the_valid_bundle_passes_every_check_and_is_parsed():
    inspected = checks.inspect(files(), context())
    assert inspected.problems == []
    assert inspected.spec is not None and inspected.spec.name == "t_proc"


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_bundle_breaking_one_rule_gets_one_problem_naming_its_element(name):
    make, element_id, file = BROKEN[name]
    bundle = CheckedBundle(make(), context())
    if name in ("user_task_lanes", "start_lane"):  # these read the parsed spec
        assert engine_checks.spiff_parse(bundle) == []
    (problem,) = ALL_CHECKS[name](bundle)
    assert (problem.element_id, problem.file) == (element_id, file), problem
    if element_id:
        assert problem.element_name, problem  # named by its name, not only its id
        assert problem.where == f"{problem.element_name}[{element_id}]" or problem.where.startswith(file)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in problem.message), problem.message  # said in Chinese
    for word in ("Error", "Exception", "Traceback"):
        assert word not in problem.message
    assert problem in checks.check(make(), context())  # the registry as deploy and the studio run it


FOLDERS = sorted(p for p in settings.WORKFLOWS_DIR.iterdir() if (p / "procedure.json").is_file())


def test_every_shipped_procedure_passes_every_check():
    bundles = [read_folder(folder, settings.FORMS_DIR) for folder in FOLDERS]
    shipped = context(known_procedures=frozenset(b.code for b in bundles), linkable=frozenset(b.code for b in bundles),
                      passed_in=checks.passed_in([b.files for b in bundles]))
    assert len(bundles) >= 4
    for bundle in bundles:
        assert checks.check(bundle.files, shipped) == [], bundle.code


LANE_NAMES = [
    "村级工作专班 (village_cadre)", "村级工作专班 (village_cadre) ", "(village_cadre)", "village_cadre", " village_cadre ",
    "乡镇 (township_officer)", "县 (county_department)", "a (b) (county_leader)", "村级工作专班", "村里",
    "Village_Cadre", "村级 (Village_Cadre)", "村级 (village cadre)", "村级 (1village)", "村级 village_cadre", "",
    "村级（village_cadre）", "village-cadre", "村级 (village_cadre", "x (" + "a" * 41 + ")", "a" * 41,
]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_bpmnlint_lane_rule_and_the_server_agree_on_every_lane_name():
    script = ("const rule = require(process.argv[1]); const names = JSON.parse(process.argv[2]);"
              "console.log(JSON.stringify(names.map((n) => rule.laneRole(n))));")
    out = subprocess.run(["node", "-e", script, str(LANE_RULE), json.dumps(LANE_NAMES)], capture_output=True,
                         text=True, check=True, cwd=REPO / "web/assets", timeout=60)
    from_lint = json.loads(out.stdout)
    assert from_lint == [role_of_lane(n) for n in LANE_NAMES]
    assert from_lint[:8] == ["village_cadre"] * 5 + ["township_officer", "county_department", "county_leader"]
    assert set(from_lint[8:]) == {None}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_bpmnlint_lane_rule_reports_exactly_the_lanes_the_server_refuses_for_their_name():
    """The rule's own check (what the editor runs), over leaf lanes, against the server's lane check."""
    from engine.procedures.checks.structure import lane_problem

    script = ("const rule = require(process.argv[1])(); const names = JSON.parse(process.argv[2]);"
              "const reported = []; names.forEach((name, i) => rule.check("
              "{ $instanceOf: (t) => t === 'bpmn:Lane', id: 'L' + i, name }, { report: (id) => reported.push(id) }));"
              "console.log(JSON.stringify(reported));")
    out = subprocess.run(["node", "-e", script, str(LANE_RULE), json.dumps(LANE_NAMES)], capture_output=True,
                         text=True, check=True, cwd=REPO / "web/assets", timeout=60)
    reported = set(json.loads(out.stdout))
    # the server also refuses roles that do not exist, which the editor cannot know: compare the name's form
    refused = {f"L{i}" for i, name in enumerate(LANE_NAMES) if lane_problem(name, KNOWN_ROLES | {"b"}) is not None
               and role_of_lane(name) is None}
    assert reported == refused


ERROR_BOUNDARY = ('<bpmn:boundaryEvent id="err" name="出错" attachedToRef="recheck"><bpmn:outgoing>f_err</bpmn:outgoing>'
                  '<bpmn:errorEventDefinition id="ed" errorRef="Error_missing" /></bpmn:boundaryEvent>'
                  '<bpmn:endEvent id="end_err" name="出错结束"><bpmn:incoming>f_err</bpmn:incoming></bpmn:endEvent>')
ENGINE_REFUSALS = {
    # what SpiffWorkflow refuses after XiangFlow's own checks passed → the element named, the words said
    "a task with two outgoing flows": (dict(extra_flows='<bpmn:sequenceFlow id="f_x" sourceRef="check" targetRef="end_plain" />'),
                                       "核查[check]", "多条出口连线"),
    "an error event without its error": (dict(extra_nodes=ERROR_BOUNDARY, town_refs=TOWN[:2] + ("err", "end_err"),
                                              extra_flows='<bpmn:sequenceFlow id="f_err" sourceRef="err" targetRef="end_err" />'),
                                         "出错[err]", "定义不存在"),
    "a duplicate id": (dict(extra_nodes='<bpmn:endEvent id="end_plain" name="重复" />'), "bpmn/t.bpmn", "end_plain"),
    "a process not executable": (dict(process_attrs='isExecutable="false"'), "测试流程[t_proc]", "可执行"),
}


@pytest.mark.parametrize(("name", "value"), [("signature", "maybe"), ("batchApproval", "yes"),
                                             ("attachments", "signature"), ("opinionRequired", "1")])
def test_each_step_rule_value_is_checked_on_its_step(name, value):
    bundle = CheckedBundle(files(check_props=_task(f'<spiffworkflow:property name="{name}" value="{value}" />')), context())
    (problem,) = ALL_CHECKS["user_task_rules"](bundle)
    assert (problem.element_id, problem.element_name) == ("check", "核查")


@pytest.mark.parametrize("kind", list(ENGINE_REFUSALS))
def test_what_spiffworkflow_refuses_is_said_in_chinese_naming_the_element(kind):
    bpmn_args, where, words = ENGINE_REFUSALS[kind]
    (problem,) = checks.check(files(**bpmn_args), context())
    assert (problem.where, words in problem.message) == (where, True), problem
    assert not any(w in problem.message for w in ("Error", "Exception", "TypeError", "Validation", "xs:"))


@pytest.mark.parametrize("exc", [IndexError("list index out of range"), KeyError("bpmn:lane"),
                                 TypeError("'NoneType' object is not iterable"), ValueError("XPathEvalError: Undefined namespace prefix")])
def test_an_unexpected_parser_failure_is_said_in_chinese_without_the_exception(exc):
    message = engine_checks.spiff_message(exc)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in message)
    assert type(exc).__name__ not in message and "XPath" not in message and str(exc) not in message

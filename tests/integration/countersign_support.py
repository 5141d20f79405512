"""A small procedure for 会签/或签 and 退回 tests: an application naming its signers, two parallel
reviews, a multi-instance signing step of the county leading group, then a registration step.

    apply (village: signers) → split ─ branch_a (township) ─┐
                                     └ branch_b (dept)     ─┴ join → sign (county_leader, one per signer)
    → outcome gateway: passed → register (township) → end (approved); else → end (rejected)
"""

from __future__ import annotations

import json

from engine.procedures.definitions import bundle_from_files

# completionCondition and signMode per variant (engine/runtime/countersign.py explains the tallies)
CONDITIONS = {
    "all": ("nr_of_rejections > 0", "nr_of_approvals == nr_of_instances"),
    "any": ("nr_of_approvals > 0", "nr_of_approvals > 0"),
    "ratio": ("nr_of_approvals * 3 >= nr_of_instances * 2 or nr_of_rejections * 3 > nr_of_instances",
              "nr_of_approvals * 3 >= nr_of_instances * 2"),
}

_FORMS = {
    "form/cs/apply": {"components": [
        {"type": "textfield", "key": "project", "label": "事项", "validate": {"required": True}},
        {"type": "checklist", "key": "signers", "label": "会签人员", "validate": {"required": True}},
    ]},
    "form/cs/review": {"components": [{"type": "textfield", "key": "review_note", "label": "审核意见"}]},
    "form/cs/sign": {"components": [{"type": "textarea", "key": "sign_note", "label": "会签说明"}]},
    "form/cs/register": {"components": [{"type": "textfield", "key": "register_no", "label": "登记号",
                                         "validate": {"required": True}}]},
}


def _task(bpmn_id: str, name: str, form: str, actions: str, incoming: str, outgoing: str, inner: str = "",
          props: str = "") -> str:
    return f"""
    <bpmn:userTask id="{bpmn_id}" name="{name}">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formKey" value="cs/{form}" />
        <spiffworkflow:property name="actions" value="{actions}" />{props}
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>{incoming}</bpmn:incoming>
      <bpmn:outgoing>{outgoing}</bpmn:outgoing>{inner}
    </bpmn:userTask>"""


def bpmn(process_id: str, mode: str) -> str:
    condition, passed = CONDITIONS[mode]
    mi = f"""
      <bpmn:multiInstanceLoopCharacteristics>
        <bpmn:loopDataInputRef>signers</bpmn:loopDataInputRef>
        <bpmn:loopDataOutputRef>votes</bpmn:loopDataOutputRef>
        <bpmn:inputDataItem id="signer" name="会签人" />
        <bpmn:outputDataItem id="vote" name="会签意见" />
        <bpmn:completionCondition>{condition}</bpmn:completionCondition>
      </bpmn:multiInstanceLoopCharacteristics>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="Defs_{process_id}"
  targetNamespace="http://xiangflow.cn/bpmn">
  <bpmn:process id="{process_id}" name="会签测试" isExecutable="true">
    <bpmn:laneSet id="LaneSet_1">
      <bpmn:lane id="Lane_village" name="村 (village_cadre)">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>apply</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>split</bpmn:flowNodeRef><bpmn:flowNodeRef>join</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>outcome</bpmn:flowNodeRef><bpmn:flowNodeRef>end_ok</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end_rejected</bpmn:flowNodeRef>
      </bpmn:lane>
      <bpmn:lane id="Lane_township" name="乡镇 (township_officer)">
        <bpmn:flowNodeRef>branch_a</bpmn:flowNodeRef><bpmn:flowNodeRef>register</bpmn:flowNodeRef>
      </bpmn:lane>
      <bpmn:lane id="Lane_dept" name="县部门 (county_department)"><bpmn:flowNodeRef>branch_b</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="Lane_county" name="县领导小组 (county_leader)"><bpmn:flowNodeRef>sign</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    {_task("apply", "申请", "apply", "approve", "f1", "f2")}
    <bpmn:parallelGateway id="split"><bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>f3</bpmn:outgoing><bpmn:outgoing>f4</bpmn:outgoing></bpmn:parallelGateway>
    {_task("branch_a", "乡镇审核", "review", "approve,reject,return", "f3", "f5")}
    {_task("branch_b", "部门审核", "review", "approve,reject,return", "f4", "f6")}
    <bpmn:parallelGateway id="join"><bpmn:incoming>f5</bpmn:incoming><bpmn:incoming>f6</bpmn:incoming>
      <bpmn:outgoing>f7</bpmn:outgoing></bpmn:parallelGateway>
    {_task("sign", "领导小组会签", "sign", "approve,reject,return", "f7", "f8", mi,
           f'<spiffworkflow:property name="signMode" value="{mode}" />')}
    <bpmn:exclusiveGateway id="outcome" default="f10"><bpmn:incoming>f8</bpmn:incoming>
      <bpmn:outgoing>f9</bpmn:outgoing><bpmn:outgoing>f10</bpmn:outgoing></bpmn:exclusiveGateway>
    {_task("register", "结果登记", "register", "approve,return", "f9", "f11")}
    <bpmn:endEvent id="end_ok"><bpmn:extensionElements><spiffworkflow:properties>
      <spiffworkflow:property name="caseStatus" value="approved" /></spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f11</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_rejected"><bpmn:extensionElements><spiffworkflow:properties>
      <spiffworkflow:property name="caseStatus" value="rejected" />
      <spiffworkflow:property name="outcomeReasonKey" value="last_opinion" /></spiffworkflow:properties>
      </bpmn:extensionElements><bpmn:incoming>f10</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="apply" />
    <bpmn:sequenceFlow id="f2" sourceRef="apply" targetRef="split" />
    <bpmn:sequenceFlow id="f3" sourceRef="split" targetRef="branch_a" />
    <bpmn:sequenceFlow id="f4" sourceRef="split" targetRef="branch_b" />
    <bpmn:sequenceFlow id="f5" sourceRef="branch_a" targetRef="join" />
    <bpmn:sequenceFlow id="f6" sourceRef="branch_b" targetRef="join" />
    <bpmn:sequenceFlow id="f7" sourceRef="join" targetRef="sign" />
    <bpmn:sequenceFlow id="f8" sourceRef="sign" targetRef="outcome" />
    <bpmn:sequenceFlow id="f9" sourceRef="outcome" targetRef="register">
      <bpmn:conditionExpression>{passed}</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f10" sourceRef="outcome" targetRef="end_rejected" />
    <bpmn:sequenceFlow id="f11" sourceRef="register" targetRef="end_ok" />
  </bpmn:process>
</bpmn:definitions>
"""


def files(mode: str, code: str | None = None) -> dict[str, str]:
    code = code or f"cs_{mode}"
    return {
        "procedure.json": json.dumps({"code": code, "name": f"会签测试({mode})", "subject_kind": "household",
                                      "process_id": code}),
        "bpmn/cs.bpmn": bpmn(code, mode),
        **{k: json.dumps({"type": "default", **v}, ensure_ascii=False) for k, v in _FORMS.items()},
    }


def bundle(mode: str):
    return bundle_from_files(files(mode))

"""The simple designer's compiler (engine/studio/simple): each block kind compiles to BPMN the procedure checks
accept, with a diagram (DI) for every element and edge; compiled drafts read back as the same model and the
same BPMN; diagrams outside the subset are refused with a Chinese reason naming the element."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from lxml import etree

from engine.access.directory import ROLES
from engine.core.errors import ValidationError
from engine.procedures import checks
from engine.procedures.checks import CheckContext
from engine.studio.simple.compiler import CompileContext, compile_model, notice_kinds
from engine.studio.simple.decompiler import OutsideSubset, decompile
from engine.studio.simple.layout import text_width
from engine.studio.simple.model import parse_model
from engine.studio.simple.service import templates

CTX = CompileContext({c: n for c, n, _ in ROLES}, {c: level.value for c, _, level in ROLES},
                     frozenset(k["code"] for k in notice_kinds()), frozenset({"housing_renovation"}))
CHECKS = CheckContext(frozenset(CTX.role_names), frozenset({"housing_renovation", "sample"}),
                      frozenset({"housing_renovation", "sample"}))
NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL", "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
      "dc": "http://www.omg.org/spec/DD/20100524/DC", "di": "http://www.omg.org/spec/DD/20100524/DI"}
FLOW_NODES = ("startEvent", "endEvent", "userTask", "exclusiveGateway", "parallelGateway", "intermediateThrowEvent",
              "intermediateCatchEvent", "subProcess", "boundaryEvent")
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"

START = {"kind": "start", "name": "村级申请", "role": "village_cadre", "form": {"components": [
    {"type": "textfield", "key": "applicant_name", "label": "申请人", "validate": {"required": True}},
    {"type": "number", "key": "family_size", "label": "家庭人口", "validate": {"required": True, "min": 1}},
    {"type": "select", "key": "category", "label": "类别", "validate": {"required": True},
     "values": [{"label": "低保", "value": "dibao"}, {"label": "特困", "value": "tekun"}]},
    {"type": "checklist", "key": "needs", "label": "困难", "validate": {"required": True},
     "values": [{"label": "住房", "value": "housing"}, {"label": "医疗", "value": "medical"}]},
    {"type": "textfield", "key": "reviewer", "label": "指定审核人"}]}}
END = {"kind": "end", "name": "审批通过", "status": "approved"}


def approval(name="乡镇审核", role="township_officer", **more):
    return {"kind": "approval", "name": name, "role": role, **more}


BLOCKS = {
    "approval": approval(time_limit={"amount": 5, "unit": "working"}, opinion_required=True, signature="optional",
                         attachments=["入户照片"], batch_approval=True, assignee_field="reviewer",
                         form={"components": [{"type": "textarea", "key": "opinion_text", "label": "意见"}]}),
    "countersign": approval("县领导小组审定", "county_leader", sign={"mode": "all"}),
    "orsign": approval("县领导小组审定", "county_leader", sign={"mode": "any"}),
    "ratio": approval("县领导小组审定", "county_leader", sign={"mode": "ratio", "percent": 60}),
    "condition": {"kind": "condition", "name": "人口与类别", "branches": [
        {"name": "人口多", "join": "and", "conditions": [{"field": "family_size", "op": ">=", "value": 5},
                                                      {"field": "category", "op": "==", "value": "dibao"}],
         "blocks": [approval("县民政局复核", "county_department")]},
        {"name": "有住房困难", "join": "or", "conditions": [{"field": "needs", "op": "contains", "value": "housing"}],
         "blocks": [{"kind": "end", "name": "转危房改造", "status": "completed"}]}],
        "otherwise": {"name": "其他", "blocks": []}},
    "parallel": {"kind": "parallel", "name": "并行核查", "branches": [
        {"name": "民政", "blocks": [approval("民政核查", "county_department")]},
        {"name": "乡镇", "blocks": [approval("乡镇核查")]}]},
    "cc": {"kind": "cc", "name": "抄送县领导小组", "role": "county_leader"},
    "notice": {"kind": "notice", "name": "村级公示", "role": "village_cadre", "notice_kind": "village_public_notice",
               "period": {"amount": 7, "unit": "natural"}, "objection_return_to": "b_review"},
    "wait": {"kind": "wait", "name": "等待材料", "duration": {"amount": 3, "unit": "working"}},
    "subprocess": {"kind": "subprocess", "name": "发起危房改造", "procedure": "housing_renovation",
                   "pass_data": ["family_size"]},
}


def model_with(*blocks, code="sample"):
    review = approval("村级评议", "village_cadre")
    review["id"] = "b_review"
    return {"version": 1, "meta": {"code": code, "name": "低保申请", "subject_kind": "household"},
            "blocks": [copy.deepcopy(START), review, *copy.deepcopy(list(blocks)), END]}


def compiled(data):
    model = parse_model(data, data["meta"]["code"])
    return model, compile_model(model, CTX)


def bpmn_of(files):
    return etree.fromstring(next(v for k, v in files.items() if k.startswith("bpmn/")).encode())


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_each_block_kind_compiles_to_bpmn_the_checks_accept_with_a_diagram(kind):
    _model, files = compiled(model_with(BLOCKS[kind]))
    assert checks.check(files, CHECKS) == []
    root = bpmn_of(files)
    process = root.find("bpmn:process", NS)
    shapes = {s.get("bpmnElement"): s for s in root.iterfind(".//bpmndi:BPMNShape", NS)}
    edges = {e.get("bpmnElement") for e in root.iterfind(".//bpmndi:BPMNEdge", NS)}
    for tag in FLOW_NODES:
        for node in process.iter(f"{{{NS['bpmn']}}}{tag}"):
            assert node.get("id") in shapes, (kind, node.get("id"))
    assert {f.get("id") for f in process.iter(f"{{{NS['bpmn']}}}sequenceFlow")} <= edges
    lanes = {lane.get("name"): lane for lane in process.iter(f"{{{NS['bpmn']}}}lane")}
    for name, lane in lanes.items():  # lanes are sized to their content and to their rotated labels
        bounds = shapes[lane.get("id")].find("dc:Bounds", NS)
        height = float(bounds.get("height"))
        assert text_width(name) < height, name
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            b = shapes[ref.text].find("dc:Bounds", NS)
            assert float(bounds.get("y")) <= float(b.get("y")) <= float(b.get("y")) + float(b.get("height")) \
                <= float(bounds.get("y")) + height, (kind, ref.text)


def test_lanes_run_from_village_to_county_and_name_their_roles():
    _model, files = compiled(model_with(BLOCKS["countersign"]))
    root = bpmn_of(files)
    names = [lane.get("name") for lane in root.iter(f"{{{NS['bpmn']}}}lane")]
    assert names == ["村干部/村级工作专班 (village_cadre)", "县领导小组 (county_leader)"]
    ys = [float(s.find("dc:Bounds", NS).get("y")) for s in root.iterfind(".//bpmndi:BPMNShape", NS)
          if s.get("bpmnElement", "").startswith("Lane_")]
    assert ys == sorted(ys)


def test_no_two_shapes_overlap_in_a_model_with_branches():
    _model, files = compiled(model_with(BLOCKS["condition"], BLOCKS["parallel"], BLOCKS["ratio"], BLOCKS["notice"]))
    boxes = []
    for shape in bpmn_of(files).iterfind("bpmndi:BPMNDiagram[1]//bpmndi:BPMNShape", NS):
        if shape.get("bpmnElement", "").startswith(("Lane_", "Participant_")) or "__objection" in shape.get("bpmnElement"):
            continue
        b = shape.find("dc:Bounds", NS)
        boxes.append((shape.get("bpmnElement"), *(float(b.get(k)) for k in ("x", "y", "width", "height"))))
    for i, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[i + 1:]:
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (a, b)


def test_the_compiled_bpmn_carries_the_servers_step_properties():
    _model, files = compiled(model_with(BLOCKS["approval"], BLOCKS["ratio"], BLOCKS["wait"]))
    text = files["bpmn/sample.bpmn"]
    for fragment in ('name="dueIn" value="P5D"', 'name="dayKind" value="working"', 'name="opinionRequired"',
                     'name="assigneeKey" value="reviewer"', 'name="attachments" value="入户照片"',
                     'role_members("county_leader")', "nr_of_approvals * 100 &gt;= nr_of_instances * 60",
                     "workdays(3)", "村干部/村级工作专班 (village_cadre)"):
        assert fragment in text, fragment
    assert "P5D" not in json.dumps(parse_model(model_with(BLOCKS["approval"]), "sample").to_json())


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_a_compiled_draft_reads_back_as_the_same_model_and_the_same_bpmn(kind):
    model, files = compiled(model_with(BLOCKS[kind]))
    back = decompile(files, CTX)
    assert compile_model(back, CTX) == files  # the same files, byte for byte
    assert decompile(compile_model(back, CTX), CTX).to_json() == back.to_json()
    original = model.to_json()
    for block, again in zip(original["blocks"], back.to_json()["blocks"], strict=True):
        assert block["id"] == again["id"] and block["kind"] == again["kind"] and block["name"] == again["name"]


@pytest.mark.parametrize("template", [t["id"] for t in templates()])
def test_each_template_compiles_passes_the_checks_and_round_trips(template):
    data = next(t for t in templates() if t["id"] == template)["model"]
    data["meta"].update(code="tpl_sample", name="模板流程")
    model, files = compiled(data)
    assert checks.check(files, CHECKS) == []
    assert compile_model(decompile(files, CTX), CTX) == files


def test_a_layout_change_made_in_bpmn_mode_still_opens_in_simple_mode():
    model, files = compiled(model_with(BLOCKS["condition"]))
    moved = re.sub(r'(<bpmndi:BPMNShape id="b_review_di"[^>]*>\s*<dc:Bounds x=")(\d+)',
                   lambda m: m.group(1) + str(int(m.group(2)) + 40), files["bpmn/sample.bpmn"])
    assert moved != files["bpmn/sample.bpmn"]
    assert decompile({**files, "bpmn/sample.bpmn": moved}, CTX).to_json() == decompile(files, CTX).to_json()


def _edit(files, old, new):
    text = files["bpmn/sample.bpmn"]
    assert old in text
    return {**files, "bpmn/sample.bpmn": text.replace(old, new, 1)}


@pytest.mark.parametrize(("label", "edit", "reason"), [
    ("boundary timer", lambda f: _edit(f, "</bpmn:process>",
     '<bpmn:boundaryEvent id="late" name="超期督办" attachedToRef="b_review"><bpmn:timerEventDefinition>'
     '<bpmn:timeDuration>"P3D"</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:boundaryEvent></bpmn:process>'),
     "「超期督办」"),
    ("script task", lambda f: _edit(f, "</bpmn:process>",
     '<bpmn:scriptTask id="calc" name="计算补助" /></bpmn:process>'), "「计算补助」是脚本任务"),
    ("a property set in BPMN mode", lambda f: _edit(f, '<spiffworkflow:property name="actions"',
     '<spiffworkflow:property name="dueAt" value="calendar_date(10, 31)"/><spiffworkflow:property name="actions"'),
     "「村级申请」在 BPMN 高级模式中"),
    ("documentation", lambda f: _edit(f, '<bpmn:userTask id="b_review" name="村级评议">',
     '<bpmn:userTask id="b_review" name="村级评议"><bpmn:documentation>说明</bpmn:documentation>'), "「村级评议」"),
    ("a decision table", lambda f: {**f, "dmn/x.dmn": "<definitions/>"}, "决策表"),
])
def test_a_diagram_outside_the_subset_is_refused_naming_the_element(label, edit, reason):
    _model, files = compiled(model_with(BLOCKS["cc"]))
    with pytest.raises(OutsideSubset) as caught:
        decompile(edit(files), CTX)
    assert reason in str(caught.value), (label, str(caught.value))


@pytest.mark.parametrize("code", ["housing_renovation", "monitoring_exit", "monitoring_identification",
                                  "project_library"])
def test_the_shipped_procedures_stay_in_bpmn_mode_with_a_reason(code):
    folder = WORKFLOWS / code
    files = {"procedure.json": (folder / "procedure.json").read_text(encoding="utf-8"),
             f"bpmn/{code}.bpmn": (folder / f"{code}.bpmn").read_text(encoding="utf-8")}
    with pytest.raises(OutsideSubset) as caught:
        decompile(files, CTX)
    assert "「" in str(caught.value) or "决策表" in str(caught.value)


@pytest.mark.parametrize(("data", "path", "words"), [
    ({"meta": {"name": "x"}, "blocks": "none"}, "blocks", "数组"),
    (model_with({"kind": "notice", "name": "公示", "role": "village_cadre", "notice_kind": "village_public_notice",
                 "period": {"amount": 0, "unit": "natural"}}), "blocks[2].period.amount", "1–365"),
    (model_with({"kind": "condition", "name": "判断", "branches": [{"name": "多", "conditions": [
        {"field": "family_size", "op": "~=", "value": 5}]}]}), "blocks[2].branches[0].conditions[0].op", "比较方式"),
    (model_with(approval(sign={"mode": "ratio", "percent": 0})), "blocks[2].sign.percent", "1–100"),
    (model_with(approval(actions=["reject"])), "blocks[2].actions", "必须包含“通过”"),
    (model_with({**approval(), "id": "b_review"}), "blocks[2].id", "重复"),
    (model_with({"kind": "parallel", "name": "并行", "branches": [{"name": "a", "blocks": [END]},
                                                                {"name": "b", "blocks": []}]}),
     "blocks[2].branches[0].blocks", "汇合"),
])
def test_a_malformed_model_is_refused_by_path_in_chinese(data, path, words):
    with pytest.raises(ValidationError) as caught:
        parse_model(data, "sample")
    assert words in caught.value.errors.get(path, ""), caught.value.errors


@pytest.mark.parametrize(("block", "path", "words"), [
    ({"kind": "condition", "name": "判断", "branches": [{"name": "多", "conditions": [
        {"field": "reviewer", "op": "==", "value": "x"}]}]}, "blocks[2].branches[0].conditions[0].field", "必须设为必填"),
    ({"kind": "condition", "name": "判断", "branches": [{"name": "多", "conditions": [
        {"field": "family_size", "op": ">=", "value": "五"}]}]}, "blocks[2].branches[0].conditions[0].value", "必须是数字"),
    ({"kind": "condition", "name": "判断", "branches": [{"name": "多", "conditions": [
        {"field": "nowhere", "op": "==", "value": 1}]}]}, "blocks[2].branches[0].conditions[0].field", "不在前面步骤"),
    ({"kind": "notice", "name": "公示", "role": "village_cadre", "notice_kind": "village_public_notice",
      "period": {"amount": 7, "unit": "natural"}, "objection_return_to": "b_later"}, "blocks[2].objection_return_to",
     "前面的审批步骤"),
    ({"kind": "subprocess", "name": "发起", "procedure": "nowhere"}, "blocks[2].procedure", "不存在"),
])
def test_a_model_naming_what_the_server_does_not_know_is_refused(block, path, words):
    with pytest.raises(ValidationError) as caught:
        compiled(model_with(block))
    assert words in caught.value.errors.get(path, ""), caught.value.errors


def test_a_mangled_diagram_either_opens_or_says_why_never_crashes():
    import random

    _model, files = compiled(model_with(BLOCKS["condition"], BLOCKS["parallel"], BLOCKS["ratio"], BLOCKS["notice"]))
    original = etree.fromstring(files["bpmn/sample.bpmn"].encode())
    rng = random.Random(14)
    for _ in range(150):
        root = copy.deepcopy(original)
        elements = [e for e in root.find("bpmn:process", NS).iter() if isinstance(e.tag, str)][1:]
        victim = rng.choice(elements)
        action = rng.choice(("drop", "rename", "retarget", "unname"))
        if action == "drop" and victim.getparent() is not None:
            victim.getparent().remove(victim)
        elif action == "rename" and victim.get("id"):
            victim.set("id", victim.get("id") + "x")
        elif action == "retarget" and victim.get("targetRef"):
            victim.set("targetRef", rng.choice(elements).get("id") or "nowhere")
        else:
            victim.attrib.pop("name", None)
        text = etree.tostring(root, encoding="unicode")
        try:
            decompile({**files, "bpmn/sample.bpmn": text}, CTX)
        except OutsideSubset as exc:
            assert any("\u4e00" <= ch <= "\u9fff" for ch in str(exc))

"""The 教育资助 procedure of seed 002 as studio draft files, and helpers for the studio tests.

Seed 002 (旬邑县“十大提升行动”实施方案, 二(二)1): 严格“学校摸底、学生申请、学校评议、学校公示、县教育部门审核”程序,
落实教育资助政策. Five user steps in three lanes (existing roles): the school (乡镇中心校, modelled as the
township level, ``township_officer``), the village filing the student's application on the family's behalf
(``village_cadre``, 代办), and the county education department (``county_department``).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from sqlalchemy import select

from engine.models import User
from engine.studio.service import StudioService

LANES = (
    ("Lane_school", "学校 (township_officer)"),
    ("Lane_village", "村级代办 (village_cadre)"),
    ("Lane_county", "县教育部门 (county_department)"),
)


@dataclass
class Step:
    id: str
    name: str
    lane: str
    form: str
    actions: str = "approve,reject,return"
    due_in: str | None = "P5D"
    extra: dict[str, str] = field(default_factory=dict)


EDU_STEPS = (
    Step("school_survey", "学校摸底", "Lane_school", "school_survey", "approve", "P10D"),
    Step("student_application", "学生申请", "Lane_village", "student_application", "approve,return", "P7D"),
    Step("school_review", "学校评议", "Lane_school", "school_review"),
    Step("school_notice", "学校公示", "Lane_school", "school_notice", "approve,return", "P7D"),
    Step("county_review", "县教育部门审核", "Lane_county", "county_review", "approve,reject,return", "P10D",
         {"caseStatus": "approved"}),
)


def _text(key, label, required=True, **more):
    return {"type": "textfield", "key": key, "label": label, "validate": {"required": required}, **more}


def _date(key, label):
    return {"type": "datetime", "key": key, "dateLabel": label, "label": label, "subtype": "date",
            "validate": {"required": True}}


def _select(key, label, options, kind="select"):
    return {"type": kind, "key": key, "label": label, "validate": {"required": True},
            "values": [{"label": o, "value": o} for o in options]}


EDU_FORMS = {
    "school_survey": [
        _text("student_name", "学生姓名"),
        _text("school_name", "就读学校"),
        _select("grade", "学段", ["学前", "小学", "初中", "高中", "中职"]),
        _select("family_difficulty", "家庭经济困难类型", ["脱贫家庭", "防返贫监测对象", "低保家庭", "特困供养", "残疾学生家庭"]),
        _date("survey_date", "摸底日期"),
    ],
    "student_application": [
        _select("aid_type", "申请资助项目", ["国家助学金", "免学费", "营养改善计划", "生活补助"]),
        {"type": "textarea", "key": "application_reason", "label": "申请理由", "validate": {"required": True}},
        {"type": "checkbox", "key": "guardian_consent", "label": "监护人已签字确认", "validate": {"required": True}},
    ],
    "school_review": [
        _date("review_date", "评议日期"),
        {"type": "number", "key": "review_members", "label": "评议小组人数", "validate": {"required": True, "min": 3}},
        _select("review_result", "评议结果", ["同意", "不同意"], "radio"),
    ],
    "school_notice": [
        _date("notice_start", "公示开始日期"),
        {"type": "number", "key": "notice_days", "label": "公示天数", "validate": {"required": True, "min": 5}},
        _select("notice_objection", "公示结果", ["无异议", "有异议已核实"], "radio"),
    ],
    "county_review": [
        {"type": "number", "key": "aid_amount", "label": "资助金额(元)", "validate": {"required": True, "min": 0}},
        _text("approval_number", "审核文号"),
    ],
}

EDU_SAMPLE = {
    "student_name": "张小明", "school_name": "宝梵镇中心小学", "grade": "小学", "family_difficulty": "脱贫家庭",
    "survey_date": "2026-09-01", "aid_type": "生活补助", "application_reason": "家庭经济困难",
    "guardian_consent": True, "review_date": "2026-09-05", "review_members": 5, "review_result": "同意",
    "notice_start": "2026-09-06", "notice_days": 5, "notice_objection": "无异议", "aid_amount": 1000,
    "approval_number": "蓬教资〔2026〕8号",
}


def form_json(code: str, name: str, components: list[dict]) -> str:
    comps = [dict(c, id=f"Field_{c['key']}") for c in components]
    return json.dumps({"type": "default", "id": f"Form_{name}", "components": comps, "schemaVersion": 16},
                      ensure_ascii=False, indent=2)


def props_xml(props: dict[str, str]) -> str:
    if not props:
        return ""
    inner = "".join(f'<spiffworkflow:property name="{k}" value={quoteattr(v)} />' for k, v in props.items())
    return f"<bpmn:extensionElements><spiffworkflow:properties>{inner}</spiffworkflow:properties></bpmn:extensionElements>"


def edu_bpmn(code: str, steps: Iterable[Step] = EDU_STEPS, *, name: str = "教育资助",
             extra_nodes: str = "", extra_flows: str = "", flows: list[tuple[str, str, str]] | None = None,
             lane_names: dict[str, str] | None = None, end_props: dict[str, str] | None = None,
             lane_extra: dict[str, list[str]] | None = None) -> str:
    """A linear start → steps → end diagram with lanes and DI. ``flows`` overrides the linear flows;
    extra_nodes/extra_flows are raw XML added inside the process."""
    steps = list(steps)
    lane_names = {**dict(LANES), **(lane_names or {})}
    members: dict[str, list[str]] = {lane: [] for lane in lane_names}
    members[steps[0].lane].append("start")
    for s in steps:
        members[s.lane].append(s.id)
    members[steps[-1].lane].append("end")
    for lane, ids in (lane_extra or {}).items():
        members[lane].extend(ids)
    lanes_xml = "".join(
        f'<bpmn:lane id="{lane}" name={quoteattr(lane_names[lane])}>'
        + "".join(f"<bpmn:flowNodeRef>{i}</bpmn:flowNodeRef>" for i in ids) + "</bpmn:lane>"
        for lane, ids in members.items())
    order = ["start", *[s.id for s in steps], "end"]
    if flows is None:
        flows = [(f"Flow_{a}_{b}", a, b) for a, b in zip(order, order[1:], strict=False)]
    nodes = ['<bpmn:startEvent id="start" name="发起" />']
    for s in steps:
        props = {"formKey": f"{code}/{s.form}"} if s.form else {}
        props["actions"] = s.actions
        if s.due_in:
            props["dueIn"] = s.due_in
        props.update(s.extra)
        nodes.append(f'<bpmn:userTask id="{s.id}" name={quoteattr(s.name)}>{props_xml(props)}</bpmn:userTask>')
    nodes.append(f'<bpmn:endEvent id="end" name="办结">{props_xml(end_props or {})}</bpmn:endEvent>')
    flows_xml = "".join(f'<bpmn:sequenceFlow id="{fid}" sourceRef="{a}" targetRef="{b}" />' for fid, a, b in flows)
    lane_y = {lane: 40 + 150 * i for i, lane in enumerate(lane_names)}
    lane_of = {i: lane for lane, ids in members.items() for i in ids}
    shapes = [f'<bpmndi:BPMNShape id="Participant_{code}_di" bpmnElement="Participant_{code}" isHorizontal="true">'
              f'<dc:Bounds x="0" y="40" width="1300" height="{150 * len(lane_names)}" /></bpmndi:BPMNShape>']
    for lane, y in lane_y.items():
        shapes.append(f'<bpmndi:BPMNShape id="{lane}_di" bpmnElement="{lane}" isHorizontal="true">'
                      f'<dc:Bounds x="30" y="{y}" width="1270" height="150" /></bpmndi:BPMNShape>')
    import re

    all_ids = order + [m for m in re.findall(r'<bpmn:\w+ id="([^"]+)"', extra_nodes) if m not in order]
    for index, node in enumerate(all_ids):
        x = 80 + 150 * index
        y = lane_y.get(lane_of.get(node, "Lane_school"), 40) + 45
        w, h = (36, 36) if node in ("start", "end") or node.startswith(("end", "timer", "gw")) else (100, 80)
        shapes.append(f'<bpmndi:BPMNShape id="{node}_di" bpmnElement="{node}"><dc:Bounds x="{x}" y="{y}" '
                      f'width="{w}" height="{h}" /></bpmndi:BPMNShape>')
    all_flows = flows + [(m[0], m[1], m[2]) for m in re.findall(
        r'<bpmn:sequenceFlow id="([^"]+)" sourceRef="([^"]+)" targetRef="([^"]+)"', extra_flows)]
    for fid, _a, _b in all_flows:
        shapes.append(f'<bpmndi:BPMNEdge id="{fid}_di" bpmnElement="{fid}"><di:waypoint x="10" y="10" />'
                      f'<di:waypoint x="20" y="20" /></bpmndi:BPMNEdge>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" '
        'xmlns:di="http://www.omg.org/spec/DD/20100524/DI" '
        'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'id="Definitions_{code}" targetNamespace="http://xiangflow.cn/bpmn">'
        f'<bpmn:collaboration id="Collaboration_{code}"><bpmn:participant id="Participant_{code}" '
        f'name={quoteattr(name)} processRef="{code}" /></bpmn:collaboration>'
        f'<bpmn:process id="{code}" name={quoteattr(name)} isExecutable="true">'
        f'<bpmn:laneSet id="LaneSet_{code}">{lanes_xml}</bpmn:laneSet>'
        + "".join(nodes) + extra_nodes + flows_xml + extra_flows +
        '</bpmn:process>'
        f'<bpmndi:BPMNDiagram id="Diagram_{code}"><bpmndi:BPMNPlane id="Plane_{code}" '
        f'bpmnElement="Collaboration_{code}">' + "".join(shapes) + '</bpmndi:BPMNPlane></bpmndi:BPMNDiagram>'
        '</bpmn:definitions>\n'
    )


def edu_files(code: str, *, name: str = "教育资助", steps: Iterable[Step] = EDU_STEPS, settings: dict | None = None,
              **bpmn_kwargs) -> dict[str, str]:
    steps = list(steps)
    manifest = {"code": code, "name": name, "subject_kind": "household", "process_id": code,
                "description": "学校摸底 → 学生申请 → 学校评议 → 学校公示 → 县教育部门审核。依据:种子文件 002 二(二)1。",
                "settings": {"day_kind": "natural", **(settings or {})}}
    files = {"procedure.json": json.dumps(manifest, ensure_ascii=False, indent=2),
             f"bpmn/{code}.bpmn": edu_bpmn(code, steps, name=name, **bpmn_kwargs)}
    for form_name, components in EDU_FORMS.items():
        files[f"form/{code}/{form_name}"] = form_json(code, form_name, components)
    return files


def new_code(prefix: str = "edu") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def admin(db):
    """The county admin of 蓬溪县: changes the procedures owned by the county."""
    return db.actor("demo_admin")


def sysadmin(db):
    """The system admin (system_admin in every province): changes the shipped procedures."""
    return db.actor("demo_sysadmin")


def studio(work) -> StudioService:
    return work.studio


def draft_with(db, files: dict[str, str]) -> int:
    """A saved studio draft holding files (created empty, then saved like the editor does)."""
    manifest = json.loads(files["procedure.json"])
    with db.uow() as work:
        service = studio(work)
        draft = service.create_draft(admin(db), manifest["code"], manifest["name"])
        service.save_draft(admin(db), draft.id, files, draft.lock_version)
        return draft.id


def deploy(db, draft_id: int):
    with db.uow() as work:
        version, created = studio(work).deploy_draft(admin(db), draft_id)
        return version.id, version.version, created


def user_id(db, username: str) -> int:
    with db.uow() as work:
        return work.session.scalar(select(User.id).where(User.username == username))


def zip_of(entries: dict[str, bytes | str], *, symlinks: Iterable[str] = (), flag_bits: dict[str, int] | None = None,
           compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.external_attr = ((0o120777 if name in symlinks else 0o100644) << 16)
            archive.writestr(info, content.encode("utf-8") if isinstance(content, str) else content)
    data = buffer.getvalue()
    for name, bits in (flag_bits or {}).items():  # patch general-purpose flags in both headers
        raw = name.encode()
        local = data.find(b"PK\x03\x04")
        while local != -1:
            if data[local + 30: local + 30 + len(raw)] == raw:
                data = data[:local + 6] + bits.to_bytes(2, "little") + data[local + 8:]
            local = data.find(b"PK\x03\x04", local + 4)
        central = data.find(b"PK\x01\x02")
        while central != -1:
            if data[central + 46: central + 46 + len(raw)] == raw:
                data = data[:central + 8] + bits.to_bytes(2, "little") + data[central + 10:]
            central = data.find(b"PK\x01\x02", central + 4)
    return data

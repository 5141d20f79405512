"""Write a compiled graph and its diagram as BPMN 2.0 XML with XiangFlow's conventions (lanes named
``中文名 (role_code)``, step rules as ``spiffworkflow:properties``), as the shipped workflows/*/ do."""

from __future__ import annotations

from lxml import etree

from engine.studio.simple.graph import Graph, Node
from engine.studio.simple.layout import Box, Diagram

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
SPIFF = "http://spiffworkflow.org/bpmn/schema/1.0/core"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP = {"bpmn": BPMN, "bpmndi": BPMNDI, "dc": DC, "di": DI, "spiffworkflow": SPIFF, "xsi": XSI}
EXPORTER = "XiangFlow 简易模式"


def _b(tag: str) -> str:
    return f"{{{BPMN}}}{tag}"


def lane_label(role: str, names: dict[str, str]) -> str:
    return f"{names[role]} ({role})" if role in names else role


def write_bpmn(graph: Graph, diagram: Diagram, process_id: str, name: str, role_names: dict[str, str]) -> str:
    """The BPMN document of graph, laid out as diagram."""
    root = etree.Element(_b("definitions"), nsmap=NSMAP, id=f"Definitions_{process_id}",
                         targetNamespace="http://xiangflow.cn/bpmn", exporter=EXPORTER, exporterVersion="1.0")
    collab = etree.SubElement(root, _b("collaboration"), id=f"Collaboration_{process_id}")
    etree.SubElement(collab, _b("participant"), id=f"Participant_{process_id}", name=name, processRef=process_id)
    process = etree.SubElement(root, _b("process"), id=process_id, name=name, isExecutable="true")
    lane_set = etree.SubElement(process, _b("laneSet"), id=f"LaneSet_{process_id}")
    for role, _box in diagram.lanes:
        lane = etree.SubElement(lane_set, _b("lane"), id=f"Lane_{role}", name=lane_label(role, role_names))
        for node in graph.nodes:
            if node.parent is None and node.role == role:
                etree.SubElement(lane, _b("flowNodeRef")).text = node.id
    containers: dict[str | None, etree._Element] = {None: process}
    for node in graph.nodes:
        if node.parent is None:
            containers[node.id] = _node(process, node, graph)
    for node in graph.nodes:
        if node.parent is not None:
            _node(containers[node.parent], node, graph)
    for flow in graph.flows:
        parent = graph.node(flow.source).parent
        el = etree.SubElement(containers[parent] if parent else process, _b("sequenceFlow"), id=flow.id,
                              sourceRef=flow.source, targetRef=flow.target)
        if flow.name:
            el.set("name", flow.name)
        if flow.condition:
            cond = etree.SubElement(el, _b("conditionExpression"))
            cond.set(f"{{{XSI}}}type", "bpmn:tFormalExpression")
            cond.text = flow.condition
    for node in graph.nodes:
        if node.signal:
            etree.SubElement(root, _b("signal"), id=node.signal[0], name=node.signal[1])
    _diagram(root, graph, diagram, process_id)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True).decode()


def _node(parent: etree._Element, node: Node, graph: Graph) -> etree._Element:
    el = etree.SubElement(parent, _b(node.tag), id=node.id)
    if node.name:
        el.set("name", node.name)
    if node.attached_to:
        el.set("attachedToRef", node.attached_to)
    if node.default:
        el.set("default", node.default)
    if node.props or node.pre_script:
        ext = etree.SubElement(el, _b("extensionElements"))
        if node.props:
            props = etree.SubElement(ext, f"{{{SPIFF}}}properties")
            for key, value in node.props.items():
                etree.SubElement(props, f"{{{SPIFF}}}property", name=key, value=value)
        if node.pre_script:
            etree.SubElement(ext, f"{{{SPIFF}}}preScript").text = node.pre_script
    for flow in graph.flows:
        if flow.target == node.id:
            etree.SubElement(el, _b("incoming")).text = flow.id
    outgoing = [f.id for f in graph.flows if f.source == node.id]
    order = node.out_order or []
    outgoing.sort(key=lambda f: order.index(f) if f in order else len(order))
    for flow_id in outgoing:
        etree.SubElement(el, _b("outgoing")).text = flow_id
    if node.multi:
        # the collections as properties of the step, so that bpmn-js resolves the loop's references (it drops
        # a loopDataInputRef/OutputRef naming no element); SpiffWorkflow reads the names as data keys
        for ref in (node.multi["input"], node.multi["output"]):
            etree.SubElement(el, _b("property"), id=ref, name=ref)
        mi = etree.SubElement(el, _b("multiInstanceLoopCharacteristics"))
        etree.SubElement(mi, _b("loopDataInputRef")).text = node.multi["input"]
        etree.SubElement(mi, _b("loopDataOutputRef")).text = node.multi["output"]
        etree.SubElement(mi, _b("inputDataItem"), id=node.multi["item"], name="会签成员")
        etree.SubElement(mi, _b("outputDataItem"), id=node.multi["vote"], name="会签意见")
        etree.SubElement(mi, _b("completionCondition")).text = node.multi["completion"]
    if node.timer:
        timer = etree.SubElement(el, _b("timerEventDefinition"), id=f"TimerDef_{node.id}")
        expr = etree.SubElement(timer, _b(node.timer[0]))
        expr.set(f"{{{XSI}}}type", "bpmn:tFormalExpression")
        expr.text = node.timer[1]
    if node.signal:
        etree.SubElement(el, _b("signalEventDefinition"), id=f"SignalDef_{node.id}", signalRef=node.signal[0])
    return el


def _bounds(parent: etree._Element, box: Box) -> None:
    etree.SubElement(parent, f"{{{DC}}}Bounds", x=_n(box.x), y=_n(box.y), width=_n(box.w), height=_n(box.h))


def _n(value: float) -> str:
    return str(int(round(value)))


def _shape(plane: etree._Element, element: str, box: Box, label: Box | None = None, **extra: str) -> None:
    shape = etree.SubElement(plane, f"{{{BPMNDI}}}BPMNShape", id=f"{element}_di", bpmnElement=element, **extra)
    _bounds(shape, box)
    if label is not None:
        _bounds(etree.SubElement(shape, f"{{{BPMNDI}}}BPMNLabel"), label)


def _edge(plane: etree._Element, flow_id: str, points: list[tuple[float, float]], label: Box | None) -> None:
    edge = etree.SubElement(plane, f"{{{BPMNDI}}}BPMNEdge", id=f"{flow_id}_di", bpmnElement=flow_id)
    for x, y in points:
        etree.SubElement(edge, f"{{{DI}}}waypoint", x=_n(x), y=_n(y))
    if label is not None:
        _bounds(etree.SubElement(edge, f"{{{BPMNDI}}}BPMNLabel"), label)


def _diagram(root: etree._Element, graph: Graph, d: Diagram, process_id: str) -> None:
    dia = etree.SubElement(root, f"{{{BPMNDI}}}BPMNDiagram", id=f"BPMNDiagram_{process_id}")
    plane = etree.SubElement(dia, f"{{{BPMNDI}}}BPMNPlane", id=f"BPMNPlane_{process_id}",
                             bpmnElement=f"Collaboration_{process_id}")
    _shape(plane, f"Participant_{process_id}", d.pool, isHorizontal="true")
    for role, box in d.lanes:
        _shape(plane, f"Lane_{role}", box, isHorizontal="true")
    for node in graph.nodes:
        if node.id in d.shapes:
            extra = {"isExpanded": "false"} if node.tag == "subProcess" else {}
            _shape(plane, node.id, d.shapes[node.id], d.labels.get(node.id), **extra)
    for flow_id, points in d.edges.items():
        _edge(plane, flow_id, points, d.edge_labels.get(flow_id))
    for sub, shapes in d.inner.items():
        inner = etree.SubElement(root, f"{{{BPMNDI}}}BPMNDiagram", id=f"BPMNDiagram_{sub}")
        sub_plane = etree.SubElement(inner, f"{{{BPMNDI}}}BPMNPlane", id=f"BPMNPlane_{sub}", bpmnElement=sub)
        for element, box in shapes.items():
            _shape(sub_plane, element, box, Box(box.x - 22, box.y + 40, 80, 14))
        for flow_id, points in d.inner_edges[sub].items():
            _edge(sub_plane, flow_id, points, None)

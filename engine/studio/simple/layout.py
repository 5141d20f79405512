"""The diagram (BPMN DI) of a compiled graph: left to right, one lane per role (村 above 镇 above 县),
branches stacked inside the lanes, lanes sized to their content and to their labels.

Every node has a grid place (column, track) from graph.py; a lane holds the tracks its nodes use, each
track a row of ROW_H. Text widths are estimated (CJK ≈ 12 px, other characters ≈ 7 px at bpmn-js's 12 px
font) so task boxes grow with long names and lanes are never shorter than their rotated labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.studio.simple.graph import Graph, Node

POOL_HEADER = 30
LANE_HEADER = 30
LEFT = POOL_HEADER + LANE_HEADER + 40
COL_W = 170
TASK_W = 120
TASK_H = 80
EVENT = 36
GATEWAY = 50
LABEL_W = 100
LEVEL_ORDER = ("village", "township", "county", "city", "province")
SIZES = {"startEvent": (EVENT, EVENT), "endEvent": (EVENT, EVENT), "intermediateThrowEvent": (EVENT, EVENT),
         "intermediateCatchEvent": (EVENT, EVENT), "boundaryEvent": (EVENT, EVENT),
         "exclusiveGateway": (GATEWAY, GATEWAY), "parallelGateway": (GATEWAY, GATEWAY)}


def text_width(text: str) -> int:
    """Estimated width of text in pixels at 12 px."""
    return sum(12 if ord(c) > 0x2E80 else 7 for c in text)


def lines(text: str, width: int) -> int:
    return max(1, math.ceil(text_width(text) / max(width, 1)))


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass
class Diagram:
    pool: Box
    lanes: list[tuple[str, Box]]  # (role, bounds)
    shapes: dict[str, Box] = field(default_factory=dict)
    labels: dict[str, Box] = field(default_factory=dict)
    edges: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    edge_labels: dict[str, Box] = field(default_factory=dict)
    inner: dict[str, dict[str, Box]] = field(default_factory=dict)  # sub-process id → its own plane's shapes
    inner_edges: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)


def lane_order(graph: Graph, levels: dict[str, str]) -> list[str]:
    """The roles of the graph's lanes, lower levels first, then in order of appearance."""
    seen: list[str] = []
    for node in graph.nodes:
        if node.parent is None and node.role not in seen:
            seen.append(node.role)

    def rank(role: str) -> tuple[int, int]:
        level = levels.get(role, "")
        return (LEVEL_ORDER.index(level) if level in LEVEL_ORDER else len(LEVEL_ORDER), seen.index(role))
    return sorted(seen, key=rank)


def _size(node: Node) -> tuple[float, float]:
    if node.tag in SIZES:
        return SIZES[node.tag]
    return TASK_W, max(TASK_H, lines(node.name, TASK_W - 16) * 15 + 24)


def layout(graph: Graph, lane_names: dict[str, str], levels: dict[str, str], pool_name: str) -> Diagram:
    """Place every node and edge of graph."""
    top = [n for n in graph.nodes if n.parent is None and n.tag != "boundaryEvent"]
    roles = lane_order(graph, levels)
    row_h = max([200.0, *(_size(n)[1] + 100 for n in top)])
    tracks = {role: sorted({n.track for n in top if n.role == role}) for role in roles}
    width = LEFT + (max([n.col for n in top], default=0) + 1) * COL_W + 40
    lanes: list[tuple[str, Box]] = []
    y = 0.0
    for role in roles:
        label = text_width(lane_names.get(role, role)) + 40
        height = max(len(tracks[role]) * row_h, label)
        lanes.append((role, Box(POOL_HEADER, y, width - POOL_HEADER, height)))
        y += height
    pool_h = max(y, text_width(pool_name) + 40)
    if pool_h > y:  # the pool's label is longer than the lanes: the last lane takes the rest
        role, last = lanes[-1]
        lanes[-1] = (role, Box(last.x, last.y, last.w, last.h + pool_h - y))
    diagram = Diagram(Box(0, 0, width, pool_h), lanes)
    lane_box = dict(lanes)
    for node in top:
        w, h = _size(node)
        box = lane_box[node.role]
        inside = tracks[node.role]
        band = box.h / len(inside) if len(inside) == 1 else row_h
        cy = box.y + inside.index(node.track) * band + band / 2
        cx = LEFT + node.col * COL_W + TASK_W / 2
        rejected = node.id.endswith("__rejected")
        if rejected:  # under its gateway, its label to the right
            cy += 65
        shape = Box(cx - w / 2, cy - h / 2, w, h)
        diagram.shapes[node.id] = shape
        if rejected:
            diagram.labels[node.id] = Box(shape.x + w + 6, cy - lines(node.name, LABEL_W) * 7, LABEL_W,
                                          lines(node.name, LABEL_W) * 14)
        elif node.tag in SIZES and node.name:
            n = lines(node.name, LABEL_W)
            ly = shape.y + shape.h + 4 if node.tag != "exclusiveGateway" and node.tag != "parallelGateway" \
                else shape.y - 6 - n * 14
            diagram.labels[node.id] = Box(cx - LABEL_W / 2, ly, LABEL_W, n * 14)
    for node in graph.nodes:
        if node.tag == "boundaryEvent" and node.attached_to in diagram.shapes:
            host = diagram.shapes[node.attached_to]
            shape = Box(host.cx - EVENT / 2, host.y + host.h - EVENT / 2, EVENT, EVENT)
            diagram.shapes[node.id] = shape
            diagram.labels[node.id] = Box(shape.x + EVENT + 4, shape.y + EVENT, 60, 14)
    for flow in graph.flows:
        if flow.source in diagram.shapes and flow.target in diagram.shapes:
            diagram.edges[flow.id] = _route(graph, diagram, flow.source, flow.target, flow.back)
            if flow.name:
                points = diagram.edges[flow.id]
                lw = min(text_width(flow.name), 140)
                if flow.back:  # along the bottom line, left of the boundary event
                    x, y = points[2][0] + 10, points[2][1] + 4
                elif len(points) > 2:  # at the last corner, above the segment into the target
                    x, y = points[-2][0] + 6, points[-2][1] - 18
                else:
                    x, y = points[0][0] + 6, points[0][1] - 18
                diagram.edge_labels[flow.id] = Box(x, y, lw, 14)
    for sub in (n for n in graph.nodes if n.tag == "subProcess"):
        inner = {n.id: Box(100 + n.col * 150, 100, EVENT, EVENT) for n in graph.nodes if n.parent == sub.id}
        diagram.inner[sub.id] = inner
        diagram.inner_edges[sub.id] = {f.id: [(inner[f.source].x + EVENT, 118.0), (inner[f.target].x, 118.0)]
                                       for f in graph.flows if f.source in inner and f.target in inner}
    return diagram


def _route(graph: Graph, d: Diagram, source: str, target: str, back: bool) -> list[tuple[float, float]]:
    s, t = d.shapes[source], d.shapes[target]
    if back:  # under both shapes, back to the earlier step's bottom
        low = max(s.y + s.h, t.y + t.h) + 30
        return [(s.cx, s.y + s.h), (s.cx, low), (t.cx, low), (t.cx, t.y + t.h)]
    gateways = ("exclusiveGateway", "parallelGateway")
    src_tag, dst_tag = graph.node(source).tag, graph.node(target).tag
    if abs(s.cy - t.cy) < 1:
        return [(s.x + s.w, s.cy), (t.x, t.cy)]
    if abs(s.cx - t.cx) < 1:  # straight down (a 会签 step's 未通过 end under its gateway)
        return [(s.cx, s.y + s.h), (t.cx, t.y)] if t.cy > s.cy else [(s.cx, s.y), (t.cx, t.y + t.h)]
    if src_tag in gateways and t.x > s.cx:  # a branch leaves the split from its top or bottom corner
        y0 = s.y + s.h if t.cy > s.cy else s.y
        return [(s.cx, y0), (s.cx, t.cy), (t.x, t.cy)]
    if dst_tag in gateways and s.x < t.cx:  # a branch enters the join from above or below
        y1 = t.y if s.cy < t.cy else t.y + t.h
        return [(s.x + s.w, s.cy), (t.cx, s.cy), (t.cx, y1)]
    mid = t.x - 25 if t.x - 25 > s.x + s.w else (s.x + s.w + t.x) / 2
    return [(s.x + s.w, s.cy), (mid, s.cy), (mid, t.cy), (t.x, t.cy)]

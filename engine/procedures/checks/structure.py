"""The diagram's structure: one executable process, lanes that name roles, supported elements only,
every element reachable from a start and every path reaching an end, gateway branches with conditions."""

from __future__ import annotations

from collections import deque

from lxml import etree

from engine.procedures.checks.bundle import BPMN_NS, CheckedBundle, local, q
from engine.procedures.checks.problem import Problem
from engine.procedures.checks.rules import FLOW_NODE_TAGS, UNSUPPORTED_TAGS
from engine.procedures.steps import role_of_lane

LANE_NAME_RULE = "泳道名称应为 “中文名 (角色代码)”"


def executable_process(b: CheckedBundle) -> list[Problem]:
    """The process procedure.json names exists, and no other pool holds flow elements."""
    if b.root is None or b.manifest is None:
        return []
    if b.process is None:
        return [b.problem(None, f"BPMN 中没有 id 为 {b.manifest.get('process_id')!r} 的流程(process)", b.bpmn_key)]
    return [b.problem(other.get("id"), "只能有一个可执行流程:其他池中的元素不会运行", b.bpmn_key)
            for other in b.root.findall(q("process"))
            if other is not b.process and any(local(c) in FLOW_NODE_TAGS for c in other)]


def lane_problem(lane_name: str | None, known_roles: set[str] | frozenset[str]) -> str | None:
    """Why a (leaf) lane does not name a role, or None: the server's half of the lane→role rule."""
    choices = f"可选角色: {', '.join(sorted(known_roles))}"
    if not (lane_name or "").strip():
        return f"泳道没有名称:{LANE_NAME_RULE}({choices})"
    role = role_of_lane(lane_name)
    if role is None:
        return f"泳道「{lane_name}」没有写明角色:{LANE_NAME_RULE}({choices})"
    if role not in known_roles:
        return f"泳道「{lane_name}」对应的角色 {role!r} 不存在({choices})"
    return None


def lane_roles(b: CheckedBundle) -> list[Problem]:
    """Every leaf lane names an existing role (the role that works its tasks)."""
    if b.process is None:
        return []
    found = []
    user_tasks = {n.get("id") for n in b.process.iter(q("userTask"))}
    for lane in b.process.iter(q("lane")):
        if lane.find(q("childLaneSet")) is not None:
            continue
        why = lane_problem(lane.get("name"), b.context.known_roles)
        if why is None:
            continue
        found.append(b.problem(lane.get("id"), why))
        role = role_of_lane(lane.get("name"))
        if role is None:
            continue  # a lane still to be given its role: the lane is the one problem
        for ref in lane.iterfind(q("flowNodeRef")):  # a role that does not exist: each user task it would work
            if (ref.text or "").strip() in user_tasks:
                found.append(b.problem((ref.text or "").strip(),
                                       f"所在泳道「{lane.get('name')}」对应的角色 {role!r} 不存在"))
    return found


def supported_elements(b: CheckedBundle) -> list[Problem]:
    """No element kind the engine does not run (service tasks, event gateways, call activities …)."""
    if b.root is None:
        return []
    return [b.problem(node.get("id"), UNSUPPORTED_TAGS[local(node)]) for node in b.root.iter()
            if isinstance(node.tag, str) and node.tag == q(local(node)) and local(node) in UNSUPPORTED_TAGS]


def _approves(b: CheckedBundle, node: etree._Element) -> bool:
    props = b.properties(node)
    return props.is_issuance or "approve" in props.actions


def _walk(starts: list[str], edges: dict[str, set[str]]) -> set[str]:
    seen = set(starts)
    queue = deque(starts)
    while queue:
        for nxt in edges.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def _sink_components(nodes: set[str], succ: dict[str, set[str]]) -> list[str]:
    """Nodes of the strongly connected components of nodes that no edge leaves (dead ends, closed loops)."""
    inner = {k: v & nodes for k, v in succ.items()}
    reach = {n: _walk([n], inner) for n in nodes}
    return sorted(n for n in nodes if all(n in reach[m] for m in reach[n]))


def _containers(b: CheckedBundle) -> list[tuple[etree._Element, bool]]:
    if b.process is None:
        return []
    subs = [n for n in b.process.iter() if isinstance(n.tag, str) and local(n) in ("subProcess", "transaction")]
    return [(b.process, True), *((s, False) for s in subs)]


def _graph(container: etree._Element):
    nodes = {c.get("id"): c for c in container if local(c) in FLOW_NODE_TAGS and c.tag.startswith(f"{{{BPMN_NS}}}")}
    flows = [c for c in container if c.tag == q("sequenceFlow")]
    return nodes, flows


def flow_reachability(b: CheckedBundle) -> list[Problem]:
    """Inside each process and sub-process: a start and an end event, every element reachable from a start,
    and from every reachable element a path to an end (a step allowing only 不通过/退回 ends the case)."""
    found = []
    for container, top in _containers(b):
        nodes, flows = _graph(container)
        succ: dict[str, set[str]] = {n: set() for n in nodes}
        pred: dict[str, set[str]] = {n: set() for n in nodes}
        for flow in flows:
            src, dst = flow.get("sourceRef"), flow.get("targetRef")
            if src not in nodes or dst not in nodes:
                found.append(b.problem(flow.get("id"), "连线的起点或终点不在同一流程/子流程中"))
                continue
            succ[src].add(dst)
            pred[dst].add(src)
        event_subs = {i for i, n in nodes.items() if local(n) == "subProcess" and n.get("triggeredByEvent") == "true"}
        back: dict[str, set[str]] = {n: set(pred[n]) for n in nodes}
        for node_id, node in nodes.items():  # a boundary event is entered through its activity
            if local(node) == "boundaryEvent" and node.get("attachedToRef") in nodes:
                succ[node.get("attachedToRef")].add(node_id)
                back[node_id].add(node.get("attachedToRef"))
        starts = [i for i, n in nodes.items() if local(n) == "startEvent"]
        real_nodes = [i for i in nodes if i not in event_subs]
        if real_nodes and not starts:
            found.append(b.problem(container.get("id"), "缺少开始事件"))
        elif not real_nodes and top:
            found.append(b.problem(container.get("id"), "流程是空的:请从开始事件画起"))
        ends = {i for i, n in nodes.items() if local(n) == "endEvent"}
        if real_nodes and not ends:
            found.append(b.problem(container.get("id"), "缺少结束事件"))
        reached = _walk(starts, succ)
        found += [b.problem(i, "从开始事件无法到达此元素(不可达)") for i in real_nodes
                  if i not in reached and local(nodes[i]) != "startEvent"]
        found += [b.problem(i, "开始事件没有出口连线") for i in starts if not succ[i] and i not in ends]
        closing = {i for i, n in nodes.items() if local(n) == "userTask" and not _approves(b, n)}
        to_end = _walk(list(ends | closing), back)
        stuck = {n for n in real_nodes if n in reached and n not in to_end}
        for node_id in _sink_components(stuck, succ):  # where the paths get stuck, not every step before
            found.append(b.problem(node_id, "此元素没有出口连线:每条路径都必须到达结束事件" if not succ[node_id]
                                   else "从此元素出发的路径(循环)无法到达结束事件"))
    return found


def gateway_branches(b: CheckedBundle) -> list[Problem]:
    """The branches of an exclusive/inclusive gateway have conditions (or one is the default); a parallel
    gateway's have none."""
    found = []
    for container, _top in _containers(b):
        nodes, flows = _graph(container)
        for node_id, node in nodes.items():
            kind = local(node)
            outgoing = [f for f in flows if f.get("sourceRef") == node_id]
            if kind in ("exclusiveGateway", "inclusiveGateway") and len(outgoing) > 1:
                found += [b.problem(f.get("id"), "网关的分支连线缺少条件表达式(或将其设为默认连线)") for f in outgoing
                          if f.get("id") != node.get("default") and f.find(q("conditionExpression")) is None]
            if kind == "parallelGateway":
                found += [b.problem(f.get("id"), "并行网关的连线不能有条件") for f in outgoing
                          if f.find(q("conditionExpression")) is not None]
    return found

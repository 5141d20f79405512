"""A simple model as a flow graph: the BPMN elements each block becomes, their lanes and grid places.

``build_graph`` is the one statement of what each block compiles to (docs/simple-designer.md §3); the XML
writer (bpmnxml.py) and the layout (layout.py) only render the graph. Element ids are the block ids; helper
elements are ``<block id>__<suffix>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from engine.studio.simple.model import Block, Branch, Condition, Duration, Model

START_ROLE = "village_cadre"


@dataclass
class Node:
    id: str
    tag: str  # startEvent, userTask, exclusiveGateway, parallelGateway, intermediateThrowEvent, ...
    name: str
    role: str
    col: int
    track: int
    props: dict[str, str] = field(default_factory=dict)
    block: Block | None = None
    form_key: str | None = None
    timer: tuple[str, str] | None = None  # (timeDuration|timeDate, expression)
    multi: dict[str, str] | None = None  # loop input, output, item names, completion condition
    pre_script: str | None = None
    parent: str | None = None  # a sub-process holding this node
    attached_to: str | None = None  # a boundary event's activity
    signal: tuple[str, str] | None = None  # (signal id, name) of a boundary signal event
    default: str | None = None  # a gateway's default flow id
    out_order: list[str] | None = None  # a split's outgoing flows in branch order (the order conditions are tried)


@dataclass
class Flow:
    id: str
    source: str
    target: str
    name: str = ""
    condition: str | None = None
    back: bool = False  # a loop back (objection → earlier step): drawn below the lanes


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    forms: dict[str, dict] = field(default_factory=dict)  # form key → block (for the form file)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


@dataclass
class _Pending:
    source: str
    flow_id: str | None = None
    name: str = ""
    condition: str | None = None
    default_of: str | None = None  # the gateway whose default flow this is


def iso_days(duration: Duration) -> str:
    return f"P{duration.amount}D"


def timer_of(duration: Duration) -> tuple[str, str]:
    """A timer for a duration: natural days as a duration, working days as the end of the n-th working day."""
    if duration.unit == "working":
        return ("timeDate", f"workdays({duration.amount})")
    return ("timeDuration", json.dumps(iso_days(duration)))


def condition_expression(branch: Branch) -> str:
    """A branch's conditions in the server's expression language (engine/procedures/expressions.py)."""
    return f" {branch.join} ".join(_one(c) for c in branch.conditions)


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _one(c: Condition) -> str:
    if c.op == "contains":
        return f"{_literal(c.value)} in {c.field}"
    return f"{c.field} {c.op} {_literal(c.value)}"


def countersign_conditions(block: Block) -> tuple[str, str]:
    """(completion condition, passing condition) of a 会签/或签/比例 step (engine/runtime/countersign.py)."""
    if block.sign_mode == "any":
        return "nr_of_approvals > 0", "nr_of_approvals > 0"
    if block.sign_mode == "ratio":
        p = block.sign_percent or 50
        passed = f"nr_of_approvals * 100 >= nr_of_instances * {p}"
        return f"{passed} or nr_of_rejections * 100 > nr_of_instances * {100 - p}", passed
    return "nr_of_rejections > 0", "nr_of_rejections == 0"


class _Builder:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.code = model.meta.code
        self.graph = Graph()
        self.back_targets: dict[str, str] = {}

    def add(self, node: Node, pending: list[_Pending]) -> Node:
        self.graph.nodes.append(node)
        for p in pending:
            self.connect(p, node.id)
        return node

    def connect(self, p: _Pending, target: str) -> None:
        flow_id = p.flow_id or f"Flow_{p.source}__{target}"
        self.graph.flows.append(Flow(flow_id, p.source, target, p.name, p.condition))
        if p.default_of:
            self.graph.node(p.default_of).default = flow_id

    def blocks(self, blocks: list[Block], pending: list[_Pending], col: int, track: int,
               role: str) -> tuple[list[_Pending], int, int, str]:
        """Emit a block list from the pending connections; return (pending, next column, tracks used, role)."""
        height = 1
        for block in blocks:
            pending, col, used, role = self.block(block, pending, col, track, role)
            height = max(height, used)
        return pending, col, height, role

    def block(self, b: Block, pending: list[_Pending], col: int, track: int,
              role: str) -> tuple[list[_Pending], int, int, str]:
        kind = b.kind
        if kind == "start":
            role = b.role or START_ROLE
            start = self.add(Node(f"{b.id}__start", "startEvent", "开始", role, col, track), pending)
            task = self.user_task(b, role, col + 1, track, {"actions": "approve"}, [_Pending(start.id)])
            return [_Pending(task.id)], col + 2, 1, role
        if kind == "approval":
            role = b.role or role
            props = {"actions": ",".join(b.actions)}
            if b.time_limit:
                props.update(dueIn=iso_days(b.time_limit), dayKind=b.time_limit.unit)
            if b.opinion_required:
                props["opinionRequired"] = "true"
            if b.signature:
                props["signature"] = b.signature
            if b.attachments is not None:
                props["attachments"] = ",".join(b.attachments) if b.attachments else "none"
            if b.assignee_field:
                props["assigneeKey"] = b.assignee_field
            if b.batch_approval:
                props["batchApproval"] = "true"
            if b.sign_mode == "single":
                task = self.user_task(b, role, col, track, props, pending)
                return [_Pending(task.id)], col + 1, 1, role
            props["signMode"] = b.sign_mode
            task = self.user_task(b, role, col, track, props, pending)
            completion, passed = countersign_conditions(b)
            task.pre_script = f'{b.id}_signers = role_members("{role}")'
            task.multi = {"input": f"{b.id}_signers", "output": f"{b.id}_votes", "item": f"{b.id}_signer",
                          "vote": f"{b.id}_vote", "completion": completion}
            gw = self.add(Node(f"{b.id}__gw", "exclusiveGateway", f"{b.name}是否通过", role, col + 1, track),
                          [_Pending(task.id)])
            self.add(Node(f"{b.id}__rejected", "endEvent", f"{b.name}未通过", role, col + 1, track,
                          {"caseStatus": "rejected", "outcomeReasonKey": "last_opinion"}),
                     [_Pending(gw.id, default_of=gw.id)])
            return [_Pending(gw.id, name="通过", condition=passed)], col + 2, 1, role
        if kind in ("condition", "parallel"):
            return self.branching(b, pending, col, track, role)
        if kind == "cc":
            node = self.add(Node(b.id, "intermediateThrowEvent", b.name, role, col, track,
                                 {"ccRole": b.role or ""}, block=b), pending)
            return [_Pending(node.id)], col + 1, 1, role
        if kind == "notice":
            return self.notice(b, pending, col, track, role)
        if kind == "wait":
            assert b.duration is not None
            node = self.add(Node(b.id, "intermediateCatchEvent", b.name, role, col, track, block=b,
                                 timer=timer_of(b.duration)), pending)
            return [_Pending(node.id)], col + 1, 1, role
        if kind == "subprocess":
            props = {"startsProcedure": b.procedure or ""}
            if b.pass_data:
                props["passData"] = ",".join(b.pass_data)
            node = self.add(Node(b.id, "intermediateThrowEvent", b.name, role, col, track, props, block=b), pending)
            return [_Pending(node.id)], col + 1, 1, role
        # end
        self.add(Node(b.id, "endEvent", b.name, role, col, track, {"caseStatus": b.status or "approved"}, block=b),
                 pending)
        return [], col + 1, 1, role

    def user_task(self, b: Block, role: str, col: int, track: int, props: dict[str, str],
                  pending: list[_Pending]) -> Node:
        form_key = f"{self.code}/{b.id}"
        self.graph.forms[form_key] = {"block": b}
        return self.add(Node(b.id, "userTask", b.name, role, col, track, {"formKey": form_key, **props},
                             block=b, form_key=form_key), pending)

    def branching(self, b: Block, pending: list[_Pending], col: int, track: int,
                  role: str) -> tuple[list[_Pending], int, int, str]:
        conditional = b.kind == "condition"
        tag = "exclusiveGateway" if conditional else "parallelGateway"
        split = self.add(Node(b.id, tag, b.name, role, col, track, block=b), pending)
        split.out_order = [branch.id for branch in b.children()]
        join_id = f"{b.id}__join"
        out: list[_Pending] = []
        end_col, t = col + 1, track
        for branch in b.children():
            is_default = conditional and branch is b.otherwise
            first = _Pending(split.id, flow_id=branch.id, name=branch.name,
                             condition=None if is_default or not conditional else condition_expression(branch),
                             default_of=split.id if is_default else None)
            if branch.blocks:
                rest, c, used, _ = self.blocks(branch.blocks, [first], col + 1, t, role)
                out += rest
            else:  # straight to the join, connected now so the flows stay in branch order
                self.connect(first, join_id)
                c, used = col + 1, 1
                out.append(_Pending(""))
            end_col = max(end_col, c)
            t += used
        if not out:
            return [], end_col, t - track, role
        join = self.add(Node(join_id, tag, "", role, end_col, track), [])
        for p in out:
            if p.source:
                self.connect(p, join.id)
        return [_Pending(join.id)], end_col + 1, t - track, role

    def notice(self, b: Block, pending: list[_Pending], col: int, track: int,
               role: str) -> tuple[list[_Pending], int, int, str]:
        assert b.period is not None
        role = b.role or role
        task = self.user_task(b, role, col, track, {"noticeKind": b.notice_kind or "", "attachments": "none"}, pending)
        period = self.add(Node(f"{b.id}__period", "subProcess", "公示期", role, col + 1, track), [_Pending(task.id)])
        self.graph.nodes += [
            Node(f"{b.id}__period_start", "startEvent", "公示开始", role, 0, 0, parent=period.id),
            Node(f"{b.id}__period_timer", "intermediateCatchEvent", "公示期满", role, 1, 0, parent=period.id,
                 timer=timer_of(b.period)),
            Node(f"{b.id}__period_end", "endEvent", "公示结束", role, 2, 0, parent=period.id),
        ]
        self.graph.flows += [
            Flow(f"Flow_{b.id}__period_start", f"{b.id}__period_start", f"{b.id}__period_timer"),
            Flow(f"Flow_{b.id}__period_timer", f"{b.id}__period_timer", f"{b.id}__period_end"),
        ]
        if b.objection_return_to:
            boundary = Node(f"{b.id}__objection", "boundaryEvent", "公示异议", role, col + 1, track,
                            attached_to=period.id, signal=(f"{b.id}__signal", f"{b.name}异议"))
            self.graph.nodes.append(boundary)
            self.graph.flows.append(Flow(f"Flow_{b.id}__objection", boundary.id, b.objection_return_to, "有异议",
                                         back=True))
        return [_Pending(period.id)], col + 2, 1, role


def build_graph(model: Model) -> Graph:
    """The flow graph of a (checked) model."""
    builder = _Builder(model)
    builder.blocks(model.blocks, [], 0, 0, START_ROLE)
    return builder.graph

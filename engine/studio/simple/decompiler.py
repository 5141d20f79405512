"""Read a draft's BPMN back as a simple model, or say in Chinese why it is outside the simple subset.

The subset is exactly what compiler.py writes. Decompiling walks the diagram from its start event and
recognises each block's shape; then the model is compiled again and compared with the draft (modulo the
diagram, flow and lane ids and element order): any difference — a property, a documentation text, an extra
element set in BPMN mode — keeps the draft in BPMN mode, with the reason naming the element. So what opens in
simple mode is regenerated from it losslessly.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from lxml import etree

from engine.core.errors import DefinitionError, ValidationError
from engine.procedures.checks.bundle import KIND_WORDS, SPIFF_NS, local, q
from engine.procedures.definitions import safe_xml
from engine.procedures.steps import StepProperties, role_of_lane
from engine.studio.simple.compiler import FORM_KEYS, CompileContext, compile_model
from engine.studio.simple.model import (
    MAX_DEPTH,
    Block,
    Branch,
    Condition,
    Duration,
    Meta,
    Model,
    parse_model,
)


class OutsideSubset(Exception):
    """The draft cannot be shown in simple mode; the message says why, naming the element."""


SUPPORTED = {"startEvent", "endEvent", "userTask", "exclusiveGateway", "parallelGateway", "intermediateThrowEvent",
             "intermediateCatchEvent", "subProcess", "boundaryEvent", "sequenceFlow", "laneSet"}
_DAYS = re.compile(r"P(\d{1,3})D")
_NATURAL = re.compile(r'"P(\d{1,3})D"')
_WORKING = re.compile(r"workdays\((\d{1,3})\)")
_PERCENT = re.compile(r"nr_of_instances \* (\d{1,3})\b")
_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<="}


def _name(el: etree._Element | None) -> str:
    if el is None:
        return "流程"
    return el.get("name") or f"未命名的{KIND_WORDS.get(local(el), '元素')}"


def decompile(files: dict[str, str], ctx: CompileContext) -> Model:
    """The simple model of a draft's files.

    :raises OutsideSubset: the draft uses something simple mode cannot show (the message says what and where).
    """
    try:
        manifest = json.loads(files.get("procedure.json") or "")
    except ValueError:
        raise OutsideSubset("procedure.json 无效,请在 BPMN 高级模式中修正") from None
    if any(k.startswith("dmn/") for k in files):
        raise OutsideSubset("流程含有决策表(DMN),简易模式不支持决策表")
    bpmn_key = next((k for k in files if k.startswith("bpmn/")), None)
    if not isinstance(manifest, dict) or bpmn_key is None:
        raise OutsideSubset("草稿缺少流程图或 procedure.json")
    try:
        root = safe_xml(files[bpmn_key], bpmn_key)
    except DefinitionError:
        raise OutsideSubset("流程图不是有效的 BPMN 文件,请在 BPMN 高级模式中修正") from None
    code = str(manifest.get("code") or "")
    process = next((p for p in root.findall(q("process")) if p.get("id") == manifest.get("process_id")), None)
    if process is None:
        raise OutsideSubset("流程图中没有 procedure.json 所指的流程")
    try:
        model = Model(_meta(manifest, code), _Reader(process, files, code).read())
        model = parse_model(model.to_json(), code)
        _same(root, process, compile_model(model, ctx, checked=False), files, bpmn_key)
    except ValidationError as exc:
        _path, why = next(iter(exc.errors.items()))
        raise OutsideSubset(f"流程图在简易模式中无法表示:{why}") from None
    except (RecursionError, ValueError, KeyError, TypeError, AttributeError, IndexError, StopIteration):
        # a hand-made diagram of a shape the reader does not expect (or nested beyond reason): not the subset
        raise OutsideSubset("流程图的结构简易模式无法表示,请继续在 BPMN 高级模式中编辑") from None
    return model


def _meta(manifest: dict[str, Any], code: str) -> Meta:
    raw = manifest.get("settings")
    settings: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return Meta(code=code, name=str(manifest.get("name") or ""), subject_kind=str(manifest.get("subject_kind")
                                                                                 or "household"),
                description=str(manifest.get("description") or ""),
                day_kind=str(settings.get("day_kind") or "natural"),
                complaint_phone=str(settings.get("complaint_phone") or ""),
                one_running_case_per_subject=manifest.get("one_running_case_per_subject") is True)


class _Reader:
    def __init__(self, process: etree._Element, files: dict[str, str], code: str) -> None:
        self.files = files
        self.code = code
        self.nodes: dict[str, etree._Element] = {}
        self.flows: dict[str, etree._Element] = {}
        for el in process:
            if not isinstance(el.tag, str) or el.tag in (q("extensionElements"), q("documentation")):
                continue
            kind = local(el)
            if kind not in SUPPORTED:
                raise OutsideSubset(f"「{_name(el)}」是{KIND_WORDS.get(kind, kind)},简易模式不支持这种元素")
            if kind == "sequenceFlow":
                self.flows[el.get("id") or ""] = el
            elif kind != "laneSet":
                self.nodes[el.get("id") or ""] = el
        self.lanes: dict[str, str] = {}
        for lane in process.iter(q("lane")):
            for ref in lane.iterfind(q("flowNodeRef")):
                self.lanes[(ref.text or "").strip()] = role_of_lane(lane.get("name")) or ""
        self.seen: set[str] = set()
        self.depth = 0

    # -- helpers
    def outgoing(self, node_id: str) -> list[etree._Element]:
        flows = [f for f in self.flows.values() if f.get("sourceRef") == node_id]
        order = [(o.text or "").strip() for o in self.nodes[node_id].iterfind(q("outgoing"))] \
            if node_id in self.nodes else []
        flows.sort(key=lambda f: order.index(f.get("id")) if f.get("id") in order else len(order))
        return flows

    def next_of(self, node_id: str) -> str:
        out = self.outgoing(node_id)
        if len(out) != 1:
            raise OutsideSubset(f"「{_name(self.nodes.get(node_id))}」应当只有一条出口连线")
        return out[0].get("targetRef") or ""

    def props(self, el: etree._Element) -> StepProperties:
        raw = {p.get("name"): p.get("value") or "" for p in el.findall(
            f"{q('extensionElements')}/{q('properties', SPIFF_NS)}/{q('property', SPIFF_NS)}")}
        return StepProperties.parse(raw)

    def form(self, key: str | None) -> dict[str, Any] | None:
        text = self.files.get(f"form/{key}") if key else None
        if text is None:
            return None
        try:
            form = json.loads(text)
        except ValueError:
            return None
        return {k: v for k, v in form.items() if k not in FORM_KEYS} if isinstance(form, dict) else None

    # -- the walk
    def read(self) -> list[Block]:
        starts = [n for n in self.nodes.values() if local(n) == "startEvent"]
        if len(starts) != 1 or not (starts[0].get("id") or "").endswith("__start"):
            raise OutsideSubset("简易模式要求流程只有一个开始事件,且其后是“发起”步骤"
                                + (f"(「{_name(starts[0])}」不是简易模式生成的)" if len(starts) == 1 else ""))
        blocks, stop = self.walk(starts[0].get("id") or "", None)
        if stop is not None:
            raise OutsideSubset(f"「{_name(self.nodes.get(stop))}」的汇合方式简易模式无法表示")
        extra = [n for i, n in self.nodes.items() if i not in self.seen]
        if extra:
            raise OutsideSubset(f"「{_name(extra[0])}」与流程的主线没有按简易模式的方式相连")
        return blocks

    def walk(self, node_id: str, join: str | None) -> tuple[list[Block], str | None]:
        """The blocks from node_id until join (a join's id) or an end; returns (blocks, join reached)."""
        blocks: list[Block] = []
        while True:
            if node_id == join:
                return blocks, join
            el = self.nodes.get(node_id)
            if el is None:
                raise OutsideSubset("流程图中有连线指向不存在的元素")
            if node_id in self.seen:
                raise OutsideSubset(f"「{_name(el)}」被多条路径汇入,简易模式只支持分支汇合和公示异议退回")
            self.seen.add(node_id)
            kind = local(el)
            block_id = node_id.split("__")[0]
            if kind == "startEvent":
                task = self.nodes.get(self.next_of(node_id))
                if task is None or task.get("id") != block_id or local(task) != "userTask":
                    raise OutsideSubset("开始事件之后应当是“发起”步骤(一个用户任务)")
                self.seen.add(block_id)
                blocks.append(Block(block_id, "start", task.get("name") or "", role=self.lanes.get(block_id),
                                    form=self.form(self.props(task).form_key)))
                node_id = self.next_of(block_id)
            elif kind == "userTask" and self.props(el).is_issuance:
                node_id = self.notice(el, blocks)
            elif kind == "userTask":
                node_id = self.approval(el, blocks)
            elif kind in ("exclusiveGateway", "parallelGateway") and not node_id.endswith("__join"):
                nxt = self.branching(el, blocks)
                if nxt is None:
                    return blocks, None
                node_id = nxt
            elif kind == "intermediateThrowEvent":
                props = self.props(el)
                if props.cc_role:
                    blocks.append(Block(node_id, "cc", el.get("name") or "", role=props.cc_role))
                elif props.starts_procedure:
                    blocks.append(Block(node_id, "subprocess", el.get("name") or "",
                                        procedure=props.starts_procedure, pass_data=props.pass_data))
                else:
                    raise OutsideSubset(f"「{_name(el)}」是中间事件,简易模式只支持抄送和发起子流程的中间事件")
                node_id = self.next_of(node_id)
            elif kind == "intermediateCatchEvent":
                blocks.append(Block(node_id, "wait", el.get("name") or "", duration=self.timer(el)))
                node_id = self.next_of(node_id)
            elif kind == "endEvent":
                blocks.append(Block(node_id, "end", el.get("name") or "", status=self.props(el).case_status))
                return blocks, None
            else:
                raise OutsideSubset(f"「{_name(el)}」({KIND_WORDS.get(kind, kind)})简易模式无法表示")

    def timer(self, el: etree._Element) -> Duration:
        for tag, pattern, unit in (("timeDuration", _NATURAL, "natural"), ("timeDate", _WORKING, "working")):
            expr = el.find(f"{q('timerEventDefinition')}/{q(tag)}")
            match = pattern.fullmatch((expr.text or "").strip()) if expr is not None else None
            if match:
                return Duration(int(match.group(1)), unit)
        raise OutsideSubset(f"「{_name(el)}」的定时设置简易模式无法表示(只支持若干自然日或工作日)")

    def approval(self, el: etree._Element, blocks: list[Block]) -> str:
        node_id = el.get("id") or ""
        props = self.props(el)
        block = Block(node_id, "approval", el.get("name") or "", role=self.lanes.get(node_id),
                      form=self.form(props.form_key), assignee_field=props.assignee_key, actions=props.actions,
                      opinion_required=props.opinion_required, signature=props.signature,
                      batch_approval=props.batch_approval)
        raw_attachments = props.raw.get("attachments")
        block.attachments = None if raw_attachments is None else props.attachments
        if props.due_in:
            match = _DAYS.fullmatch(props.due_in)
            if not match:
                raise OutsideSubset(f"「{_name(el)}」的办理时限 {props.due_in} 简易模式无法表示(只支持若干天)")
            block.time_limit = Duration(int(match.group(1)), props.day_kind or "natural")
        blocks.append(block)
        if el.find(q("multiInstanceLoopCharacteristics")) is None:
            return self.next_of(node_id)
        block.sign_mode = props.sign_mode or "all"
        condition = el.findtext(f"{q('multiInstanceLoopCharacteristics')}/{q('completionCondition')}") or ""
        match = _PERCENT.search(condition)
        if block.sign_mode == "ratio":
            block.sign_percent = int(match.group(1)) if match else None
        gw_id = self.next_of(node_id)
        gw = self.nodes.get(gw_id)
        if gw is None or gw_id != f"{node_id}__gw":
            raise OutsideSubset(f"「{_name(el)}」是会签步骤,其后应当是判断是否通过的网关")
        self.seen.add(gw_id)
        passed = [f for f in self.outgoing(gw_id) if f.get("id") != gw.get("default")]
        rejected = self.nodes.get(f"{node_id}__rejected")
        if len(passed) != 1 or rejected is None:
            raise OutsideSubset(f"「{_name(gw)}」的分支简易模式无法表示")
        self.seen.add(f"{node_id}__rejected")
        return passed[0].get("targetRef") or ""

    def notice(self, el: etree._Element, blocks: list[Block]) -> str:
        node_id = el.get("id") or ""
        props = self.props(el)
        period = self.nodes.get(f"{node_id}__period")
        if period is None or self.next_of(node_id) != period.get("id"):
            raise OutsideSubset(f"「{_name(el)}」出具公示后应当是公示期")
        self.seen.add(period.get("id") or "")
        timers = [t for t in period.iter(q("intermediateCatchEvent"))]
        if len(timers) != 1:
            raise OutsideSubset(f"「{_name(period)}」的公示期简易模式无法表示")
        block = Block(node_id, "notice", el.get("name") or "", role=self.lanes.get(node_id),
                      notice_kind=props.notice_kind, period=self.timer(timers[0]))
        objection = self.nodes.get(f"{node_id}__objection")
        boundaries = [n for n in self.nodes.values() if n.get("attachedToRef") == period.get("id")]
        if len(boundaries) > (1 if objection is not None else 0):
            raise OutsideSubset(f"「{_name(period)}」上有简易模式不支持的边界事件")
        if objection is not None:
            self.seen.add(objection.get("id") or "")
            block.objection_return_to = self.next_of(objection.get("id") or "")
        blocks.append(block)
        return self.next_of(period.get("id") or "")

    def branching(self, el: etree._Element, blocks: list[Block]) -> str | None:
        node_id = el.get("id") or ""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise OutsideSubset(f"「{_name(el)}」处分支嵌套超过 {MAX_DEPTH} 层,简易模式无法表示")
        conditional = local(el) == "exclusiveGateway"
        join = f"{node_id}__join"
        block = Block(node_id, "condition" if conditional else "parallel", el.get("name") or "")
        reached = False
        for flow in self.outgoing(node_id):
            branch = Branch(flow.get("id") or "", flow.get("name") or "")
            inner, stop = self.walk(flow.get("targetRef") or "", join)
            branch.blocks = inner
            reached = reached or stop == join
            if conditional and flow.get("id") == el.get("default"):
                block.otherwise = branch
                continue
            if conditional:
                expr = flow.findtext(q("conditionExpression")) or ""
                branch.join, branch.conditions = _conditions(expr, el, flow)
            block.branches.append(branch)
        blocks.append(block)
        self.depth -= 1
        if not reached:
            return None
        self.seen.add(join)
        return self.next_of(join)


def _conditions(expr: str, gateway: etree._Element, flow: etree._Element) -> tuple[str, list[Condition]]:
    why = OutsideSubset(f"「{_name(gateway)}」的分支「{flow.get('name') or ''}」的条件简易模式无法表示")
    try:
        tree = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise why from None
    join, parts = "and", [tree]
    if isinstance(tree, ast.BoolOp):
        join, parts = ("and" if isinstance(tree.op, ast.And) else "or"), list(tree.values)
    found = []
    for part in parts:
        if not isinstance(part, ast.Compare) or len(part.ops) != 1:
            raise why
        left, op, right = part.left, part.ops[0], part.comparators[0]
        try:
            if isinstance(op, ast.In) and isinstance(right, ast.Name):
                found.append(Condition(right.id, "contains", ast.literal_eval(left)))
            elif type(op) in _OPS and isinstance(left, ast.Name):
                found.append(Condition(left.id, _OPS[type(op)], ast.literal_eval(right)))
            else:
                raise why
        except ValueError:
            raise why from None
    return join, found


def _canon(el: etree._Element, flow_ends: dict[str, tuple[str, str]]) -> tuple:
    kind = local(el)
    attrs = dict(el.attrib)
    if kind in ("sequenceFlow", "lane", "laneSet", "timerEventDefinition", "signalEventDefinition"):
        attrs.pop("id", None)
    if "default" in attrs:
        attrs["default"] = "→".join(flow_ends.get(attrs["default"], ("?", "?")))
    children = tuple(sorted(_canon(c, flow_ends) for c in el if isinstance(c.tag, str)
                            and local(c) not in ("incoming", "outgoing")))
    return (str(el.tag), tuple(sorted(attrs.items())), (el.text or "").strip() if not len(el) else "", children)


def _same(root: etree._Element, process: etree._Element, compiled: dict[str, str], files: dict[str, str],
          bpmn_key: str) -> None:
    """:raises OutsideSubset: compiling the model again would not give the draft's process (and forms)."""
    other_root = etree.fromstring(next(v for k, v in compiled.items() if k.startswith("bpmn/")).encode())
    other = other_root.find(q("process"))
    assert other is not None

    def index(proc: etree._Element) -> dict[str, tuple]:
        ends = {f.get("id") or "": (f.get("sourceRef") or "", f.get("targetRef") or "")
                for f in proc.iter(q("sequenceFlow"))}
        out = {}
        for el in proc:
            if not isinstance(el.tag, str):
                continue
            key = "→".join(ends[el.get("id") or ""]) if local(el) == "sequenceFlow" else (el.get("id") or local(el))
            out[key] = _canon(el, ends)
        return out

    mine, theirs = index(process), index(other)
    for key, value in mine.items():
        if theirs.get(key) != value:
            el = next((e for e in process if isinstance(e.tag, str) and e.get("id") == key), None)
            what = f"「{_name(el)}」" if el is not None else ("泳道" if key == "laneSet" else "连线")
            raise OutsideSubset(f"{what}在 BPMN 高级模式中有简易模式无法表示的设置或连接,请继续在 BPMN 高级模式中编辑")
    missing = [k for k in theirs if k not in mine]
    if missing:
        raise OutsideSubset("流程图缺少简易模式需要的元素或连线,请继续在 BPMN 高级模式中编辑")
    signals = {(s.get("id"), s.get("name")) for s in root.findall(q("signal"))}
    if signals != {(s.get("id"), s.get("name")) for s in other_root.findall(q("signal"))}:
        raise OutsideSubset("流程图中的信号定义简易模式无法表示")
    for key in compiled:
        if key.startswith("form/") and key not in files:
            raise OutsideSubset(f"缺少表单 {key[5:]}")
    for key in files:
        if key.startswith("form/") and key not in compiled:
            raise OutsideSubset(f"表单 {key[5:]} 不属于任何步骤:简易模式无法表示")

"""The bundle a check reads: a procedure's files with what the registry knows about the world, each part
parsed once (manifest, diagram, forms, decisions, step properties) and shared by every check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from lxml import etree

from engine.core.bounds import loads_bounded
from engine.core.errors import DefinitionError
from engine.procedures import forms as forms_mod
from engine.procedures.checks.problem import Problem
from engine.procedures.checks.rules import ENGINE_DATA_SAMPLE, TALLY_KEYS
from engine.procedures.steps import StepProperties

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI", "spiffworkflow": SPIFF_NS}


# how an unnamed element is called in a message
KIND_WORDS = {
    "process": "流程", "lane": "泳道", "startEvent": "开始事件", "endEvent": "结束事件", "userTask": "用户任务",
    "task": "任务", "manualTask": "人工任务", "scriptTask": "脚本任务", "businessRuleTask": "规则任务",
    "serviceTask": "服务任务", "sendTask": "发送任务", "receiveTask": "接收任务", "callActivity": "调用活动",
    "subProcess": "子流程", "transaction": "事务子流程", "adHocSubProcess": "自由子流程",
    "exclusiveGateway": "排他网关", "parallelGateway": "并行网关", "inclusiveGateway": "包容网关",
    "eventBasedGateway": "事件网关", "complexGateway": "复杂网关", "intermediateCatchEvent": "中间事件",
    "intermediateThrowEvent": "中间抛出事件", "boundaryEvent": "边界事件", "laneSet": "泳道组",
    "participant": "池", "collaboration": "协作图", "decision": "决策", "rule": "规则", "input": "输入列",
}


def q(tag: str, ns: str = BPMN_NS) -> str:
    return f"{{{ns}}}{tag}"


def local(node: Any) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


@dataclass(frozen=True)
class CheckContext:
    """What the registry knows besides the bundle. A fact given as None is not known where the check runs
    (a deploy from a folder does not know the other procedures): the checks needing it are skipped."""

    known_roles: frozenset[str]
    known_procedures: frozenset[str] | None = None  # codes a startsProcedure may name
    linkable: frozenset[str] | None = None  # of those, the ones serving this procedure's regions
    passed_in: Mapping[str, frozenset[str]] | None = None  # code → data keys other procedures pass it
    clock: Any = None  # the clock a timer expression is tried under (None: the current one)


class CheckedBundle:
    """A bundle's files under check, parsed lazily and once; ``spec`` is set when SpiffWorkflow parsed it."""

    def __init__(self, files: Any, context: CheckContext):
        self.raw_files = files
        self.context = context
        self.spec: Any = None
        self.subprocess_specs: dict[str, Any] = {}
        self.problems: list[Problem] = []
        self._props: dict[etree._Element, StepProperties] = {}  # holding the element keeps its proxy alive

    # -- files (only read once the file-set check passed)
    @property
    def files(self) -> dict[str, str]:
        return self.raw_files

    @cached_property
    def bpmn_key(self) -> str:
        return next(k for k in self.files if k.startswith("bpmn/"))

    def problem(self, element_id: str | None, message: str, file: str | None = None) -> Problem:
        """A problem on element_id (named from its file), or on file alone."""
        name = self.element_names.get(file or self.bpmn_key, {}).get(element_id or "") if element_id else None
        return Problem(element_id or None, message, file, name or None)

    # -- procedure.json
    @cached_property
    def _manifest(self) -> tuple[dict[str, Any] | None, str | None]:
        from engine.procedures.checks.files import json_problem

        try:
            manifest = loads_bounded(self.files["procedure.json"])
        except ValueError as exc:
            return None, f"procedure.json {json_problem(exc)}"
        if not isinstance(manifest, dict):
            return None, "procedure.json 必须是对象"
        return manifest, None

    @property
    def manifest(self) -> dict[str, Any] | None:
        return self._manifest[0]

    @property
    def settings(self) -> dict[str, Any]:
        settings = (self.manifest or {}).get("settings", {})
        return settings if isinstance(settings, dict) else {}

    # -- XML
    @cached_property
    def xml(self) -> dict[str, etree._Element | DefinitionError]:
        """Each BPMN/DMN file's root, or the refusal of its text."""
        from engine.procedures.definitions import safe_xml

        found: dict[str, etree._Element | DefinitionError] = {}
        for key, text in self.files.items():
            if key.startswith(("bpmn/", "dmn/")):
                try:
                    found[key] = safe_xml(text, key)
                except DefinitionError as exc:
                    found[key] = exc
        return found

    @property
    def root(self) -> etree._Element | None:
        root = self.xml.get(self.bpmn_key)
        return root if isinstance(root, etree._Element) else None

    @property
    def dmn_roots(self) -> list[tuple[str, etree._Element]]:
        return [(k, r) for k, r in self.xml.items() if k.startswith("dmn/") and isinstance(r, etree._Element)]

    @cached_property
    def element_names(self) -> dict[str, dict[str, str]]:
        """File → element id → how a user knows it: its name (DMN columns: label); an unnamed element by its
        kind (a flow by the elements it joins)."""
        names: dict[str, dict[str, str]] = {}
        for key, root in self.xml.items():
            if not isinstance(root, etree._Element):
                continue
            nodes = [n for n in root.iter() if isinstance(n.tag, str) and n.get("id")]
            own = {n.get("id"): (n.get("name") or n.get("label") or "").strip() for n in nodes}
            kinds = {n.get("id"): local(n) for n in nodes}
            found = names[key] = {}
            for node in nodes:
                node_id, kind = node.get("id"), local(node)
                if own[node_id]:
                    found[node_id] = own[node_id]
                elif kind == "sequenceFlow":
                    ends = [own.get(node.get(a) or "") or KIND_WORDS.get(kinds.get(node.get(a) or "", ""), "元素")
                            for a in ("sourceRef", "targetRef")]
                    found[node_id] = f"连线「{ends[0]}」→「{ends[1]}」"
                elif kind in KIND_WORDS:
                    found[node_id] = f"未命名的{KIND_WORDS[kind]}"
        return names

    @cached_property
    def process(self) -> etree._Element | None:
        """The executable process procedure.json names, or None (no diagram, no manifest, no such process)."""
        if self.root is None or self.manifest is None:
            return None
        process_id = self.manifest.get("process_id")
        return next((p for p in self.root.findall(q("process")) if p.get("id") == process_id), None)

    def properties(self, node: etree._Element) -> StepProperties:
        """An element's ``spiffworkflow:properties``, parsed once (the typed reading of engine/procedures/steps.py)."""
        if node not in self._props:
            raw = {p.get("name"): p.get("value") or "" for p in node.findall(
                f"{q('extensionElements')}/{q('properties', SPIFF_NS)}/{q('property', SPIFF_NS)}")}
            self._props[node] = StepProperties.parse(raw)
        return self._props[node]

    def elements(self) -> list[etree._Element]:
        """Every element with an id inside the executable process."""
        if self.process is None:
            return []
        return [n for n in self.process.iter() if isinstance(n.tag, str) and n.get("id")]

    # -- forms and decisions
    @cached_property
    def _forms(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        schemas, errors = {}, {}
        for key, text in self.files.items():
            if key.startswith("form/"):
                try:
                    loads_bounded(text)
                except ValueError as exc:
                    from engine.procedures.checks.files import json_problem

                    errors[key] = json_problem(exc)
                    continue
                try:
                    schemas[key[len("form/"):]] = forms_mod.parse_schema(text)
                except DefinitionError as exc:
                    errors[key] = str(exc)
        return schemas, errors

    @property
    def forms(self) -> dict[str, dict[str, Any]]:
        """Form key → schema, for the forms that parse."""
        return self._forms[0]

    @property
    def form_errors(self) -> dict[str, str]:
        return self._forms[1]

    @cached_property
    def decisions(self) -> set[str]:
        return {d.get("id") for _key, root in self.dmn_roots
                for d in root.iterfind(".//dmn:decision", {"dmn": root.nsmap.get(None) or ""})}

    @cached_property
    def data_names(self) -> DataNames:
        return DataNames.of(self)


@dataclass
class DataNames:
    """The names an expression of this bundle may read, with trial values for evaluating it."""

    values: dict[str, Any] = field(default_factory=dict)
    # known only when a case runs: DMN outputs, script variables, start data (declared, or passed in)
    run_time: set[str] = field(default_factory=set)

    def known(self, name: str) -> bool:
        return name in self.values or name in self.run_time or name.startswith(("subject_", "linked_"))

    @classmethod
    def of(cls, bundle: CheckedBundle) -> DataNames:
        from engine.core.errors import UnsafeExpressionError
        from engine.procedures.expressions import parse_script

        manifest = bundle.manifest or {}
        values: dict[str, Any] = {**ENGINE_DATA_SAMPLE, "subject_kind": manifest.get("subject_kind", "household"),
                                  "settings": bundle.settings, **dict.fromkeys(TALLY_KEYS, 1)}
        for schema in bundle.forms.values():
            for comp in forms_mod.input_components(schema):
                values.setdefault(str(comp.get("key")), _placeholder(comp))
        run_time: set[str] = set()
        for _key, root in bundle.dmn_roots:
            run_time.update(o.get("name") for o in root.iterfind(".//dmn:output", {"dmn": root.nsmap.get(None) or ""})
                            if o.get("name"))
        root = bundle.root
        if root is not None:
            texts = [n.text or "" for n in root.iterfind(".//bpmn:scriptTask/bpmn:script", NS)]
            texts += [n.text or "" for tag in ("preScript", "postScript")
                      for n in root.iterfind(f".//spiffworkflow:{tag}", NS)]
            for text in texts:
                try:
                    run_time.update(name for name, _ in parse_script(text))
                except UnsafeExpressionError:
                    pass
            for loop in root.iterfind(".//bpmn:multiInstanceLoopCharacteristics", NS):  # a 会签's signers, votes
                run_time.update((n.text or "").strip() for tag in ("loopDataInputRef", "loopDataOutputRef")
                                for n in loop.iterfind(f"bpmn:{tag}", NS))
                run_time.update(n.get("id") or "" for tag in ("inputDataItem", "outputDataItem")
                                for n in loop.iterfind(f"bpmn:{tag}", NS))
        declared = manifest.get("start_data", [])
        if isinstance(declared, list):
            run_time.update(n for n in declared if isinstance(n, str))
        run_time.update((bundle.context.passed_in or {}).get(str(manifest.get("code")), ()))
        return cls(values, run_time - {""})


def _placeholder(comp: dict[str, Any]) -> Any:
    kind = comp.get("type")
    if kind == "number":
        return 1
    if kind == "checkbox":
        return True
    if kind == "checklist":
        return []
    if kind == "datetime":
        return "2026-01-01"
    values = comp.get("values")
    if isinstance(values, list) and values and isinstance(values[0], dict):
        return str(values[0].get("value"))
    return "x"

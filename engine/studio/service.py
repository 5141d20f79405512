"""Procedure studio: admins model, validate, dry-run, deploy and share procedures, and move running cases.

A *draft* holds the files a deployed version holds (``procedure.json``, ``bpmn/x.bpmn``,
``dmn/x.dmn``, ``form/<formKey>``, ``template/<name>``: the notice catalog and templates, deployed
with the rest, so a procedure made here issues its own notices). Everything a draft contains is untrusted input: XML is parsed with DTDs, entities and
network access off (``definitions.safe_xml``), JSON is size-limited, zips are checked for
size, entry count, compression ratio, links and path traversal before anything is read.

``validate_files`` returns problems *per element id*, so the editor can mark each one on the
diagram. Deploying goes through ``DefinitionService.deploy`` (content-hashed versions): new
cases use the new version, running cases stay on theirs until an admin moves them with
SpiffWorkflow's diff/migration (``migration_preview`` / ``migrate_cases``), each move recorded
in the case's history. A dry run executes a draft in memory under a ``FixedClock``: no case,
task, timer or notification rows, only the audit record that it happened.

Every studio action requires an admin grant (``Actor.is_admin``), and changing a procedure
(opening, saving, validating, dry-running, deploying, exporting a draft or version, migrating its
cases) requires ``AccessPolicy.may_change_procedure`` (engine/access/policy.py) on the procedure's owner region:
a procedure created in the studio belongs to the region of the admin grant used (chosen from
``owner_choices``), a shipped one (owner NULL) only to an admin covering every province. A draft
of an existing procedure follows that procedure's owner; a draft of a new code carries its own
(``ProcedureDraft.owner_region_code``). Any admin may copy a shipped procedure (or one they may
change) under a new code owned by their region. Migration only touches cases inside the admin's
regions. Every action is recorded in ``audit_event`` (``case_id`` NULL unless it concerns a case)
with the acting admin and, in ``data_diff["owner_region_code"]``, the procedure's owner region.
"""

from __future__ import annotations

import io
import json
import re
import stat
import zipfile
import zlib
from collections import deque
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.bpmn.util.diff import diff_workflow, migrate_workflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor, procedure_serves, scope_for
from engine.access.policy import AccessPolicy
from engine.core import clock as clock_mod
from engine.core import workcalendar
from engine.core.bounds import BAD_CHARS, BAD_CHARS_MESSAGE, loads_bounded
from engine.core.clock import FixedClock
from engine.core.errors import (
    CaseExecutionError,
    ConflictError,
    DefinitionError,
    ForbiddenError,
    NotFoundError,
    UnsafeExpressionError,
    ValidationError,
)
from engine.models import (
    AuditEvent,
    Case,
    CaseStatus,
    Procedure,
    ProcedureDraft,
    ProcedureVersion,
    Region,
    Role,
    TaskRow,
    TaskStatus,
)
from engine.procedures import forms as forms_mod
from engine.procedures.definitions import (
    ALLOWED_ACTIONS,
    MAX_FILE_BYTES,
    NS,
    TEMPLATE_KEY_RE,
    DefinitionService,
    ProcedureBundle,
    bundle_from_files,
    compile_bundle,
    dmn_entry_problem,
    multi_instance_problem,
    notice_kind_problem,
    role_of_lane,
    safe_xml,
)
from engine.procedures.expressions import SCRIPT_ENGINE, check_expression, evaluate, parse_script
from engine.procedures.serialization import FULL_SERIALIZER, SERIALIZER_VERSION, dump_state, load_state
from engine.procedures.step_rules import spec_properties, step_rule_problems
from engine.runtime.cases import (
    CaseService,
    _completed_path,
    _is_timer,
    _prune_event_manager,
    _timer_due,
    countersign,
    task_actions,
)

# ----------------------------------------------------------------------------- limits
MAX_ZIP_BYTES = 5 * 1024 * 1024
MAX_ZIP_ENTRIES = 200
MAX_ZIP_TOTAL_BYTES = 20 * 1024 * 1024
MAX_COMPRESSION_RATIO = 100
MAX_DRAFT_FILES = 200
MAX_DRAFT_BYTES = 10 * 1024 * 1024
MAX_PATTERN_LENGTH = 200
MAX_DRY_RUN_STEPS = 200
MAX_SAMPLE_BYTES = 64 * 1024

CODE_RE = re.compile(r"[a-z][a-z0-9_]{1,63}")
NAME_RE = r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,79}"
FORM_KEY_RE = re.compile(rf"{NAME_RE}(/{NAME_RE})?")
FILE_KEY_RE = re.compile(
    rf"procedure\.json|bpmn/{NAME_RE}\.bpmn|dmn/{NAME_RE}\.dmn|form/{NAME_RE}(/{NAME_RE})?"
    rf"|{TEMPLATE_KEY_RE.pattern}"
)
SUBJECT_KINDS = ("household", "project")
SYSTEM_OWNER_NAME = "全省/系统"  # how the owner of a shipped (system-wide) procedure is shown
DAY_KINDS = ("natural", "working")
DRAFT_STATUSES = ("editing", "deployed", "discarded")
CASE_STATUS_VALUES = tuple(s.value for s in CaseStatus)
BPMN_NS = NS["bpmn"]
SPIFF_NS = NS["spiffworkflow"]

FLOW_NODE_TAGS = {
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    "task", "userTask", "manualTask", "scriptTask", "businessRuleTask", "serviceTask", "sendTask",
    "receiveTask", "callActivity", "subProcess", "transaction", "adHocSubProcess",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway",
}
UNSUPPORTED_TAGS = {
    "serviceTask": "不支持服务任务(XiangFlow 不调用外部服务)",
    "sendTask": "不支持发送任务",
    "receiveTask": "不支持接收任务",
    "eventBasedGateway": "不支持事件网关:请改用子流程加边界信号事件(公示异议的做法)",
    "complexGateway": "不支持复杂网关",
    "callActivity": "不支持调用活动:请用 startsProcedure 发起关联流程",
    "adHocSubProcess": "不支持自由子流程",
    "transaction": "不支持事务子流程",
}
# keys the engine puts into every case's data (engine/runtime/cases.py) and that expressions may read
ENGINE_KEYS = {"case_id", "subject_name", "subject_kind", "region_code", "region_name", "settings", "decision",
               "opinions", "last_opinion", "return_reason", "returned_from", "last_event_reason",
               "linked_from_case", "linked_from_title"}
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]")
_TEMPLATE_SUFFIXES = (".html", ".css", ".json", ".md")


def _q(tag: str, ns: str = BPMN_NS) -> str:
    return f"{{{ns}}}{tag}"


def _local(node: etree._Element) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Problem:
    """One reason a draft cannot be deployed, on the element (BPMN/DMN id) or file it concerns."""

    element_id: str | None
    message: str
    file: str | None = None
    element_name: str | None = None

    @property
    def where(self) -> str:
        if self.element_id:
            return f"{self.element_name or ''}[{self.element_id}]"
        return self.file or "流程"

    def as_dict(self) -> dict[str, Any]:
        return {"element_id": self.element_id, "element_name": self.element_name, "file": self.file,
                "message": self.message, "where": self.where}


class DraftProblems(DefinitionError):
    """A draft was refused (deploy, dry run); ``details`` holds the problems with their element ids."""

    def __init__(self, message: str, details: list[Problem]):
        super().__init__(message, [(p.where, p.message) for p in details])
        self.details = details


@dataclass
class DryRunStep:
    element_id: str
    name: str
    kind: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"element_id": self.element_id, "name": self.name, "kind": self.kind, "detail": self.detail}


@dataclass
class DryRunResult:
    """What a sandboxed run of a draft did: the elements completed (in order) and how it ended."""

    completed: bool
    status: str
    path: list[str]
    steps: list[DryRunStep]
    error: str | None = None
    error_element: str | None = None
    waiting: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"completed": self.completed, "status": self.status, "path": self.path,
                "steps": [s.as_dict() for s in self.steps], "error": self.error,
                "error_element": self.error_element, "waiting": self.waiting,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "ended_at": self.ended_at.isoformat() if self.ended_at else None}


@dataclass
class MigrationCheck:
    """Whether one running case can move to another version, and why not."""

    case_id: int
    title: str
    region_code: str
    current_steps: list[str]
    movable: bool
    reasons: list[str]
    moved: bool = False


@dataclass
class VersionSummary:
    version: ProcedureVersion
    status: str  # deployed (new cases use it) or retired (only its running cases)
    running: int
    total: int


@dataclass
class ProcedureSummary:
    procedure: Procedure
    versions: list[VersionSummary]
    drafts: list[ProcedureDraft]
    owner_name: str = SYSTEM_OWNER_NAME
    may_change: bool = False  # open as draft, export, migrate (may_change_procedure)
    may_copy: bool = False  # copy under a new code owned by the admin's region


# ----------------------------------------------------------------------------- empty diagram
def empty_bpmn(process_id: str, name: str) -> str:
    """An empty executable process with a diagram plane: what a new draft starts from."""
    from xml.sax.saxutils import quoteattr

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" '
        'xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" xmlns:di="http://www.omg.org/spec/DD/20100524/DI" '
        'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" '
        f'id="Definitions_{process_id}" targetNamespace="http://xiangflow.cn/bpmn" exporter="XiangFlow Studio" '
        'exporterVersion="1.0">\n'
        f'  <bpmn:process id="{process_id}" name={quoteattr(name)} isExecutable="true" />\n'
        f'  <bpmndi:BPMNDiagram id="BPMNDiagram_{process_id}">\n'
        f'    <bpmndi:BPMNPlane id="BPMNPlane_{process_id}" bpmnElement="{process_id}" />\n'
        '  </bpmndi:BPMNDiagram>\n'
        '</bpmn:definitions>\n'
    )


# ----------------------------------------------------------------------------- checking files
def check_file_set(files: Any) -> dict[str, str]:
    """Refuse a draft's file set whose shape is wrong before anything is parsed.

    :raises DefinitionError: not a mapping of allowed names to text, too many or too large.
    """
    if not isinstance(files, dict) or not files:
        raise DefinitionError("草稿文件无效", [("草稿", "必须是 文件名 → 文本 的映射")])
    if len(files) > MAX_DRAFT_FILES:
        raise DefinitionError("文件过多", [("草稿", f"最多 {MAX_DRAFT_FILES} 个文件")])
    problems = []
    total = 0
    for key, text in files.items():
        if not isinstance(key, str) or not FILE_KEY_RE.fullmatch(key):
            problems.append((str(key)[:120], "不支持的文件名(允许 procedure.json、bpmn/、dmn/、form/、template/)"))
            continue
        if not isinstance(text, str):
            problems.append((key, "文件内容必须是文本"))
            continue
        size = len(text.encode("utf-8"))
        total += size
        if size > MAX_FILE_BYTES:
            problems.append((key, f"文件超过 {MAX_FILE_BYTES // 1024} KB"))
    if total > MAX_DRAFT_BYTES:
        problems.append(("草稿", f"文件总大小超过 {MAX_DRAFT_BYTES // 1024 // 1024} MB"))
    if "procedure.json" not in files:
        problems.append(("procedure.json", "缺少 procedure.json"))
    if sum(1 for k in files if isinstance(k, str) and k.startswith("bpmn/")) != 1:
        problems.append(("bpmn/", "流程必须有且只有一个 BPMN 文件"))
    if problems:
        raise DefinitionError("草稿文件无效", problems)
    return dict(files)


def parse_well_formed(files: dict[str, str]) -> None:
    """Refuse files that are not even well-formed (hostile XML, broken JSON): nothing is stored.

    :raises DefinitionError: naming each bad file.
    """
    problems: list[tuple[str, str]] = []
    for key, text in files.items():
        if isinstance(text, str) and BAD_CHARS.search(text):  # PostgreSQL text cannot hold NUL
            problems.append((key, BAD_CHARS_MESSAGE))
            continue
        try:
            if key.endswith((".bpmn", ".dmn")):
                safe_xml(text, key)
            elif key == "procedure.json" or key.startswith("form/") or key.endswith(".json"):
                loads_bounded(text)  # a 100,000-deep JSON is refused here, not a RecursionError later
        except DefinitionError as exc:
            problems.extend(exc.problems or [(key, str(exc))])
        except ValueError as exc:
            problems.append((key, f"不是有效的 JSON: {exc}"))
    if problems:
        raise DefinitionError("文件格式错误", problems)


def _regex_problem(pattern: Any) -> str | None:
    if not isinstance(pattern, str):
        return "校验正则必须是文本"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"校验正则不能超过 {MAX_PATTERN_LENGTH} 个字符"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"校验正则无效: {exc}"
    if _NESTED_QUANTIFIER.search(pattern):
        return "校验正则含有嵌套重复(如 (a+)+),可能导致回溯过慢,不予接受"
    return None


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


class _Names:
    """Names an expression of this draft may read, with placeholder values for trial evaluation."""

    def __init__(self, manifest: dict[str, Any], forms: dict[str, dict[str, Any]], dmn_outputs: set[str],
                 script_vars: set[str], start_data: set[str]):
        self.values: dict[str, Any] = {
            "case_id": 1, "subject_name": "x", "subject_kind": manifest.get("subject_kind", "household"),
            "region_code": "510921107001", "region_name": "x", "settings": manifest.get("settings") or {},
            "decision": "approve", "opinions": {}, "last_opinion": "", "return_reason": "", "returned_from": "",
            "last_event_reason": "", "linked_from_case": 1, "linked_from_title": "x",
            **dict.fromkeys(countersign.TALLY_KEYS, 1),  # what a 会签 step's votes add (engine/runtime/countersign.py)
        }
        for schema in forms.values():
            for comp in forms_mod.input_components(schema):
                self.values.setdefault(str(comp.get("key")), _placeholder(comp))
        # values known only when a case runs: DMN outputs, script variables, start data (the manifest's
        # start_data list, and passData of procedures that start this one)
        self.unknown_value = dmn_outputs | script_vars | start_data

    def known(self, name: str) -> bool:
        return name in self.values or name in self.unknown_value or name.startswith(("subject_", "linked_"))


def _names_in(expression: str) -> set[str]:
    import ast

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        return set()
    from engine.procedures.expressions import SAFE_FUNCTIONS

    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - (called & set(SAFE_FUNCTIONS)) - {
        "True", "False", "None"}


class DraftChecker:
    """Checks a draft's files against SpiffWorkflow and XiangFlow's rules, problem by element id."""

    def __init__(self, files: dict[str, str], known_roles: set[str], known_procedures: set[str], clock,
                 passed_in: dict[str, set[str]] | None = None, linkable: set[str] | None = None):
        self.files = files
        self.known_roles = known_roles
        self.known_procedures = known_procedures
        # the procedures this one's cases may start (serving its owner region); None: all known ones
        self.linkable = known_procedures if linkable is None else linkable
        self.passed_in = passed_in or {}
        self.clock = clock
        self.problems: list[Problem] = []
        self.names_by_id: dict[str, str] = {}

    def add(self, element_id: str | None, message: str, file: str | None = None) -> None:
        problem = Problem(element_id, message, file, self.names_by_id.get(element_id or "") or None)
        if problem not in self.problems:
            self.problems.append(problem)

    # -- entry point
    def run(self) -> list[Problem]:
        try:
            files = check_file_set(self.files)
        except DefinitionError as exc:
            return [Problem(None, reason, where) for where, reason in exc.problems]
        manifest = self._manifest(files)
        forms = self._forms(files)
        dmn_roots, decisions, dmn_outputs = self._dmn(files)
        bpmn_name = next(k for k in files if k.startswith("bpmn/"))
        try:
            root = safe_xml(files[bpmn_name], bpmn_name)
        except DefinitionError as exc:
            for where, reason in exc.problems:
                self.add(None, reason, where)
            return self.problems
        self.names_by_id = {n.get("id"): n.get("name") or "" for n in root.iter() if isinstance(n.tag, str)
                            and n.get("id")}
        script_vars = self._script_vars(root)
        start_data = self._start_data(manifest or {})
        names = _Names(manifest or {}, forms, dmn_outputs, script_vars, start_data)
        if manifest is not None:
            self._bpmn(bpmn_name, root, manifest, forms, decisions, names)
        for tpl in (k for k in files if k.startswith("template/") and k.endswith(".json")):
            try:
                json.loads(files[tpl])
            except ValueError as exc:
                self.add(None, f"不是有效的 JSON: {exc}", tpl)
        if self.problems or manifest is None:
            return self.problems
        self._spiff(files, manifest, bpmn_name, root, dmn_roots)
        return self.problems

    # -- manifest
    def _manifest(self, files: dict[str, str]) -> dict[str, Any] | None:
        try:
            manifest = json.loads(files["procedure.json"])
        except ValueError as exc:
            self.add(None, f"不是有效的 JSON: {exc}", "procedure.json")
            return None
        if not isinstance(manifest, dict):
            self.add(None, "procedure.json 必须是对象", "procedure.json")
            return None
        if not CODE_RE.fullmatch(str(manifest.get("code", ""))):
            self.add(None, "流程代码只能是小写字母开头的字母、数字、下划线(2–64 位)", "procedure.json")
        if not str(manifest.get("name", "")).strip():
            self.add(None, "流程名称不能为空", "procedure.json")
        if manifest.get("subject_kind", "household") not in SUBJECT_KINDS:
            self.add(None, "办理对象只能是 household(农户)或 project(项目)", "procedure.json")
        settings = manifest.get("settings", {})
        if not isinstance(settings, dict):
            self.add(None, "settings 必须是对象", "procedure.json")
            manifest["settings"] = {}
        elif settings.get("day_kind", "natural") not in DAY_KINDS:
            self.add(None, "settings.day_kind 只能是 natural(自然日)或 working(工作日)", "procedure.json")
        if not isinstance(manifest.get("process_id"), str) or not manifest.get("process_id"):
            self.add(None, "缺少 process_id", "procedure.json")
        return manifest

    def _start_data(self, manifest: dict[str, Any]) -> set[str]:
        names = set(self.passed_in.get(str(manifest.get("code")), set()))
        declared = manifest.get("start_data", [])
        if not isinstance(declared, list) or not all(isinstance(n, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", n)
                                                      for n in declared):
            self.add(None, "start_data 必须是字段名列表(发起案件时可传入的数据)", "procedure.json")
            return names
        return names | set(declared)

    # -- forms
    def _forms(self, files: dict[str, str]) -> dict[str, dict[str, Any]]:
        forms: dict[str, dict[str, Any]] = {}
        for key, text in files.items():
            if not key.startswith("form/"):
                continue
            form_key = key[len("form/"):]
            try:
                schema = forms_mod.parse_schema(text)
            except DefinitionError as exc:
                self.add(None, f"表单 {form_key}: {exc}", key)
                continue
            seen: set[str] = set()
            for comp in forms_mod.input_components(schema):
                comp_key = str(comp.get("key"))
                if comp_key in seen:
                    self.add(None, f"表单 {form_key}: 字段 key {comp_key!r} 重复", key)
                seen.add(comp_key)
                if comp_key in ENGINE_KEYS or comp_key.startswith("subject_"):
                    self.add(None, f"表单 {form_key}: 字段 key {comp_key!r} 是引擎保留名", key)
                pattern = (comp.get("validate") or {}).get("pattern")
                if pattern is not None and (reason := _regex_problem(pattern)):
                    self.add(None, f"表单 {form_key} 字段 {comp.get('label') or comp_key}: {reason}", key)
            forms[form_key] = schema
        return forms

    # -- DMN
    def _dmn(self, files: dict[str, str]):
        roots: list[tuple[str, etree._Element]] = []
        decisions: set[str] = set()
        outputs: set[str] = set()
        for key, text in files.items():
            if not key.startswith("dmn/"):
                continue
            try:
                root = safe_xml(text, key)
            except DefinitionError as exc:
                for where, reason in exc.problems:
                    self.add(None, reason, where)
                continue
            roots.append((key, root))
            ns = {"dmn": root.nsmap.get(None) or ""}
            for decision in root.iterfind(".//dmn:decision", ns):
                if decision.get("id") in decisions:
                    self.add(decision.get("id"), "决策 id 重复", key)
                decisions.add(decision.get("id"))
            for out in root.iterfind(".//dmn:output", ns):
                if out.get("name"):
                    outputs.add(out.get("name"))
            for node in root.iterfind(".//dmn:inputExpression/dmn:text", ns):
                self._dmn_expression(key, node, node.text or "", ns)
            for tag in ("inputEntry", "outputEntry"):
                for node in root.iterfind(f".//dmn:{tag}/dmn:text", ns):
                    problem = dmn_entry_problem(node.text or "")
                    if problem:
                        self._dmn_problem(key, node, problem, ns)
        return roots, decisions, outputs

    def _dmn_expression(self, key, node, text, ns) -> None:
        try:
            check_expression(text)
        except UnsafeExpressionError as exc:
            self._dmn_problem(key, node, str(exc), ns)

    def _dmn_problem(self, key, node, message, ns) -> None:
        owner = node
        while owner is not None and not owner.get("id"):
            owner = owner.getparent()
        self.add(owner.get("id") if owner is not None else None, message, key)

    # -- BPMN
    @staticmethod
    def _script_vars(root: etree._Element) -> set[str]:
        found: set[str] = set()
        texts = [n.text or "" for n in root.iterfind(".//bpmn:scriptTask/bpmn:script", NS)]
        texts += [n.text or "" for tag in ("preScript", "postScript") for n in root.iterfind(f".//spiffworkflow:{tag}", NS)]
        for text in texts:
            try:
                found.update(name for name, _ in parse_script(text))
            except UnsafeExpressionError:
                pass
        for loop in root.iterfind(".//bpmn:multiInstanceLoopCharacteristics", NS):  # a 会签's signers and votes
            found.update((n.text or "").strip() for tag in ("loopDataInputRef", "loopDataOutputRef")
                         for n in loop.iterfind(f"bpmn:{tag}", NS))
            found.update(n.get("id") or "" for tag in ("inputDataItem", "outputDataItem")
                         for n in loop.iterfind(f"bpmn:{tag}", NS))
        return found - {""}

    def _bpmn(self, file, root, manifest, forms, decisions, names: _Names) -> None:
        processes = root.findall(_q("process"))
        process_id = manifest.get("process_id")
        process = next((p for p in processes if p.get("id") == process_id), None)
        if process is None:
            self.add(None, f"BPMN 中没有 id 为 {process_id!r} 的流程(process)", file)
            return
        if len(processes) > 1:
            for other in processes:
                if other is not process and any(_local(c) in FLOW_NODE_TAGS for c in other):
                    self.add(other.get("id"), "只能有一个可执行流程:其他池中的元素不会运行", file)
        # lanes: every (leaf) lane names an existing role
        for lane in process.iter(_q("lane")):
            if lane.find(_q("childLaneSet")) is not None:
                continue
            role = role_of_lane(lane.get("name"))
            if not lane.get("name"):
                self.add(lane.get("id"), "泳道没有名称:应为 “中文名 (角色代码)”", file)
            elif role not in self.known_roles:
                self.add(lane.get("id"), f"泳道 {lane.get('name')!r} 对应的角色 {role!r} 不存在"
                                         f"(可选: {', '.join(sorted(self.known_roles))})", file)
        for node in root.iter():
            if not isinstance(node.tag, str):
                continue
            local = _local(node)
            if node.tag == _q(local) and local in UNSUPPORTED_TAGS:
                self.add(node.get("id"), UNSUPPORTED_TAGS[local], file)
        self._container(file, process, names, top=True)
        self._properties(file, process, forms, decisions, manifest)
        self._expressions(file, process, names)

    def _container(self, file, container, names, top: bool) -> None:
        """Reachability inside one process or sub-process: from a start, to an end."""
        nodes = {c.get("id"): c for c in container if _local(c) in FLOW_NODE_TAGS and c.tag.startswith(f"{{{BPMN_NS}}}")}
        flows = [c for c in container if c.tag == _q("sequenceFlow")]
        succ: dict[str, set[str]] = {n: set() for n in nodes}
        pred: dict[str, set[str]] = {n: set() for n in nodes}
        for flow in flows:
            src, dst = flow.get("sourceRef"), flow.get("targetRef")
            if src not in nodes or dst not in nodes:
                self.add(flow.get("id"), "连线的起点或终点不在同一流程/子流程中", file)
                continue
            succ[src].add(dst)
            pred[dst].add(src)
        event_subs = {i for i, n in nodes.items() if _local(n) == "subProcess" and n.get("triggeredByEvent") == "true"}
        for node_id, node in nodes.items():  # a boundary event is entered through its activity
            if _local(node) == "boundaryEvent" and node.get("attachedToRef") in nodes:
                succ[node.get("attachedToRef")].add(node_id)
        starts = [i for i, n in nodes.items() if _local(n) == "startEvent"]
        real_nodes = [i for i, n in nodes.items() if i not in event_subs]
        if real_nodes and not starts:
            self.add(container.get("id"), "缺少开始事件", file)
        elif not real_nodes and top:
            self.add(container.get("id"), "流程是空的:请从开始事件画起", file)
        ends = {i for i, n in nodes.items() if _local(n) == "endEvent"}
        if real_nodes and not ends:
            self.add(container.get("id"), "缺少结束事件", file)
        reached = _walk(starts, succ)
        for node_id in real_nodes:
            if node_id not in reached and _local(nodes[node_id]) != "startEvent":
                self.add(node_id, "从开始事件无法到达此元素(不可达)", file)
        for node_id in starts:
            if not succ[node_id] and node_id not in ends:
                self.add(node_id, "开始事件没有出口连线", file)
        # every reachable element must lead to an end
        back: dict[str, set[str]] = {n: set(pred[n]) for n in nodes}
        for node_id, node in nodes.items():
            if _local(node) == "boundaryEvent" and node.get("attachedToRef") in nodes:
                back[node_id].add(node.get("attachedToRef"))
        # a step that allows only reject/return ends the case through those operations
        closing = {i for i, n in nodes.items() if _local(n) == "userTask" and not _approves(n)}
        to_end = _walk(list(ends | closing), back)
        stuck = {n for n in real_nodes if n in reached and n not in to_end}
        for node_id in _sink_components(stuck, succ):  # where the paths get stuck, not every step before
            message = ("此元素没有出口连线:每条路径都必须到达结束事件" if not succ[node_id] else
                       "从此元素出发的路径(循环)无法到达结束事件")
            self.add(node_id, message, file)
        for node_id, node in nodes.items():
            if _local(node) in ("subProcess", "transaction"):
                self._container(file, node, names, top=False)
            self._gateway(file, node, [f for f in flows if f.get("sourceRef") == node_id])

    def _gateway(self, file, node, outgoing) -> None:
        kind = _local(node)
        if kind in ("exclusiveGateway", "inclusiveGateway") and len(outgoing) > 1:
            default = node.get("default")
            for flow in outgoing:
                if flow.get("id") != default and flow.find(_q("conditionExpression")) is None:
                    self.add(flow.get("id"), "网关的分支连线缺少条件表达式(或将其设为默认连线)", file)
        if kind == "parallelGateway":
            for flow in outgoing:
                if flow.find(_q("conditionExpression")) is not None:
                    self.add(flow.get("id"), "并行网关的连线不能有条件", file)

    def _properties(self, file, process, forms, decisions, manifest) -> None:
        own_code = manifest.get("code")
        for node in process.iter():
            if not isinstance(node.tag, str) or not node.get("id"):
                continue
            local = _local(node)
            props = {p.get("name"): p.get("value") or "" for p in
                     node.findall(f"{_q('extensionElements')}/{_q('properties', SPIFF_NS)}/{_q('property', SPIFF_NS)}")}
            node_id = node.get("id")
            if local == "userTask":
                form_key = props.get("formKey", "").strip()
                if not form_key:
                    self.add(node_id, "用户任务没有选择表单(formKey)", file)
                elif not FORM_KEY_RE.fullmatch(form_key) or form_key not in forms:
                    self.add(node_id, f"表单 {form_key!r} 不存在或无效", file)
                actions = [a.strip() for a in props.get("actions", "approve").split(",") if a.strip()]
                bad = [a for a in actions if a not in ALLOWED_ACTIONS]
                if bad or not actions:
                    self.add(node_id, f"不允许的操作 {','.join(bad)}:只能是 {','.join(ALLOWED_ACTIONS)}", file)
                if props.get("dueIn"):
                    try:
                        parsed = TimerEventDefinition.parse_iso_duration(props["dueIn"])
                        if not parsed or not any(parsed.values()):
                            raise ValueError(props["dueIn"])
                    except Exception:  # noqa: BLE001 - any parse failure is the same problem
                        self.add(node_id, f"办理时限 dueIn {props['dueIn']!r} 不是 ISO 时长(如 P5D)", file)
                if props.get("dueAt"):
                    self._expr(file, node_id, props["dueAt"], "办理期限表达式")
                for problem in step_rule_problems(props):
                    self.add(node_id, problem, file)
            elif local == "businessRuleTask":
                called = node.find(f"{_q('extensionElements')}/{_q('calledDecisionId', SPIFF_NS)}")
                decision = (called.text or "").strip() if called is not None else ""
                if not decision:
                    self.add(node_id, "规则任务没有选择决策表(calledDecisionId)", file)
                elif decision not in decisions:
                    self.add(node_id, f"决策表 {decision!r} 不存在", file)
            if props.get("caseStatus") and props["caseStatus"] not in CASE_STATUS_VALUES:
                self.add(node_id, f"案件状态 {props['caseStatus']!r} 无效(可选: {', '.join(CASE_STATUS_VALUES)})", file)
            if props.get("startsProcedure"):
                code = props["startsProcedure"]
                if code not in self.known_procedures and code != own_code:
                    self.add(node_id, f"要发起的流程 {code!r} 不存在", file)
                elif code not in self.linkable and code != own_code:
                    self.add(node_id, f"要发起的流程 {code!r} 属于其他地区,本流程的案件不能发起它", file)
                for key in (k.strip() for k in props.get("passData", "").split(",")):
                    if key and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", key):
                        self.add(node_id, f"passData 中的字段名 {key!r} 无效", file)
            notice_problem = props.get("noticeKind") and notice_kind_problem(props["noticeKind"], self.files)
            if notice_problem:
                self.add(node_id, notice_problem, file)

    def _expr(self, file, element_id, text, what, names: _Names | None = None) -> bool:
        try:
            check_expression(text)
        except UnsafeExpressionError as exc:
            self.add(element_id, f"{what}不安全或有语法错误: {exc}", file)
            return False
        if names is not None:
            unknown = sorted(n for n in _names_in(text) if not names.known(n))
            if unknown:
                self.add(element_id, f"{what}引用了未定义的变量 {', '.join(unknown)}"
                                     "(表单字段、决策表输出、脚本变量或 settings 中都没有)", file)
                return False
        return True

    def _expressions(self, file, process, names: _Names) -> None:
        for flow in process.iter(_q("sequenceFlow")):
            cond = flow.find(_q("conditionExpression"))
            if cond is not None:
                if not (cond.text or "").strip():
                    self.add(flow.get("id"), "条件表达式是空的", file)
                else:
                    self._expr(file, flow.get("id"), cond.text, "条件表达式", names)
        for tag, what in (("timeDuration", "定时时长"), ("timeDate", "定时日期"), ("timeCycle", "定时周期")):
            for node in process.iter(_q(tag)):
                owner = node.getparent().getparent()
                self._timer(file, owner.get("id"), tag, (node.text or "").strip(), what, names)
        for node in process.iter(_q("timerEventDefinition")):
            if not any(node.find(_q(t)) is not None for t in ("timeDuration", "timeDate", "timeCycle")):
                self.add(node.getparent().get("id"), "定时事件没有设置时间表达式", file)
        for loop in process.iter(_q("multiInstanceLoopCharacteristics")):  # 会签/或签
            owner = loop.getparent()
            problem = multi_instance_problem(loop)
            if problem:
                self.add(owner.get("id"), problem, file)
            cond = loop.find(_q("completionCondition"))
            if cond is not None and (cond.text or "").strip():
                self._expr(file, owner.get("id"), cond.text, "会签完成条件", names)
        for node in process.iter(_q("script")):
            owner = node.getparent()
            try:
                parse_script(node.text or "")
            except UnsafeExpressionError as exc:
                self.add(owner.get("id"), f"脚本不被允许: {exc}", file)
        for tag in ("preScript", "postScript"):
            for node in process.iter(_q(tag, SPIFF_NS)):
                owner = node
                while owner is not None and not owner.get("id"):
                    owner = owner.getparent()
                try:
                    parse_script(node.text or "")
                except UnsafeExpressionError as exc:
                    self.add(owner.get("id") if owner is not None else None, f"脚本不被允许: {exc}", file)

    def _timer(self, file, element_id, tag, text, what, names: _Names) -> None:
        if not text:
            self.add(element_id, f"{what}表达式是空的", file)
            return
        if not self._expr(file, element_id, text, f"{what}表达式", names):
            return
        if any(n in names.unknown_value for n in _names_in(text)):
            return  # reads a DMN output or script variable: its value is only known when the case runs
        try:
            with clock_mod.using(self.clock):
                value = evaluate(text, dict(names.values))
            value = str(value)
            if tag == "timeDuration":
                parsed = TimerEventDefinition.parse_iso_duration(value)
                if not any(parsed.values()):
                    raise ValueError(value)
            elif tag == "timeDate":
                TimerEventDefinition.get_datetime(value)
            else:
                TimerEventDefinition.parse_iso_recurring_interval(value)
        except Exception as exc:  # noqa: BLE001 - the timer would fail at run time the same way
            hint = {"timeDuration": "ISO 时长,如 \"P15D\"(注意加引号)",
                    "timeDate": "ISO 日期时间,如 workdays(10) 或 date_add(some_date, 15)",
                    "timeCycle": "ISO 重复周期,如 \"R/P1M\""}[tag]
            self.add(element_id, f"{what}表达式无法求值为{hint}: {exc}", file)

    # -- SpiffWorkflow itself, then the deploy-time rules of definitions.compile_bundle
    def _spiff(self, files, manifest, bpmn_name, root, dmn_roots) -> None:
        parser = SpiffBpmnParser(validator=VALIDATOR)
        try:
            parser.add_bpmn_xml(root, filename=bpmn_name)
            for key, dmn_root in dmn_roots:
                parser.add_dmn_xml(dmn_root, filename=key)
            spec = parser.get_spec(manifest["process_id"])
            subprocess_specs = parser.get_subprocess_specs(manifest["process_id"])
        except ValidationException as exc:
            line = getattr(exc, "line_number", None)
            message = str(exc).splitlines()[0] + (f"(第 {line} 行)" if line else "")
            self.add(getattr(exc, "id", None) or None, f"BPMN/DMN 校验失败: {message}",
                     getattr(exc, "file_name", None) or bpmn_name)
            return
        except Exception as exc:  # noqa: BLE001 - SpiffWorkflow raises many kinds on malformed models
            self.add(None, f"流程无法解析: {type(exc).__name__}: {exc}", bpmn_name)
            return
        for process in [spec, *subprocess_specs.values()]:
            for task_spec in process.task_specs.values():
                if not isinstance(task_spec, UserTask):
                    continue
                role = role_of_lane(task_spec.lane)
                if role is None:
                    self.add(task_spec.bpmn_id, "用户任务必须位于泳道中(泳道名 = 中文名 (角色代码))", bpmn_name)
                elif role not in self.known_roles:
                    self.add(task_spec.bpmn_id, f"所在泳道 {task_spec.lane!r} 对应的角色 {role!r} 不存在", bpmn_name)
        start_lane = spec.start.outputs[0].lane if spec.start.outputs else None
        if role_of_lane(start_lane) not in self.known_roles:
            first = spec.start.outputs[0].bpmn_id if spec.start.outputs else None
            self.add(first, "开始事件必须位于某个角色的泳道中(它决定谁可以发起流程)", bpmn_name)
        if self.problems:
            return
        try:
            compile_bundle(bundle_from_files(files), self.known_roles)
        except DefinitionError as exc:
            for where, reason in exc.problems or [(bpmn_name, str(exc))]:
                match = re.search(r"\[([^\]]+)\]$", where)
                self.add(match.group(1) if match else None, reason, None if match else where)


def _approves(node: etree._Element) -> bool:
    for prop in node.iterfind(f"{_q('extensionElements')}/{_q('properties', SPIFF_NS)}/{_q('property', SPIFF_NS)}"):
        if prop.get("name") == "actions":
            return "approve" in [a.strip() for a in (prop.get("value") or "").split(",")]
    return True


def _sink_components(nodes: set[str], succ: dict[str, set[str]]) -> list[str]:
    """Nodes of the strongly connected components of nodes that no edge leaves (dead ends, closed loops)."""
    reach = {n: _walk([n], {k: v & nodes for k, v in succ.items()}) for n in nodes}
    return sorted(n for n in nodes if all(n in reach[m] for m in reach[n]))


def _walk(starts: list[str], edges: dict[str, set[str]]) -> set[str]:
    seen = set(starts)
    queue = deque(starts)
    while queue:
        for nxt in edges.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


# ----------------------------------------------------------------------------- zip
def read_zip(data: bytes) -> dict[str, str]:
    """Read a procedure zip (untrusted): return draft files, or refuse it whole.

    Layout (one top-level folder optional): ``procedure.json``, ``<name>.bpmn``, ``<name>.dmn``,
    ``forms/<formKey>.json``, ``notices/<name>.(html|css|json|md)``.

    :raises DefinitionError: too large, too many entries, a zip bomb, links, absolute paths or
        ``..`` (zip slip), encrypted or duplicate entries, files of unknown kind, non-UTF-8 text.
    """
    def refuse(where: str, why: str):
        raise DefinitionError("压缩包被拒绝", [(where[:200], why)])

    if len(data) > MAX_ZIP_BYTES:
        refuse("压缩包", f"超过 {MAX_ZIP_BYTES // 1024 // 1024} MB")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        refuse("压缩包", f"不是有效的 zip 文件: {exc}")
    if len(infos) > MAX_ZIP_ENTRIES:
        refuse("压缩包", f"条目超过 {MAX_ZIP_ENTRIES} 个")
    entries: list[tuple[zipfile.ZipInfo, list[str]]] = []
    seen: set[str] = set()
    declared = 0
    for info in infos:
        name = info.filename
        if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
            refuse(name, "不允许绝对路径或反斜杠路径")
        parts = name.rstrip("/").split("/")
        if any(p in ("", ".", "..") for p in parts):
            refuse(name, "不允许 .. 或空路径段(zip slip)")
        mode = (info.external_attr >> 16) & 0o170000
        if mode == stat.S_IFLNK:
            refuse(name, "不允许符号链接")
        if info.flag_bits & 0x1:
            refuse(name, "不允许加密条目")
        if info.is_dir():
            continue
        if mode not in (0, stat.S_IFREG):
            refuse(name, "只允许普通文件")
        if name.lower() in seen:
            refuse(name, "重复的条目")
        seen.add(name.lower())
        if info.file_size > MAX_FILE_BYTES:
            refuse(name, f"文件超过 {MAX_FILE_BYTES // 1024} KB")
        if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO and info.file_size > 1024 * 1024:
            refuse(name, "压缩比异常(疑似 zip 炸弹)")
        declared += info.file_size
        if declared > MAX_ZIP_TOTAL_BYTES:
            refuse("压缩包", f"解压后超过 {MAX_ZIP_TOTAL_BYTES // 1024 // 1024} MB")
        entries.append((info, parts))
    if not entries:
        refuse("压缩包", "压缩包是空的")
    tops = {parts[0] for _info, parts in entries}
    strip = 1 if len(tops) == 1 and all(len(parts) > 1 for _info, parts in entries) else 0
    files: dict[str, str] = {}
    for info, parts in entries:
        rel = parts[strip:]
        key = _zip_key(rel)
        if key is None:
            refuse(info.filename, "不支持的文件(只接受 procedure.json、.bpmn、.dmn、forms/*.json、notices/*)")
        try:
            with archive.open(info) as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError):
            refuse(info.filename, "条目已损坏(CRC 校验失败或无法解压)")
        if len(raw) > MAX_FILE_BYTES or len(raw) != info.file_size:
            refuse(info.filename, "实际大小与声明不符")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            refuse(info.filename, "不是 UTF-8 文本")
        if key in files:
            refuse(info.filename, "重复的文件")
        files[key] = text.lstrip("\ufeff")
    return files


def _zip_key(rel: list[str]) -> str | None:
    name_re = re.compile(NAME_RE)
    if rel == ["procedure.json"]:
        return "procedure.json"
    if len(rel) == 1 and rel[0].endswith(".bpmn") and name_re.fullmatch(rel[0][:-5]):
        return f"bpmn/{rel[0]}"
    if len(rel) == 1 and rel[0].endswith(".dmn") and name_re.fullmatch(rel[0][:-4]):
        return f"dmn/{rel[0]}"
    if rel[0] == "forms" and 2 <= len(rel) <= 3 and rel[-1].endswith(".json"):
        key = "/".join([*rel[1:-1], rel[-1][:-5]])
        return f"form/{key}" if FORM_KEY_RE.fullmatch(key) else None
    if rel[0] == "notices" and len(rel) == 2 and rel[1].endswith(_TEMPLATE_SUFFIXES):
        stem = rel[1].rsplit(".", 1)[0]
        return f"template/{rel[1]}" if name_re.fullmatch(stem) else None
    return None


def write_zip(code: str, files: dict[str, str]) -> bytes:
    """A procedure folder as a zip: ``<code>/procedure.json``, diagrams, ``forms/``, ``notices/``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(files):
            if key == "procedure.json":
                path = "procedure.json"
            elif key.startswith(("bpmn/", "dmn/")):
                path = key.split("/", 1)[1]
            elif key.startswith("form/"):
                path = f"forms/{key[len('form/'):]}.json"
            elif key.startswith("template/"):
                path = f"notices/{key[len('template/'):]}"
            else:
                continue
            info = zipfile.ZipInfo(f"{code}/{path}", date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[key].encode("utf-8"))
    return buffer.getvalue()


# ----------------------------------------------------------------------------- dry run
def run_sandbox(bundle: ProcedureBundle, spec, subprocess_specs, sample: dict[str, Any], start: datetime,
                calendar: workcalendar.WorkCalendar | None = None) -> DryRunResult:
    """Run a compiled bundle in memory with sample data under a FixedClock; nothing is stored.

    Sample: ``{"data": {...}, "steps": {"<user task id>": {...}}}`` — each user task is approved with
    the values of its form's fields found in ``steps[id]`` or ``data`` (validated against the form);
    a waiting timer is fired by moving the sandbox clock to its due time.
    """
    data = sample.get("data") or {}
    per_step = sample.get("steps") or {}
    clock = FixedClock(start)
    steps: list[DryRunStep] = []
    result = DryRunResult(False, "running", [], steps, started_at=start)
    settings = bundle.settings
    with clock_mod.using(clock), workcalendar.using(calendar or workcalendar.WorkCalendar()), \
            countersign.using(lambda role, _region: [f"试运行{role}{i}" for i in (1, 2, 3)]):
        workflow = BpmnWorkflow(spec, subprocess_specs, script_engine=SCRIPT_ENGINE)
        initial = {"case_id": 0, "subject_name": "试运行对象", "subject_kind": bundle.subject_kind,
                   "region_code": "000000000000", "region_name": "试运行", "settings": settings, **data}
        for task in workflow.get_tasks(state=TaskState.READY):
            task.data.update(initial)
        current = None
        try:
            for _ in range(MAX_DRY_RUN_STEPS):
                current = None
                workflow.refresh_timers()
                workflow.do_engine_steps()
                if workflow.is_completed():
                    result.completed = True
                    break
                ready = workflow.get_tasks(state=TaskState.READY, manual=True)
                if ready:
                    current = ready[0]
                    steps.append(_sandbox_user_task(bundle, current, data, per_step))
                    continue
                timers = [t for t in workflow.get_tasks(state=TaskState.WAITING) if _is_timer(t)]
                dues = [(d, t) for t in timers if (d := _timer_due(t)) is not None]
                if not dues:
                    result.waiting = [t.task_spec.bpmn_name or t.task_spec.bpmn_id
                                      for t in workflow.get_tasks(state=TaskState.WAITING)
                                      if getattr(t.task_spec, "bpmn_id", None)]
                    result.error = "流程在等待外部事件(如信号或消息),试运行到此为止"
                    break
                due, timer = min(dues, key=lambda pair: pair[0])
                current = timer
                clock.set(max(clock.now(), due) + timedelta(seconds=1))
                steps.append(DryRunStep(timer.task_spec.bpmn_id, timer.task_spec.bpmn_name or timer.task_spec.bpmn_id,
                                        "timer", f"定时到期 {due.isoformat()}"))
            else:
                result.error = f"超过 {MAX_DRY_RUN_STEPS} 步仍未结束(可能有死循环)"
        except ValidationError as exc:
            result.error = f"{exc}: " + ";".join(exc.errors.values())
            result.error_element = current.task_spec.bpmn_id if current is not None else None
        except (SpiffWorkflowException, UnsafeExpressionError, CaseExecutionError, NameError, TypeError,
                ValueError, KeyError) as exc:
            failed = getattr(exc, "task", None) or current
            result.error = f"流程无法继续: {exc}"
            result.error_element = getattr(getattr(failed, "task_spec", None), "bpmn_id", None)
        result.path = _completed_path(workflow.get_tasks(state=TaskState.COMPLETED))
        result.status = _sandbox_status(workflow, result.completed)
        result.ended_at = clock.now()
    return result


def _sandbox_user_task(bundle: ProcedureBundle, task, data: dict[str, Any], per_step: dict[str, Any]) -> DryRunStep:
    spec = task.task_spec
    props = spec_properties(spec)
    schema = json.loads(bundle.files.get(f"form/{props.get('formKey')}", '{"components": []}'))
    values = {**data, **(per_step.get(spec.bpmn_id) or {})}
    keys = {c["key"] for c in forms_mod.input_components(schema)}
    cleaned = forms_mod.validate(schema, {k: v for k, v in values.items() if k in keys})
    task.data.update(cleaned)
    task.data["decision"] = "approve"
    task.data["last_opinion"] = "试运行"
    if countersign.instance_parent(task) is not None:  # each sample signer agrees
        countersign.record_vote(task, "approve", "试运行")
    task.run()
    role = role_of_lane(spec.lane)
    filled = "、".join(f"{k}={v}" for k, v in cleaned.items())
    return DryRunStep(spec.bpmn_id, spec.bpmn_name or spec.bpmn_id, "user_task",
                      f"{role} 通过" + (f";{filled}" if filled else ""))


def _sandbox_status(workflow: BpmnWorkflow, completed: bool) -> str:
    latest, latest_time = None, -1.0
    for task in workflow.get_tasks(state=TaskState.COMPLETED):
        value = spec_properties(task.task_spec).get("caseStatus")
        if value and task.last_state_change > latest_time:
            latest, latest_time = value, task.last_state_change
    if latest:
        return latest
    return "completed" if completed else "running"


# ----------------------------------------------------------------------------- the service
class StudioService:
    """Studio operations for admins. Takes its session and clock; never commits."""

    def __init__(self, session: Session, clock, definitions: DefinitionService | None = None,
                 cases: CaseService | None = None):
        self.session = session
        self.clock = clock
        self.definitions = definitions or DefinitionService(session, clock)
        self.cases = cases or CaseService(session, clock, self.definitions)
        self._roots: list[str] | None = None

    # -- access and audit
    @staticmethod
    def require_admin(actor: Actor) -> None:
        if not actor.is_admin:
            raise ForbiddenError("只有管理员可以使用流程设计")

    # -- ownership (the rule itself is engine/access/policy.py may_change_procedure)
    def root_regions(self) -> list[str]:
        if self._roots is None:
            self._roots = list(self.session.scalars(select(Region.code).where(Region.parent_code.is_(None))))
        return self._roots

    def may_change(self, actor: Actor, owner_region_code: str | None) -> bool:
        return AccessPolicy.may_change_procedure(actor, owner_region_code, self.root_regions())

    def owner_name(self, owner_region_code: str | None) -> str:
        if owner_region_code is None:
            return SYSTEM_OWNER_NAME
        region = self.session.get(Region, owner_region_code)
        return region.name if region else owner_region_code

    def owner_choices(self, actor: Actor) -> list[tuple[str, str]]:
        """(owner code, name) a new procedure of this admin may belong to: the region of each admin grant,
        preceded by system-wide (code "") for an admin covering all regions. The first is the default."""
        self.require_admin(actor)
        choices = [("", SYSTEM_OWNER_NAME)] if self.may_change(actor, None) else []
        for grant in actor.admin_grants:
            if grant.region_code not in {c for c, _n in choices}:
                choices.append((grant.region_code, self.owner_name(grant.region_code)))
        return choices

    def _new_owner(self, actor: Actor, owner_region_code: str | None) -> str | None:
        """The owner of a new procedure code: the chosen one of ``owner_choices`` (default the first).

        :raises ValidationError: not one of the admin's choices.
        """
        choices = [code for code, _name in self.owner_choices(actor)]
        chosen = choices[0] if owner_region_code is None else owner_region_code.strip()
        if chosen not in choices:
            raise ValidationError("归属地区无效", {"owner_region_code": "只能选择您有管理员权限的地区"})
        return chosen or None

    def procedure_owner(self, code: str) -> tuple[bool, str | None]:
        """(whether a procedure with this code exists, its owner region)."""
        procedure = self.session.scalar(select(Procedure).where(Procedure.code == code))
        return (procedure is not None, procedure.owner_region_code if procedure else None)

    def draft_owner(self, draft: ProcedureDraft) -> str | None:
        """A draft's scope: its procedure's owner when the code is deployed, else the draft's own."""
        exists, owner = self.procedure_owner(draft.code)
        return owner if exists else draft.owner_region_code

    def _require_change(self, actor: Actor, owner_region_code: str | None, what: str) -> None:
        """:raises ForbiddenError: actor may not change a procedure with this owner."""
        self.require_admin(actor)
        if not self.may_change(actor, owner_region_code):
            if owner_region_code is None:
                raise ForbiddenError(f"{what}是系统内置流程,只有系统管理员可以修改;"
                                     "如需调整,请用“复制为新流程”复制为本地区的新流程")
            raise ForbiddenError(f"{what}属于{self.owner_name(owner_region_code)},您没有修改它的权限")

    def audit(self, actor: Actor | None, action: str, step: str | None = None, detail: dict[str, Any] | None = None,
              opinion: str | None = None, case_id: int | None = None, client_addr: str | None = None) -> None:
        self.session.add(AuditEvent(case_id=case_id, task_id=None, user_id=actor.user_id if actor else None,
                                    action=action[:40], step=(step or "")[:200] or None, opinion=opinion,
                                    data_diff=detail, created_at=self.clock.now(), client_addr=client_addr))
        self.session.flush()

    def known_roles(self) -> set[str]:
        return set(self.session.scalars(select(Role.code)))

    def roles(self) -> list[Role]:
        return list(self.session.scalars(select(Role).order_by(Role.code)))

    def known_procedures(self) -> set[str]:
        return set(self.session.scalars(select(Procedure.code)))

    def linkable_procedures(self, owner_region_code: str | None) -> set[str]:
        """Codes a procedure owned by owner_region_code may start as linked cases: those serving every
        region it serves (shipped ones; a county's own when the owner lies inside that county)."""
        rows = self.session.execute(select(Procedure.code, Procedure.owner_region_code)).all()
        return {code for code, owner in rows
                if owner is None or (owner_region_code is not None and procedure_serves(owner, owner_region_code))}

    # -- overview
    def overview(self, actor: Actor) -> list[ProcedureSummary]:
        """The procedures this admin may change or whose cases run in their regions (shipped ones included),
        each with its owner, what the admin may do with it, its versions (deployed = used by new cases,
        retired = older), running and total case counts per version in the admin's regions, and the open
        drafts the admin may change; drafts of new procedures last."""
        self.require_admin(actor)
        counts: dict[tuple[int, str], int] = {}
        mine = or_(*[Case.region_code.startswith(g.prefix) for g in actor.admin_grants])
        for version_id, status, count in self.session.execute(
                select(Case.procedure_version_id, Case.status, func.count(Case.id)).where(mine)
                .group_by(Case.procedure_version_id, Case.status)):
            key = (version_id, "running" if status == CaseStatus.running else "other")
            counts[key] = counts.get(key, 0) + count
        drafts = self.drafts(actor)
        summaries = []
        for procedure in self.session.scalars(select(Procedure).order_by(Procedure.code)):
            owner = procedure.owner_region_code
            may_change = self.may_change(actor, owner)
            if not (may_change or actor.may_use_procedure(owner)):
                continue  # another region's procedure: not this admin's business
            versions = []
            for index, version in enumerate(reversed(procedure.versions)):
                running = counts.get((version.id, "running"), 0)
                versions.append(VersionSummary(version, "deployed" if index == 0 else "retired", running,
                                               running + counts.get((version.id, "other"), 0)))
            summaries.append(ProcedureSummary(procedure, versions, [d for d in drafts if d.code == procedure.code],
                                              self.owner_name(owner), may_change, may_change or owner is None))
        known = {s.procedure.code for s in summaries}
        for code in sorted({d.code for d in drafts} - known):
            first = next(d for d in drafts if d.code == code)
            summaries.append(ProcedureSummary(Procedure(code=code, name=first.name), [],
                                              [d for d in drafts if d.code == code],
                                              self.owner_name(first.owner_region_code), True, False))
        return summaries

    def drafts(self, actor: Actor) -> list[ProcedureDraft]:
        """The open drafts this admin may change (each draft's scope is ``draft_owner``)."""
        self.require_admin(actor)
        rows = self.session.scalars(select(ProcedureDraft).where(ProcedureDraft.status != "discarded")
                                    .order_by(ProcedureDraft.updated_at.desc(), ProcedureDraft.id.desc()))
        return [d for d in rows if self.may_change(actor, self.draft_owner(d))]

    def version(self, actor: Actor, version_id: int) -> ProcedureVersion:
        """A version of a procedure this admin may change.

        :raises NotFoundError: no such version.
        :raises ForbiddenError: the procedure belongs to another region, or is shipped and the admin
            does not cover all regions.
        """
        self.require_admin(actor)
        version = self.session.get(ProcedureVersion, version_id)
        if version is None:
            raise NotFoundError("流程版本不存在")
        self._require_change(actor, version.procedure.owner_region_code, f"流程「{version.procedure.name}」")
        return version

    # -- drafts
    def get_draft(self, actor: Actor, draft_id: int) -> ProcedureDraft:
        self.require_admin(actor)
        draft = self.session.get(ProcedureDraft, draft_id)
        if draft is None or draft.status == "discarded":
            raise NotFoundError("草稿不存在")
        self._require_change(actor, self.draft_owner(draft), f"草稿「{draft.name}」({draft.code})")
        return draft

    def _new_draft(self, actor: Actor, code: str, name: str, files: dict[str, str], source: str,
                   base: ProcedureVersion | None = None, owner_region_code: str | None = None) -> ProcedureDraft:
        now = self.clock.now()
        draft = ProcedureDraft(code=code, name=name[:120], status="editing", source=source, files=files,
                               owner_region_code=owner_region_code,
                               base_version_id=base.id if base else None, lock_version=1,
                               created_by_id=actor.user_id, updated_by_id=actor.user_id,
                               created_at=now, updated_at=now)
        self.session.add(draft)
        self.session.flush()
        return draft

    def _check_new_code(self, code: str, name: str, errors: dict[str, str]) -> None:
        if not CODE_RE.fullmatch(code):
            errors["code"] = "流程代码只能是小写字母开头的字母、数字、下划线(2–64 位)"
        elif code in self.known_procedures():
            errors["code"] = "已有此代码的流程:请在列表中打开它的版本来修改,或换一个代码"
        if not name or len(name) > 120:
            errors["name"] = "请填写流程名称(不超过 120 字)"

    def create_draft(self, actor: Actor, code: str, name: str, subject_kind: str = "household",
                     client_addr: str | None = None, owner_region_code: str | None = None) -> ProcedureDraft:
        """A new procedure from an empty diagram, owned by owner_region_code (one of ``owner_choices``).

        :raises ValidationError: bad code, name or owner, or a procedure with that code exists (open it instead).
        """
        self.require_admin(actor)
        code, name = (code or "").strip(), (name or "").strip()
        errors: dict[str, str] = {}
        self._check_new_code(code, name, errors)
        if subject_kind not in SUBJECT_KINDS:
            errors["subject_kind"] = "办理对象只能是农户或项目"
        if errors:
            raise ValidationError("无法新建流程", errors)
        owner = self._new_owner(actor, owner_region_code)
        manifest = {"code": code, "name": name, "subject_kind": subject_kind, "process_id": code,
                    "description": "", "settings": {"day_kind": "natural"}}
        files = {"procedure.json": json.dumps(manifest, ensure_ascii=False, indent=2),
                 f"bpmn/{code}.bpmn": empty_bpmn(code, name)}
        draft = self._new_draft(actor, code, name, files, "new", owner_region_code=owner)
        self.audit(actor, "studio_draft_created", f"{name}({code})",
                   {"draft_id": draft.id, "owner_region_code": owner}, client_addr=client_addr)
        return draft

    def copy_version(self, actor: Actor, version_id: int, code: str, name: str, client_addr: str | None = None,
                     owner_region_code: str | None = None) -> ProcedureDraft:
        """A draft of a new procedure (code, name, owned by one of ``owner_choices``) holding a copy of a
        deployed version: how a county admin adapts a shipped procedure.

        The copy keeps the diagram, forms, decisions and notice templates; only ``procedure.json`` gets the new code and name.

        :raises NotFoundError: no such version.
        :raises ForbiddenError: the version belongs to a region the admin may not change.
        :raises ValidationError: bad code, name or owner, or the code is taken.
        """
        self.require_admin(actor)
        version = self.session.get(ProcedureVersion, version_id)
        if version is None:
            raise NotFoundError("流程版本不存在")
        source_owner = version.procedure.owner_region_code
        if source_owner is not None:
            self._require_change(actor, source_owner, f"流程「{version.procedure.name}」")
        code, name = (code or "").strip(), (name or "").strip()
        errors: dict[str, str] = {}
        self._check_new_code(code, name, errors)
        if errors:
            raise ValidationError("无法复制流程", errors)
        owner = self._new_owner(actor, owner_region_code)
        files = copy_files(self.definitions.files(version), code, name)
        draft = self._new_draft(actor, code, name, files, "version", version, owner_region_code=owner)
        self.audit(actor, "studio_copied", f"{version.procedure.name} v{version.version} → {name}({code})",
                   {"draft_id": draft.id, "version_id": version.id, "from": version.procedure.code,
                    "from_owner_region_code": source_owner, "owner_region_code": owner}, client_addr=client_addr)
        return draft

    def open_version(self, actor: Actor, version_id: int, client_addr: str | None = None) -> ProcedureDraft:
        """A draft holding a copy of a deployed version (shipped procedures included), its notice templates too."""
        version = self.version(actor, version_id)
        files = dict(self.definitions.files(version))
        owner = version.procedure.owner_region_code
        draft = self._new_draft(actor, version.procedure.code, version.procedure.name, files, "version", version,
                                owner_region_code=owner)
        self.audit(actor, "studio_draft_opened", f"{version.procedure.name} v{version.version}",
                   {"draft_id": draft.id, "version_id": version.id, "owner_region_code": owner},
                   client_addr=client_addr)
        return draft

    def save_draft(self, actor: Actor, draft_id: int, files: Any, lock_version: int | None,
                   client_addr: str | None = None) -> ProcedureDraft:
        """Replace a draft's files. Well-formedness is checked here (hostile XML, broken JSON are refused
        and nothing changes); the deploy rules are checked by ``validate``.

        :raises ConflictError: someone saved the draft since lock_version.
        :raises DefinitionError: the files are not acceptable at all.
        """
        draft = self.get_draft(actor, draft_id)
        if lock_version is not None and lock_version != draft.lock_version:
            raise ConflictError("草稿已被他人修改,请刷新后再保存")
        files = check_file_set(files)
        parse_well_formed(files)
        files = _sync_process_id(files)
        manifest = json.loads(files["procedure.json"])
        if not isinstance(manifest, dict) or manifest.get("code") != draft.code:
            raise DefinitionError("草稿文件无效", [("procedure.json", f"流程代码不能修改(应为 {draft.code})")])
        draft.files = files
        draft.name = str(manifest.get("name") or draft.name)[:120]
        draft.lock_version += 1
        draft.status = "editing"
        draft.updated_by_id = actor.user_id
        draft.updated_at = self.clock.now()
        self.session.flush()
        self.audit(actor, "studio_draft_saved", f"{draft.name}({draft.code})",
                   {"draft_id": draft.id, "lock_version": draft.lock_version, "files": sorted(files),
                    "owner_region_code": self.draft_owner(draft)}, client_addr=client_addr)
        return draft

    def discard_draft(self, actor: Actor, draft_id: int, client_addr: str | None = None) -> None:
        draft = self.get_draft(actor, draft_id)
        draft.status = "discarded"
        draft.updated_at = self.clock.now()
        self.audit(actor, "studio_draft_discarded", f"{draft.name}({draft.code})",
                   {"draft_id": draft.id, "owner_region_code": self.draft_owner(draft)}, client_addr=client_addr)

    # -- validation and deploy
    def validate_files(self, files: dict[str, str], owner_region_code: str | None = None) -> list[Problem]:
        """Problems of a draft's files; ``owner_region_code`` is the draft's scope (None: system-wide)."""
        return DraftChecker(files, self.known_roles(), self.known_procedures(), self.clock, self.passed_in(),
                            self.linkable_procedures(owner_region_code)).run()

    def passed_in(self) -> dict[str, set[str]]:
        """Procedure code → data keys other procedures pass when they start it (``startsProcedure`` +
        ``passData`` in their newest versions): names a draft's expressions may read."""
        found: dict[str, set[str]] = {}
        for version in self.definitions.list_latest():
            for name, text in self.definitions.files(version).items():
                if not name.startswith("bpmn/"):
                    continue
                for node in safe_xml(text, name).iter():
                    if not isinstance(node.tag, str) or not node.get("id"):
                        continue
                    props = {p.get("name"): p.get("value") or "" for p in node.findall(
                        f"{_q('extensionElements')}/{_q('properties', SPIFF_NS)}/{_q('property', SPIFF_NS)}")}
                    if props.get("startsProcedure"):
                        keys = {k.strip() for k in props.get("passData", "").split(",") if k.strip()}
                        found.setdefault(props["startsProcedure"], set()).update(keys)
        return found

    def validate_draft(self, actor: Actor, draft_id: int, client_addr: str | None = None) -> list[Problem]:
        draft = self.get_draft(actor, draft_id)
        problems = self.validate_files(draft.files, self.draft_owner(draft))
        self.audit(actor, "studio_validated", f"{draft.name}({draft.code})",
                   {"draft_id": draft.id, "problems": len(problems), "owner_region_code": self.draft_owner(draft)},
                   client_addr=client_addr)
        return problems

    def deploy_draft(self, actor: Actor, draft_id: int, client_addr: str | None = None) -> tuple[ProcedureVersion, bool]:
        """Deploy a valid draft; return (version, created). Identical content returns the existing version.

        :raises DefinitionError: the draft has problems (each naming its element); nothing is stored.
        """
        draft = self.get_draft(actor, draft_id)
        problems = self.validate_files(draft.files, self.draft_owner(draft))
        if problems:
            raise DraftProblems("草稿未通过校验,不能发布", problems)
        bundle = bundle_from_files(draft.files)
        exists, owner = self.procedure_owner(draft.code)
        if not exists:
            owner = draft.owner_region_code
        before = self.session.scalar(select(func.count(ProcedureVersion.id)))
        version = self.definitions.deploy(bundle, actor.username, self.known_roles())
        if not exists:  # a new procedure belongs to its draft's region
            version.procedure.owner_region_code = owner
        created = self.session.scalar(select(func.count(ProcedureVersion.id))) != before
        draft.status = "deployed"
        draft.deployed_version_id = version.id
        draft.updated_at = self.clock.now()
        self.audit(actor, "studio_deployed", f"{bundle.name}({bundle.code}) v{version.version}",
                   {"draft_id": draft.id, "version_id": version.id, "version": version.version, "created": created,
                    "content_hash": version.content_hash, "owner_region_code": owner}, client_addr=client_addr)
        return version, created

    # -- zip
    def export_draft(self, actor: Actor, draft_id: int, client_addr: str | None = None) -> tuple[str, bytes]:
        draft = self.get_draft(actor, draft_id)
        self.audit(actor, "studio_exported", f"{draft.name}({draft.code}) 草稿",
                   {"draft_id": draft.id, "owner_region_code": self.draft_owner(draft)}, client_addr=client_addr)
        return f"{draft.code}-draft{draft.id}.zip", write_zip(draft.code, draft.files)

    def export_version(self, actor: Actor, version_id: int, client_addr: str | None = None) -> tuple[str, bytes]:
        version = self.version(actor, version_id)
        code = version.procedure.code
        files = self.definitions.files(version)
        self.audit(actor, "studio_exported", f"{version.procedure.name}({code}) v{version.version}",
                   {"version_id": version.id, "owner_region_code": version.procedure.owner_region_code},
                   client_addr=client_addr)
        return f"{code}-v{version.version}.zip", write_zip(code, files)

    def import_zip(self, actor: Actor, data: bytes, client_addr: str | None = None,
                   owner_region_code: str | None = None) -> tuple[ProcedureDraft, list[Problem]]:
        """Import a shared procedure zip as a new draft and validate it like any draft. A zip of an existing
        code becomes a draft of that procedure (the admin must be allowed to change it); a new code is owned
        by owner_region_code (one of ``owner_choices``).

        :raises DefinitionError: the zip or a file in it is refused outright; nothing is stored.
        :raises ForbiddenError: the code is another region's procedure, or shipped and the admin does not
            cover all regions; nothing is stored.
        """
        self.require_admin(actor)
        files = read_zip(data)
        files = check_file_set(files)
        parse_well_formed(files)
        files = _sync_process_id(files)
        manifest = json.loads(files["procedure.json"])
        code = str(manifest.get("code", "")) if isinstance(manifest, dict) else ""
        if not CODE_RE.fullmatch(code):
            raise DefinitionError("压缩包被拒绝", [("procedure.json", "流程代码无效")])
        exists, owner = self.procedure_owner(code)
        if exists:
            self._require_change(actor, owner, f"压缩包中的流程代码 {code} 对应的流程")
        else:
            owner = self._new_owner(actor, owner_region_code)
        draft = self._new_draft(actor, code, str(manifest.get("name") or code), files, "import",
                                owner_region_code=owner)
        problems = self.validate_files(files, owner)
        self.audit(actor, "studio_imported", f"{draft.name}({code})",
                   {"draft_id": draft.id, "files": sorted(files), "problems": len(problems),
                    "owner_region_code": owner}, client_addr=client_addr)
        return draft, problems

    # -- dry run
    def dry_run(self, actor: Actor, draft_id: int, sample: Any, client_addr: str | None = None) -> DryRunResult:
        """Run a draft in a sandbox with sample data (see ``run_sandbox``).

        :raises DefinitionError: the draft has problems; fix them first.
        :raises ValidationError: the sample is not ``{"data": {...}, "steps": {...}}``.
        """
        draft = self.get_draft(actor, draft_id)
        sample = _checked_sample(sample)
        problems = self.validate_files(draft.files, self.draft_owner(draft))
        if problems:
            raise DraftProblems("草稿未通过校验,不能试运行", problems)
        bundle = bundle_from_files(draft.files)
        spec, subprocess_specs = compile_bundle(bundle, self.known_roles())
        result = run_sandbox(bundle, spec, subprocess_specs, sample, self.clock.now(), self.cases.calendar)
        self.audit(actor, "studio_dry_run", f"{draft.name}({draft.code})",
                   {"draft_id": draft.id, "path": result.path, "status": result.status, "error": result.error,
                    "owner_region_code": self.draft_owner(draft)}, client_addr=client_addr)
        return result

    # -- moving running cases between versions
    def _versions_pair(self, actor: Actor, from_id: int, to_id: int) -> tuple[ProcedureVersion, ProcedureVersion]:
        self.require_admin(actor)
        old, new = self.session.get(ProcedureVersion, from_id), self.session.get(ProcedureVersion, to_id)
        if old is None or new is None:
            raise NotFoundError("流程版本不存在")
        if old.procedure_id != new.procedure_id or old.id == new.id:
            raise ValidationError("版本无效", {"to": "只能迁移到同一流程的另一个版本"})
        self._require_change(actor, old.procedure.owner_region_code, f"流程「{old.procedure.name}」")
        return old, new

    def _running_cases(self, actor: Actor, version: ProcedureVersion) -> list[Case]:
        rows = self.session.scalars(select(Case).where(Case.procedure_version_id == version.id,
                                                       Case.status == CaseStatus.running).order_by(Case.id))
        return [c for c in rows if AccessPolicy.admin_covers(actor, c.region_code)]

    def migration_preview(self, actor: Actor, from_id: int, to_id: int) -> list[MigrationCheck]:
        """For each running case of the old version in the admin's regions: can it move, and if not why.
        Each case is migrated in memory only (nothing is written)."""
        old, new = self._versions_pair(actor, from_id, to_id)
        return [self._trial(case, new)[0] for case in self._running_cases(actor, old)]

    def migrate_cases(self, actor: Actor, from_id: int, to_id: int, case_ids: list[int], reason: str,
                      client_addr: str | None = None) -> list[MigrationCheck]:
        """Move the chosen running cases to the new version where SpiffWorkflow's diff allows it.

        Cases that cannot move stay as they are (their check says why). Each moved case gets a
        ``version_migrated`` event in its history.

        :raises ValidationError: no reason given, or no cases chosen.
        """
        old, new = self._versions_pair(actor, from_id, to_id)
        reason = (reason or "").strip()
        if not reason:
            raise ValidationError("请填写迁移原因", {"reason": "必须填写迁移原因"})
        if not case_ids:
            raise ValidationError("请选择案件", {"case_ids": "请至少选择一个案件"})
        results: list[MigrationCheck] = []
        for case_id in sorted(set(case_ids)):
            case = self.cases._lock_case(case_id)
            if case.procedure_version_id != old.id or case.status != CaseStatus.running \
                    or not AccessPolicy.admin_covers(actor, case.region_code):
                results.append(MigrationCheck(case_id, case.title, case.region_code, [], False,
                                              ["案件不在此版本上运行,或不在您的管辖范围内"]))
                continue
            expected = case.lock_version
            check, workflow = self._trial(case, new)
            if not check.movable:
                results.append(check)
                continue
            case.procedure_version_id = new.id
            case.version = new
            self.session.flush()
            self.cases._save(case, workflow, expected_lock=expected)
            self._refresh_open_rows(case, workflow)
            self.session.add(AuditEvent(
                case_id=case.id, user_id=actor.user_id, action="version_migrated",
                step=f"版本迁移 v{old.version} → v{new.version}", opinion=reason,
                data_diff={"procedure": new.procedure.code, "from_version": old.version, "to_version": new.version,
                           "current_steps": check.current_steps},
                created_at=self.clock.now(), client_addr=client_addr))
            check.moved = True
            results.append(check)
        self.audit(actor, "studio_migrated", f"{new.procedure.name} v{old.version} → v{new.version}",
                   {"moved": [r.case_id for r in results if r.moved],
                    "refused": {str(r.case_id): r.reasons for r in results if not r.moved},
                    "owner_region_code": new.procedure.owner_region_code},
                   opinion=reason, client_addr=client_addr)
        self.session.flush()
        return results

    def _trial(self, case: Case, new: ProcedureVersion) -> tuple[MigrationCheck, BpmnWorkflow | None]:
        """Migrate one case's workflow in memory; (check, migrated workflow or None)."""
        open_steps = [t.title for t in self.session.scalars(
            select(TaskRow).where(TaskRow.case_id == case.id, TaskRow.status == TaskStatus.open))]
        check = MigrationCheck(case.id, case.title, case.region_code, open_steps, False, [])
        new_spec, new_subs = self.definitions.specs(new)
        with self.cases._context():
            try:
                workflow = self.cases._load(case)
            except Exception as exc:  # noqa: BLE001 - a case that cannot load cannot move
                check.reasons.append(f"案件状态无法读取: {exc}")
                return check, None
            top, subs = diff_workflow(FULL_SERIALIZER.registry, workflow, new_spec, new_subs)
            live = TaskState.FINISHED_MASK | TaskState.WAITING | TaskState.READY | TaskState.STARTED
            for task in top.removed:
                if task.has_state(live):
                    check.reasons.append(f"{_state_word(task)}的步骤 {_task_label(task)} 在新版本中不存在")
            for sp_id, sp_diff in subs.items():
                sub = workflow.subprocesses[sp_id]
                if sp_diff is None:
                    check.reasons.append(f"子流程 {sub.spec.name} 在新版本中不存在")
                    continue
                for task in sp_diff.removed:
                    if task.has_state(live):
                        check.reasons.append(f"{_state_word(task)}的步骤 {_task_label(task)} 在新版本中不存在")
            if check.reasons:
                return check, None
            kept = _keep_waiting_state(workflow)
            migrate_workflow(top, workflow, new_spec)
            workflow.subprocess_specs = new_subs
            for sp_id, sp_diff in subs.items():
                sub = workflow.subprocesses.get(sp_id)
                if sub is not None:
                    migrate_workflow(sp_diff, sub, new_subs[sub.spec.name])
            _prune_event_manager(workflow)
            _restore_waiting_state(workflow, kept)
            try:
                self.cases._advance(workflow, case)
            except CaseExecutionError as exc:
                check.reasons.append(f"在新版本上无法继续: {exc}")
                return check, None
            stale = _tasks_not_in(workflow, new_spec, new_subs)
            if stale:
                check.reasons.append(f"步骤 {', '.join(sorted(stale))} 无法对应到新版本")
                return check, None
            try:
                load_state(dump_state(workflow), SERIALIZER_VERSION, (new_spec, new_subs), lambda: new.spec_json)
            except Exception as exc:  # noqa: BLE001 - a state that cannot round-trip must not be saved
                check.reasons.append(f"迁移后的状态无法保存: {exc}")
                return check, None
        check.movable = True
        return check, workflow

    def _refresh_open_rows(self, case: Case, workflow: BpmnWorkflow) -> None:
        """Open task rows that survived the move take their step's title, form, actions and role from
        the new version."""
        ready = {str(t.id): t for t in workflow.get_tasks(state=TaskState.READY, manual=True)}
        for row in self.session.scalars(select(TaskRow).where(TaskRow.case_id == case.id,
                                                              TaskRow.status == TaskStatus.open)):
            task = ready.get(row.spiff_task_id)
            if task is None:
                continue
            spec = task.task_spec
            role = role_of_lane(spec.lane)
            level = self.cases.role_levels.get(role or "")
            if level is None:
                continue
            row.title = spec.bpmn_name or spec.bpmn_id
            row.spec_name = spec.bpmn_id
            row.lane = spec.lane
            row.role_code = role
            row.scope_code = scope_for(case.region_code, level)
            row.form_key = spec_properties(spec).get("formKey")
            row.actions = ",".join(task_actions(spec))
        self.session.flush()


# ----------------------------------------------------------------------------- helpers
def copy_files(files: dict[str, str], code: str, name: str) -> dict[str, str]:
    """A version's files as a new procedure: procedure.json with the new code and name (form keys and the
    process id may keep the source's names; nothing requires them to match the code)."""
    manifest = json.loads(files["procedure.json"])
    manifest.update(code=code, name=name)
    return {**files, "procedure.json": json.dumps(manifest, ensure_ascii=False, indent=2)}


def _sync_process_id(files: dict[str, str]) -> dict[str, str]:
    """Keep procedure.json's process_id pointing at the diagram's process when there is exactly one
    (bpmn-js keeps the process id when a pool is drawn, but an imported diagram may differ)."""
    bpmn_key = next(k for k in files if k.startswith("bpmn/"))
    root = safe_xml(files[bpmn_key], bpmn_key)
    processes = [p.get("id") for p in root.findall(_q("process"))]
    try:
        manifest = json.loads(files["procedure.json"])
    except ValueError:
        return files
    if isinstance(manifest, dict) and len(processes) == 1 and manifest.get("process_id") != processes[0]:
        manifest["process_id"] = processes[0]
        files = {**files, "procedure.json": json.dumps(manifest, ensure_ascii=False, indent=2)}
    return files


def _checked_sample(sample: Any) -> dict[str, Any]:
    if sample is None:
        sample = {}
    if not isinstance(sample, dict):
        raise ValidationError("样例数据无效", {"sample": "样例数据必须是 JSON 对象"})
    if len(json.dumps(sample, ensure_ascii=False).encode("utf-8")) > MAX_SAMPLE_BYTES:
        raise ValidationError("样例数据过大", {"sample": f"不能超过 {MAX_SAMPLE_BYTES // 1024} KB"})
    if set(sample) - {"data", "steps"}:
        sample = {"data": sample}
    data, steps = sample.get("data") or {}, sample.get("steps") or {}
    if not isinstance(data, dict) or not isinstance(steps, dict) or not all(isinstance(v, dict) for v in steps.values()):
        raise ValidationError("样例数据无效", {"sample": "格式应为 {\"data\": {...}, \"steps\": {\"步骤id\": {...}}}"})
    for key in data:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", str(key)) or key in ENGINE_KEYS:
            raise ValidationError("样例数据无效", {"sample": f"字段名 {key!r} 不允许"})
    return {"data": data, "steps": steps}


def _task_label(task) -> str:
    spec = task.task_spec
    return f"{getattr(spec, 'bpmn_name', None) or ''}[{getattr(spec, 'bpmn_id', None) or spec.name}]"


def _state_word(task) -> str:
    if task.has_state(TaskState.COMPLETED):
        return "已完成"
    if task.has_state(TaskState.READY | TaskState.STARTED):
        return "正在办理"
    if task.has_state(TaskState.WAITING):
        return "正在等待"
    return "已取消" if task.has_state(TaskState.CANCELLED) else "当前"


def _all_tasks(workflow: BpmnWorkflow):
    yield from workflow.tasks.values()
    for sub in workflow.subprocesses.values():
        yield from sub.tasks.values()


def _keep_waiting_state(workflow: BpmnWorkflow) -> dict[Any, tuple[str, str, Any, dict[str, Any]]]:
    """Data and frozen timer due values of ready and waiting tasks, which migration resets."""
    kept = {}
    for task in _all_tasks(workflow):
        if task.has_state(TaskState.READY | TaskState.WAITING):
            event_def = getattr(task.task_spec, "event_definition", None)
            kept[task.id] = (task.task_spec.name, getattr(event_def, "expression", None),
                             deepcopy(task.internal_data.get("event_value")), deepcopy(task.data))
    return kept


def _restore_waiting_state(workflow: BpmnWorkflow, kept) -> None:
    """Give reset tasks back their data, and timers whose expression did not change their due time
    (a 公示 that had run five of seven days must not start again from zero)."""
    for task in _all_tasks(workflow):
        if task.id not in kept:
            continue
        name, expression, event_value, data = kept[task.id]
        if task.task_spec.name != name:
            continue
        task.data = data
        event_def = getattr(task.task_spec, "event_definition", None)
        if event_value is not None and _is_timer(task) and getattr(event_def, "expression", None) == expression:
            task.internal_data["event_value"] = event_value


def _tasks_not_in(workflow: BpmnWorkflow, spec, subprocess_specs) -> set[str]:
    stale = set()
    for task in workflow.tasks.values():
        if spec.task_specs.get(task.task_spec.name) is not task.task_spec:
            stale.add(_task_label(task))
    for sub in workflow.subprocesses.values():
        sub_spec = subprocess_specs.get(sub.spec.name)
        for task in sub.tasks.values():
            if sub_spec is None or sub_spec.task_specs.get(task.task_spec.name) is not task.task_spec:
                stale.add(_task_label(task))
    return stale

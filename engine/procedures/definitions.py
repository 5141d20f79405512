"""Procedure definitions: read a folder, validate it as untrusted input, deploy a version.

A procedure folder in ``workflows/<code>/`` holds ``procedure.json`` (code, Chinese name,
subject kind, process id, settings), its BPMN and DMN files; the forms its user tasks name
(``formKey``) live in ``forms/``. Every file of its ``notices/`` folder (``notices.json``, the notice
kinds it issues, and their HTML/CSS templates) is part of the version as ``template/<name>``: deploy
checks each issuance step's ``noticeKind`` against ``template/notices.json``, and a notice is rendered
from the templates of the procedure's current version (engine/procedures/notice_catalog.py), so a procedure made in the
studio, with no folder on disk, issues its own notices. Deploying content that changed (a template
included) makes a new version (content-hashed); identical content returns the existing version.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.core.errors import DefinitionError, NotFoundError, UnsafeExpressionError
from engine.models import Procedure, ProcedureVersion
from engine.procedures import forms as forms_mod
from engine.procedures.expressions import check_expression, parse_script
from engine.procedures.notice_catalog import NOTICES_FILE, TEMPLATE_PREFIX, catalog_problems
from engine.procedures.serialization import SPEC_CACHE, spec_to_json
from engine.procedures.step_rules import spec_properties

MAX_FILE_BYTES = 2 * 1024 * 1024
ALLOWED_ACTIONS = ("approve", "reject", "return")
SUBJECT_KINDS = ("household", "project")
NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
}
_LANE_ROLE = re.compile(r"\(([a-z][a-z0-9_]*)\)\s*$")
# a notice file's key in a bundle: workflows/<code>/notices/<name> (templates, stylesheets, catalog, notes)
TEMPLATE_KEY_RE = re.compile(r"template/[A-Za-z0-9_][A-Za-z0-9_\-]{0,79}\.(html|css|json|md)")


@dataclass
class ProcedureBundle:
    """The files of one procedure, as text, keyed ``procedure.json``, ``bpmn/x``, ``dmn/x``, ``form/key``,
    ``template/name``."""

    code: str
    name: str
    subject_kind: str
    process_id: str
    settings: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        canonical = json.dumps(sorted(self.files.items()), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def role_of_lane(lane_name: str | None) -> str | None:
    """The role code a lane names: ``村级工作专班 (village_cadre)`` or plain ``village_cadre``."""
    if not lane_name:
        return None
    match = _LANE_ROLE.search(lane_name)
    return match.group(1) if match else lane_name.strip()


def safe_xml(text: str, filename: str) -> etree._Element:
    """Parse untrusted XML with DTDs, entities and network access off.

    :raises DefinitionError: oversize, a DOCTYPE, or malformed XML.
    """
    data = text.encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise DefinitionError("文件过大", [(filename, f"超过 {MAX_FILE_BYTES // 1024} KB")])
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=True
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise DefinitionError("XML 格式错误", [(filename, str(exc))]) from exc
    doc = root.getroottree().docinfo
    if doc.doctype or doc.internalDTD is not None:
        raise DefinitionError("不接受 DOCTYPE/实体声明", [(filename, "XML 中含有 DOCTYPE")])
    return root


def read_folder(folder: Path, forms_root: Path) -> ProcedureBundle:
    """Read a procedure folder and the forms it names.

    :raises DefinitionError: no manifest, or a named form file is missing.
    """
    manifest_path = folder / "procedure.json"
    if not manifest_path.is_file():
        raise DefinitionError("缺少 procedure.json", [(str(folder), "缺少 procedure.json")])
    manifest_text = manifest_path.read_text(encoding="utf-8")
    files: dict[str, str] = {"procedure.json": manifest_text}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".bpmn":
            files[f"bpmn/{path.name}"] = path.read_text(encoding="utf-8")
        elif path.suffix == ".dmn":
            files[f"dmn/{path.name}"] = path.read_text(encoding="utf-8")
    files.update(notice_files(folder / "notices"))
    bundle = bundle_from_files(files)
    for key in _form_keys(bundle):
        form_path = forms_root / f"{key}.json"
        if form_path.is_file():
            bundle.files[f"form/{key}"] = form_path.read_text(encoding="utf-8")
    return bundle


def notice_files(notices_dir: Path) -> dict[str, str]:
    """The files of a procedure's ``notices/`` folder as bundle files ``template/<name>``; other names
    (hidden files, other kinds) and links are left out.

    :raises DefinitionError: a notice file is too large.
    """
    found: dict[str, str] = {}
    if not notices_dir.is_dir():
        return found
    for path in sorted(notices_dir.iterdir()):
        key = f"{TEMPLATE_PREFIX}{path.name}"
        if path.is_symlink() or not path.is_file() or not TEMPLATE_KEY_RE.fullmatch(key):
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DefinitionError("文件过大", [(str(path), f"超过 {MAX_FILE_BYTES // 1024} KB")])
        found[key] = path.read_text(encoding="utf-8")
    return found


def bundle_from_files(files: dict[str, str]) -> ProcedureBundle:
    """Build a bundle from its files (folder, upload or zip).

    :raises DefinitionError: the manifest is missing or malformed.
    """
    try:
        manifest = json.loads(files["procedure.json"])
        problems = []
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", str(manifest.get("code", ""))):
            problems.append(("procedure.json", "code 须为小写字母开头的 1–64 位字母、数字或下划线"))
        if not 1 <= len(str(manifest.get("name", ""))) <= 120:
            problems.append(("procedure.json", "name 须为 1–120 个字"))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,119}", str(manifest.get("process_id", ""))):
            problems.append(("procedure.json", "process_id 须为 1–120 位的 BPMN 流程 id"))
        if manifest.get("subject_kind", "household") not in SUBJECT_KINDS:
            problems.append(("procedure.json", f"subject_kind 只能是 {'、'.join(SUBJECT_KINDS)}"))
        if not isinstance(manifest.get("settings", {}), dict):
            problems.append(("procedure.json", "settings 必须是对象"))
        if problems:
            raise DefinitionError("procedure.json 无效", problems)
        return ProcedureBundle(
            code=str(manifest["code"]),
            name=str(manifest["name"]),
            subject_kind=str(manifest.get("subject_kind", "household")),
            process_id=str(manifest["process_id"]),
            settings=dict(manifest.get("settings", {})),
            files=dict(files),
        )
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise DefinitionError("procedure.json 无效", [("procedure.json", str(exc))]) from exc


def _bpmn_roots(bundle: ProcedureBundle) -> list[tuple[str, etree._Element]]:
    return [(name, safe_xml(text, name)) for name, text in bundle.files.items() if name.startswith("bpmn/")]


def _form_keys(bundle: ProcedureBundle) -> set[str]:
    keys = set()
    for _name, root in _bpmn_roots(bundle):
        for prop in root.iterfind(".//spiffworkflow:property[@name='formKey']", NS):
            keys.add(prop.get("value"))
    return keys


def _element_label(node: etree._Element) -> str:
    return f"{node.get('name') or ''}[{node.get('id')}]"


def _owner(node: etree._Element) -> etree._Element:
    while node is not None and node.get("id") is None:
        node = node.getparent()
    return node


def _check_expressions(root: etree._Element, problems: list[tuple[str, str]]) -> None:
    def check(node, text, kind):
        try:
            if kind == "script":
                parse_script(text)
            else:
                check_expression(text)
        except UnsafeExpressionError as exc:
            problems.append((_element_label(_owner(node)), str(exc)))

    for node in root.iterfind(".//bpmn:conditionExpression", NS):
        check(node, node.text or "", "expr")
    for tag in ("timeDate", "timeDuration", "timeCycle"):
        for node in root.iterfind(f".//bpmn:{tag}", NS):
            check(node, node.text or "", "expr")
    for node in root.iterfind(".//bpmn:completionCondition", NS):
        check(node, node.text or "", "expr")
    for node in root.iterfind(".//bpmn:multiInstanceLoopCharacteristics", NS):
        problem = multi_instance_problem(node)
        if problem:
            problems.append((_element_label(node.getparent()), problem))
    for node in root.iterfind(".//spiffworkflow:property[@name='dueAt']", NS):
        check(node, node.get("value") or "", "expr")
    for node in root.iterfind(".//bpmn:scriptTask/bpmn:script", NS):
        check(node, node.text or "", "script")
    for tag in ("preScript", "postScript"):
        for node in root.iterfind(f".//spiffworkflow:{tag}", NS):
            check(node, node.text or "", "script")


def _check_dmn(name: str, root: etree._Element, problems: list[tuple[str, str]]) -> None:
    dmn_ns = {"dmn": root.nsmap.get(None) or ""}
    for node in root.iterfind(".//dmn:inputExpression/dmn:text", dmn_ns):
        try:
            check_expression(node.text or "")
        except UnsafeExpressionError as exc:
            problems.append((f"{name}", str(exc)))
    for tag in ("inputEntry", "outputEntry"):
        for node in root.iterfind(f".//dmn:{tag}/dmn:text", dmn_ns):
            problem = dmn_entry_problem(node.text or "")
            if problem:
                problems.append((f"{name}", problem))


def multi_instance_problem(loop: etree._Element) -> str | None:
    """Why a user task's multiInstanceLoopCharacteristics cannot run as a 会签/或签, or None.

    Each instance is one signer's task row: the signers come from a collection
    (``loopDataInputRef``, e.g. ``role_members(...)`` in the preScript or a form's list of
    usernames) and each instance's signer is its ``inputDataItem``.
    """
    if loop.getparent() is None or etree.QName(loop.getparent()).localname != "userTask":
        return None
    if loop.find("bpmn:loopCardinality", NS) is not None:
        return "会签/或签不能用 loopCardinality:请用 loopDataInputRef 指定会签人员名单"
    if not (getattr(loop.find("bpmn:loopDataInputRef", NS), "text", "") or "").strip():
        return "会签/或签必须用 loopDataInputRef 指定会签人员名单(用户名列表)"
    if loop.find("bpmn:inputDataItem", NS) is None:
        return "会签/或签必须有 inputDataItem(每个实例的会签人)"
    return None


def dmn_entry_problem(text: str) -> str | None:
    """Why a DMN input/output entry is not allowed, or None.

    An entry is either a whole expression ("低保", 6500) or a test completing ``input <entry>``
    (``< 6500``); ``?`` stands for the input value, as SpiffWorkflow's DMN engine reads it.
    """
    text = text.strip()
    if not text or text == "-":
        return None
    errors = []
    for candidate in (text.replace("?", "dmninputexpr"), f"v {text}"):
        try:
            check_expression(candidate)
            return None
        except UnsafeExpressionError as exc:
            errors.append(str(exc))
    return errors[0]


def declared_notice_kinds(files: dict[str, str]) -> set[str]:
    """The notice kinds a bundle's ``notices.json`` declares (none without one, or when it is malformed)."""
    try:
        kinds = json.loads(files.get(NOTICES_FILE) or "{}").get("kinds", [])
    except (ValueError, AttributeError):
        return set()
    if not isinstance(kinds, list):
        return set()
    return {str(k["code"]) for k in kinds if isinstance(k, dict) and k.get("code")}


def notice_kind_problem(kind: str, files: dict[str, str]) -> str | None:
    """Why a user task's ``noticeKind`` cannot be issued, or None: the bundle's notices.json must declare it."""
    if kind in declared_notice_kinds(files):
        return None
    return f"通知模板 {kind!r} 未在 notices.json 中声明"


def _check_tasks(bundle, spec, subprocess_specs, known_roles, problems) -> None:
    from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask

    from engine.procedures.step_rules import step_rule_problems
    from engine.runtime.signatures import signature_property_problem

    all_specs = [spec, *subprocess_specs.values()]
    for process in all_specs:
        for task_spec in process.task_specs.values():
            if not isinstance(task_spec, UserTask):
                continue
            label = f"{task_spec.bpmn_name or ''}[{task_spec.bpmn_id}]"
            props = spec_properties(task_spec)
            role = role_of_lane(task_spec.lane)
            if role is None:
                problems.append((label, "用户任务必须位于泳道中(泳道名 = 角色代码)"))
            elif role not in known_roles:
                problems.append((label, f"泳道 {task_spec.lane!r} 对应的角色 {role!r} 不存在"))
            form_key = props.get("formKey")
            if not form_key:
                problems.append((label, "用户任务缺少 formKey"))
            elif f"form/{form_key}" not in bundle.files:
                problems.append((label, f"表单 {form_key!r} 不存在"))
            else:
                try:
                    forms_mod.parse_schema(bundle.files[f"form/{form_key}"])
                except DefinitionError as exc:
                    problems.append((label, f"表单 {form_key!r} 无效: {exc}"))
            actions = [a.strip() for a in props.get("actions", "approve").split(",") if a.strip()]
            bad = [a for a in actions if a not in ALLOWED_ACTIONS]
            if bad or not actions:
                problems.append((label, f"actions 只能是 {','.join(ALLOWED_ACTIONS)}"))
            signature_problem = signature_property_problem(task_spec)
            if signature_problem:
                problems.append((label, signature_problem))
            problems.extend((label, problem) for problem in step_rule_problems(props))
            notice_problem = props.get("noticeKind") and notice_kind_problem(props["noticeKind"], bundle.files)
            if notice_problem:
                problems.append((label, notice_problem))


def compile_bundle(bundle: ProcedureBundle, known_roles: set[str]):
    """Parse and check a bundle; return (spec, subprocess_specs).

    :raises DefinitionError: with every problem found, each naming its element.
    """
    problems: list[tuple[str, str]] = []
    parser = SpiffBpmnParser(validator=VALIDATOR)
    bpmn_roots = _bpmn_roots(bundle)
    if not bpmn_roots:
        raise DefinitionError("没有 BPMN 文件", [(bundle.code, "没有 .bpmn 文件")])
    try:
        for name, root in bpmn_roots:
            _check_expressions(root, problems)
            parser.add_bpmn_xml(root, filename=name)
        for name, text in bundle.files.items():
            if name.startswith("dmn/"):
                root = safe_xml(text, name)
                _check_dmn(name, root, problems)
                parser.add_dmn_xml(root, filename=name)
        if problems:
            raise DefinitionError("流程定义未通过校验", problems)
        spec = parser.get_spec(bundle.process_id)
        subprocess_specs = parser.get_subprocess_specs(bundle.process_id)
    except ValidationException as exc:
        where = getattr(exc, "id", None) or getattr(exc, "file_name", None) or bundle.code
        line = getattr(exc, "line_number", None)
        raise DefinitionError("BPMN/DMN 校验失败", [(f"{where}" + (f" 第{line}行" if line else ""), str(exc).splitlines()[0])]) from exc
    _check_tasks(bundle, spec, subprocess_specs, known_roles, problems)
    problems.extend(catalog_problems(bundle.code, bundle.files))
    if problems:
        raise DefinitionError("流程定义未通过校验", problems)
    return spec, subprocess_specs


_FILES_CACHE: dict[str, dict[str, str]] = {}  # content hash → files; content never changes under a hash


class DefinitionService:
    """Deploys and looks up procedure versions."""

    def __init__(self, session: Session, clock):
        self.session = session
        self.clock = clock

    def deploy(self, bundle: ProcedureBundle, deployed_by: str, known_roles: set[str]) -> ProcedureVersion:
        """Validate bundle and store it as a new version unless identical content exists.

        :raises DefinitionError: the bundle is invalid; nothing is stored.
        """
        spec, subprocess_specs = compile_bundle(bundle, known_roles)
        procedure = self.session.scalar(select(Procedure).where(Procedure.code == bundle.code))
        if procedure is None:
            procedure = Procedure(code=bundle.code, name=bundle.name)
            self.session.add(procedure)
            self.session.flush()
        procedure.name = bundle.name
        existing = self.session.scalar(
            select(ProcedureVersion).where(
                ProcedureVersion.procedure_id == procedure.id,
                ProcedureVersion.content_hash == bundle.content_hash,
            )
        )
        if existing is not None:
            return existing
        last = self.session.scalar(
            select(func.max(ProcedureVersion.version)).where(ProcedureVersion.procedure_id == procedure.id)
        )
        version = ProcedureVersion(
            procedure_id=procedure.id,
            version=(last or 0) + 1,
            content_hash=bundle.content_hash,
            process_id=bundle.process_id,
            files=bundle.files,
            spec_json=spec_to_json(spec, subprocess_specs),
            deployed_at=self.clock.now(),
            deployed_by=deployed_by,
        )
        self.session.add(version)
        self.session.flush()
        return version

    def latest(self, code: str) -> ProcedureVersion:
        """The newest version of a procedure.

        :raises NotFoundError: no such procedure.
        """
        version = self.session.scalar(
            select(ProcedureVersion)
            .join(Procedure)
            .where(Procedure.code == code)
            .order_by(ProcedureVersion.version.desc())
            .limit(1)
        )
        if version is None:
            raise NotFoundError(f"流程 {code!r} 不存在")
        return version

    def list_latest(self) -> list[ProcedureVersion]:
        procedures = self.session.scalars(select(Procedure).order_by(Procedure.code)).all()
        return [p.versions[-1] for p in procedures if p.versions]

    def available_to(self, actor: Actor) -> list[ProcedureVersion]:
        """The newest versions of the procedures that serve some region of the actor's grants (the
        shipped ones and those owned by a region overlapping a grant): what the actor may start."""
        return [v for v in self.list_latest() if actor.may_use_procedure(v.procedure.owner_region_code)]

    @staticmethod
    def specs(version: ProcedureVersion):
        return SPEC_CACHE.get(version.content_hash, lambda: version.spec_json)

    @staticmethod
    def files(version: ProcedureVersion) -> dict[str, str]:
        """The version's files, read from the database once per content hash and process."""
        found = _FILES_CACHE.get(version.content_hash)
        if found is None:
            found = _FILES_CACHE.setdefault(version.content_hash, dict(version.files))
        return found

    @staticmethod
    def manifest(version: ProcedureVersion) -> dict[str, Any]:
        return json.loads(DefinitionService.files(version)["procedure.json"])

    @staticmethod
    def bpmn_xml(version: ProcedureVersion) -> str:
        for name, text in DefinitionService.files(version).items():
            if name.startswith("bpmn/"):
                return text
        raise NotFoundError("BPMN 不存在")

    @staticmethod
    def form_schema(version: ProcedureVersion, form_key: str | None) -> dict[str, Any]:
        files = DefinitionService.files(version)
        if not form_key or f"form/{form_key}" not in files:
            return {"type": "default", "components": []}
        return json.loads(files[f"form/{form_key}"])

    @staticmethod
    def field_labels(version: ProcedureVersion) -> dict[str, str]:
        """Form field key → Chinese label, over every form of the version."""
        labels: dict[str, str] = {}
        for name, text in DefinitionService.files(version).items():
            if name.startswith("form/"):
                for comp in forms_mod.input_components(json.loads(text)):
                    labels.setdefault(comp["key"], comp.get("label") or comp["key"])
        return labels

    @staticmethod
    def id_number_fields(version: ProcedureVersion) -> set[str]:
        """Keys of form fields holding resident ID numbers (``properties.format = cn_id``): shown masked."""
        keys: set[str] = set()
        for name, text in DefinitionService.files(version).items():
            if name.startswith("form/"):
                for comp in forms_mod.input_components(json.loads(text)):
                    if (comp.get("properties") or {}).get("format") == "cn_id":
                        keys.add(comp["key"])
        return keys

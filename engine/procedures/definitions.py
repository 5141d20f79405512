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
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.access.assignment import Actor
from engine.core.errors import DefinitionError, NotFoundError
from engine.models import Procedure, ProcedureVersion
from engine.procedures import checks
from engine.procedures import forms as forms_mod
from engine.procedures.checks.bundle import NS
from engine.procedures.checks.files import MAX_FILE_BYTES, TEMPLATE_KEY_RE
from engine.procedures.checks.problem import ProblemsError
from engine.procedures.checks.rules import PROCEDURE_CODE_RE, PROCEDURE_CODE_RULE, SUBJECT_KINDS
from engine.procedures.notice_catalog import TEMPLATE_PREFIX
from engine.procedures.serialization import SPEC_CACHE, spec_to_json
from engine.procedures.steps import role_of_lane  # noqa: F401 - the runtime reads lanes from here

CheckContext = checks.CheckContext
# libxml2's error codes for the mistakes people make most, said in Chinese
_XML_ERRORS = {4: "文档是空的或不是 XML", 5: "根元素之后还有多余内容", 9: "含有无效字符",
               23: "缺少 “>”", 38: "属性值缺少引号", 41: "属性没有值", 42: "属性重复", 65: "属性之间缺少空格",
               73: "缺少 “>”", 76: "开始标签和结束标签不匹配", 77: "文件不完整(缺少结束标签)",
               201: "使用了未声明的命名空间前缀", 68: "“&” 后不是有效的实体(请写作 &amp;)"}


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
        line, column = getattr(exc, "lineno", None), getattr(exc, "offset", None)
        where = f"第 {line} 行第 {column} 列: " if line else ""
        reason = _XML_ERRORS.get(getattr(exc, "code", 0), "XML 语法错误")
        raise DefinitionError("XML 格式错误", [(filename, f"不是格式正确的 XML({where}{reason})")]) from exc
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
        if not PROCEDURE_CODE_RE.fullmatch(str(manifest.get("code", ""))):
            problems.append(("procedure.json", PROCEDURE_CODE_RULE))
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
    except KeyError as exc:
        raise DefinitionError("procedure.json 无效", [("procedure.json", f"缺少 {exc.args[0]}")]) from exc
    except ValueError as exc:
        raise DefinitionError("procedure.json 无效", [("procedure.json", "不是有效的 JSON")]) from exc
    except (TypeError, AttributeError) as exc:
        raise DefinitionError("procedure.json 无效", [("procedure.json", "必须是对象,含 code、name、process_id")]) from exc


def _form_keys(bundle: ProcedureBundle) -> set[str]:
    keys = set()
    for name, text in bundle.files.items():
        if name.startswith("bpmn/"):
            for prop in safe_xml(text, name).iterfind(".//spiffworkflow:property[@name='formKey']", NS):
                keys.add(prop.get("value"))
    return keys


def check_context(known_roles: set[str] | frozenset[str], known_procedures=None, linkable=None, passed_in=None,
                  clock=None) -> CheckContext:
    """What the procedure checks know besides the bundle (see ``engine.procedures.checks.CheckContext``)."""
    return CheckContext(frozenset(known_roles),
                        None if known_procedures is None else frozenset(known_procedures),
                        None if linkable is None else frozenset(linkable), passed_in, clock)


def compile_bundle(bundle: ProcedureBundle, known_roles: set[str], context: CheckContext | None = None):
    """Check a bundle with the procedure checks and return its parsed (spec, subprocess_specs).

    :raises ProblemsError: with every problem found, each naming its element (a DefinitionError).
    """
    inspected = checks.inspect(bundle.files, context or check_context(known_roles))
    if inspected.problems:
        raise ProblemsError("流程定义未通过校验", inspected.problems)
    return inspected.spec, inspected.subprocess_specs


_FILES_CACHE: dict[str, dict[str, str]] = {}  # content hash → files; content never changes under a hash


class DefinitionService:
    """Deploys and looks up procedure versions."""

    def __init__(self, session: Session, clock):
        self.session = session
        self.clock = clock

    def deploy(self, bundle: ProcedureBundle, deployed_by: str, known_roles: set[str],
               context: CheckContext | None = None) -> ProcedureVersion:
        """Check bundle with the procedure checks and store it as a new version unless identical content exists.

        ``context`` is what the checks know of other procedures; by default the data the newest deployed
        versions pass to this one (the studio passes its own, with the procedures it may link to).

        :raises ProblemsError: the bundle is invalid (a DefinitionError); nothing is stored.
        """
        if context is None:
            context = check_context(known_roles, passed_in=self.passed_in())
        spec, subprocess_specs = compile_bundle(bundle, known_roles, context)
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

    def passed_in(self, extra: list[dict[str, str]] | None = None) -> dict[str, frozenset[str]]:
        """Procedure code → data keys the newest deployed versions (and extra file sets) pass when they
        start it (``startsProcedure`` + ``passData``): names that procedure's expressions may read."""
        return checks.passed_in([*(self.files(v) for v in self.list_latest()), *(extra or [])])

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

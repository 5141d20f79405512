"""A procedure's notice catalog: the kinds of notice it issues and their templates, as data.

A procedure's notices live with it in ``workflows/<procedure>/notices/`` (or in its studio draft) and
are deployed with it: every deployed version holds them as ``template/<name>`` files. ``notices.json``
lists the kinds (template, what groups cases into one notice, which office level signs, who may issue,
which cases are due, the fields the issuer fills in), the HTML templates (Jinja, sandboxed) and their
CSS (GB/T 9704-2012 layout). A template or stylesheet name a version does not hold itself is taken
from the shared layout in ``workflows/_notice_layout/`` (``_base.html``, ``gbt9704.css``).

Deploy asks ``catalog_problems`` (so a bundle whose notices could not be issued is refused); the notice
service (engine/notices/) reads a version's catalog with ``version_catalog``. This module sits below the
runtime and the notice service: it reads files, never a case.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.core import settings
from engine.core.errors import NotFoundError, ValidationError
from engine.models import ProcedureVersion, RegionLevel

NOTICES_FILE = "template/notices.json"  # a bundle's notice catalog (workflows/<code>/notices/notices.json)
TEMPLATE_PREFIX = "template/"
GROUP_LEVELS = {"village": RegionLevel.village, "township": RegionLevel.township, "county": RegionLevel.county}
FIELD_TYPES = ("text", "phone", "date", "integer")
_KIND_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class NoticeField:
    key: str
    label: str
    type: str = "text"
    required: bool = False
    default: Any = None
    default_setting: str | None = None
    min: int | None = None
    max: int | None = None
    help: str = ""


@dataclass(frozen=True)
class NoticeKind:
    """One kind of notice a procedure issues, as declared in its ``notices.json``."""

    procedure_code: str
    code: str
    name: str
    template: str
    title: str
    group_by: str
    public: bool
    office_level: RegionLevel
    issuer_roles: tuple[str, ...]
    due_open_steps: tuple[str, ...] = ()
    due_statuses: tuple[str, ...] = ()
    fields: tuple[NoticeField, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class NoticeCatalog:
    """The notices of one procedure version: its kinds and its notice files (``template/<name>``
    without the prefix), over the shared layout."""

    procedure_code: str
    files: dict[str, str]
    stylesheets: tuple[str, ...]
    kinds: dict[str, NoticeKind]
    content_sha256: str
    layout: dict[str, str] = field(default_factory=dict)

    def file(self, name: str) -> str | None:
        """The text a template or stylesheet name means: the procedure's own file, else the shared layout's."""
        found = self.files.get(name)
        return found if found is not None else self.layout.get(name)


class _Definitions(Protocol):
    def latest(self, code: str) -> ProcedureVersion: ...


def layout_dir() -> Path:
    """The notice layout every procedure shares (``_base.html``, ``gbt9704.css``): a template or
    stylesheet name a procedure version does not hold itself is looked up here."""
    return settings.WORKFLOWS_DIR / "_notice_layout"


_CATALOGS: dict[str, tuple[tuple, NoticeCatalog | None]] = {}  # version content hash → (layout stamp, catalog)
_LAYOUT: list = []
_LOCK = threading.Lock()


def _layout_files() -> tuple[tuple, dict[str, str]]:
    """The shared layout's files (name → text) and a stamp that changes when one does."""
    folder = layout_dir()
    paths = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    stamp = (str(folder), *((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in paths))
    with _LOCK:
        if _LAYOUT and _LAYOUT[0] == stamp:
            return _LAYOUT[0], _LAYOUT[1]
    files = {p.name: p.read_text(encoding="utf-8") for p in paths}
    with _LOCK:
        _LAYOUT[:] = [stamp, files]
    return stamp, files


def load_catalog(definitions: _Definitions, procedure_code: str) -> NoticeCatalog | None:
    """The notice kinds of a procedure as its current version (the one new cases use) holds them, or
    None when there is no such procedure or its version has no ``template/notices.json``.

    :raises ValidationError: the manifest is malformed (each problem named).
    """
    try:
        version = definitions.latest(procedure_code)
    except NotFoundError:
        return None
    return version_catalog(version)


def version_catalog(version: ProcedureVersion) -> NoticeCatalog | None:
    """The notice kinds of a procedure version, or None when it has no ``template/notices.json``.

    Parsed once per version content and shared layout (the version's files are read only then).

    :raises ValidationError: the manifest is malformed (each problem named).
    """
    stamp, layout = _layout_files()
    with _LOCK:
        cached = _CATALOGS.get(version.content_hash)
        if cached and cached[0] == stamp:
            return cached[1]
    version_files = version.files
    catalog = (_parse_catalog(version.procedure.code, template_files(version_files), layout)
               if NOTICES_FILE in version_files else None)
    with _LOCK:
        _CATALOGS[version.content_hash] = (stamp, catalog)
    return catalog


def template_files(files: dict[str, str]) -> dict[str, str]:
    """A version's or bundle's notice files by name (its ``template/<name>`` keys without the prefix)."""
    return {key[len(TEMPLATE_PREFIX):]: text for key, text in files.items() if key.startswith(TEMPLATE_PREFIX)}


def catalog_problems(procedure_code: str, files: dict[str, str]) -> list[tuple[str, str]]:
    """Why a bundle's notice catalog (``template/notices.json``) could not issue its notices: a kind
    incomplete, a template or stylesheet neither the bundle nor the shared layout holds; [] when fine
    or when the bundle has no catalog."""
    if NOTICES_FILE not in files:
        return []
    try:
        _parse_catalog(procedure_code, template_files(files), _layout_files()[1])
    except ValidationError as exc:
        return [(NOTICES_FILE, f"{name}: {why}") for name, why in exc.errors.items()] or [(NOTICES_FILE, str(exc))]
    return []


_REQUIRED = ("name", "template", "title", "group_by", "public", "office_level", "issuer_roles")
_FIELD_KEYS = frozenset(NoticeField.__dataclass_fields__)


def _shape_problem(raw: Any) -> str | None:
    """Why a kind's JSON cannot be read as a NoticeKind, in Chinese (missing keys, wrong types), or None."""
    if not isinstance(raw, dict):
        return "每个种类必须是对象"
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        return f"缺少 {'、'.join(missing)}"
    levels = [level.value for level in RegionLevel]
    if raw["office_level"] not in levels:
        return f"office_level 只能是 {'、'.join(levels)}"
    if not isinstance(raw["issuer_roles"], list) or not all(isinstance(r, str) for r in raw["issuer_roles"]):
        return "issuer_roles 必须是角色代码的列表"
    due = raw.get("due", {})
    if not isinstance(due, dict) or not all(isinstance(due.get(k, []), list) for k in ("open_steps", "statuses")):
        return "due 必须是对象,其中 open_steps 和 statuses 是列表"
    fields = raw.get("fields", [])
    if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
        return "fields 必须是字段对象的列表"
    for f in fields:
        unknown = sorted(set(f) - _FIELD_KEYS)
        if unknown:
            return f"字段 {str(f.get('key', '?'))[:40]} 有不认识的项 {'、'.join(str(u)[:40] for u in unknown[:5])}"
        if not isinstance(f.get("key"), str) or not isinstance(f.get("label"), str):
            return "每个字段都要有 key 和 label"
    return None


def _parse_kind(procedure_code: str, raw: dict[str, Any]) -> NoticeKind:
    due = raw.get("due", {})
    return NoticeKind(
        procedure_code=procedure_code, code=str(raw.get("code", "")), name=str(raw["name"]),
        template=str(raw["template"]), title=str(raw["title"]), group_by=str(raw["group_by"]),
        public=bool(raw["public"]), office_level=RegionLevel(raw["office_level"]),
        issuer_roles=tuple(raw["issuer_roles"]),
        due_open_steps=tuple(due.get("open_steps", [])), due_statuses=tuple(due.get("statuses", [])),
        fields=tuple(NoticeField(**f) for f in raw.get("fields", [])),
        description=str(raw.get("description", "")),
    )


def _kind_problem(kind: NoticeKind, used: dict[str, str]) -> str | None:
    if not _KIND_CODE.fullmatch(kind.code):
        return "code 只能是小写字母、数字和下划线"
    if kind.group_by not in ("case", *GROUP_LEVELS):
        return "group_by 只能是 case、village、township 或 county"
    if kind.template not in used:
        return f"模板 {kind.template} 不存在"
    if any(f.type not in FIELD_TYPES for f in kind.fields):
        return f"字段类型只能是 {'、'.join(FIELD_TYPES)}"
    return None


def _parse_catalog(procedure_code: str, files: dict[str, str], layout: dict[str, str]) -> NoticeCatalog:
    used = {**layout, **files}  # a procedure's own file wins over the layout's of the same name
    digest = hashlib.sha256()
    for name in sorted(used):
        digest.update(name.encode("utf-8") + b"\0" + used[name].encode("utf-8") + b"\0")
    try:
        manifest = json.loads(files["notices.json"])
    except json.JSONDecodeError as exc:
        raise ValidationError(f"notices.json 不是有效的 JSON(第 {exc.lineno} 行第 {exc.colno} 列)") from exc
    except (ValueError, RecursionError) as exc:
        raise ValidationError("notices.json 不是有效的 JSON") from exc
    if not isinstance(manifest, dict):
        raise ValidationError("notices.json 的顶层必须是对象")
    kinds_raw, stylesheets_raw = manifest.get("kinds", []), manifest.get("stylesheets", [])
    if not isinstance(kinds_raw, list):
        raise ValidationError("notices.json 的 kinds 必须是列表")
    if not isinstance(stylesheets_raw, list) or not all(isinstance(n, str) for n in stylesheets_raw):
        raise ValidationError("notices.json 的 stylesheets 必须是文件名的列表")
    problems: dict[str, str] = {}
    kinds: dict[str, NoticeKind] = {}
    for index, raw in enumerate(kinds_raw):
        code = str(raw.get("code", "")) if isinstance(raw, dict) else ""
        shape = _shape_problem(raw)
        if shape is None:
            try:
                kind = _parse_kind(procedure_code, raw)
            except (KeyError, TypeError, ValueError):
                shape = "定义不完整(请对照 workflows/monitoring_exit/notices/README.md 检查各项)"
        if shape is not None:
            problems[code or f"第 {index + 1} 个种类"] = f"定义不完整: {shape}"
            continue
        problem = _kind_problem(kind, used)
        if problem:
            problems[code] = problem
        else:
            kinds[code] = kind
    stylesheets = tuple(stylesheets_raw)
    for name in stylesheets:
        if name not in used:
            problems[name] = "样式表不存在"
    if problems:
        raise ValidationError(f"流程 {procedure_code} 的公文模板定义有误", problems)
    return NoticeCatalog(procedure_code, files, stylesheets, kinds, digest.hexdigest(), layout)

"""Sharing procedures as zip files: export a draft or version, import a zip as a draft.

A zip is untrusted: it is checked for size, entry count, compression ratio, links and path traversal
before anything is read, and its files then go through the same shape and well-formedness checks as a
saved draft.
"""

from __future__ import annotations

import io
import json
import re
import stat
import zipfile
import zlib
from typing import NoReturn

from engine.access.assignment import Actor
from engine.core.errors import DefinitionError
from engine.models import ProcedureDraft
from engine.procedures.checks import Problem
from engine.procedures.checks.files import (
    FORM_KEY_RE,
    MAX_FILE_BYTES,
    NAME_RE,
    check_file_set,
    parse_well_formed,
)
from engine.procedures.checks.rules import PROCEDURE_CODE_RE
from engine.studio.drafts import _sync_process_id
from engine.studio.validation import StudioValidation

MAX_ZIP_BYTES = 5 * 1024 * 1024
MAX_ZIP_ENTRIES = 200
MAX_ZIP_TOTAL_BYTES = 20 * 1024 * 1024
MAX_COMPRESSION_RATIO = 100
_TEMPLATE_SUFFIXES = (".html", ".css", ".json", ".md")


def read_zip(data: bytes) -> dict[str, str]:
    """Read a procedure zip (untrusted): return draft files, or refuse it whole.

    Layout (one top-level folder optional): ``procedure.json``, ``<name>.bpmn``, ``<name>.dmn``,
    ``forms/<formKey>.json``, ``notices/<name>.(html|css|json|md)``.

    :raises DefinitionError: too large, too many entries, a zip bomb, links, absolute paths or
        ``..`` (zip slip), encrypted or duplicate entries, files of unknown kind, non-UTF-8 text.
    """
    def refuse(where: str, why: str) -> NoReturn:
        raise DefinitionError("压缩包被拒绝", [(where[:200], why)])

    if len(data) > MAX_ZIP_BYTES:
        refuse("压缩包", f"超过 {MAX_ZIP_BYTES // 1024 // 1024} MB")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        refuse("压缩包", "不是有效的 zip 文件(可能已损坏,或不是 zip 格式)")
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




class StudioZip(StudioValidation):
    """Export and import of procedure zips."""

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
        if not PROCEDURE_CODE_RE.fullmatch(code):
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


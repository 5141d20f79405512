"""The shape of a bundle's file set and of procedure.json: checked before anything else is parsed."""

from __future__ import annotations

import json
import re
from typing import Any

from engine.core.bounds import BAD_CHARS, BAD_CHARS_MESSAGE, MAX_JSON_DEPTH, TooDeep, loads_bounded
from engine.core.errors import DefinitionError
from engine.procedures.checks.bundle import CheckedBundle
from engine.procedures.checks.problem import Problem
from engine.procedures.checks.rules import DATA_KEY_RE, DAY_KINDS, PROCEDURE_CODE_RE, PROCEDURE_CODE_RULE, SUBJECT_KINDS

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_BUNDLE_FILES = 200
MAX_BUNDLE_BYTES = 10 * 1024 * 1024
NAME_RE = r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,79}"
FORM_KEY_RE = re.compile(rf"{NAME_RE}(/{NAME_RE})?")
# a notice file's key in a bundle: workflows/<code>/notices/<name> (templates, stylesheets, catalog, notes)
TEMPLATE_KEY_RE = re.compile(r"template/[A-Za-z0-9_][A-Za-z0-9_\-]{0,79}\.(html|css|json|md)")
FILE_KEY_RE = re.compile(
    rf"procedure\.json|bpmn/{NAME_RE}\.bpmn|dmn/{NAME_RE}\.dmn|form/{NAME_RE}(/{NAME_RE})?|{TEMPLATE_KEY_RE.pattern}"
)


def file_set_problems(files: Any) -> list[tuple[str, str]]:
    """(file, why) for a file set whose shape is wrong: not a mapping of allowed names to text, too many,
    too large, no procedure.json, not exactly one BPMN file."""
    if not isinstance(files, dict) or not files:
        return [("草稿", "必须是 文件名 → 文本 的映射")]
    if len(files) > MAX_BUNDLE_FILES:
        return [("草稿", f"最多 {MAX_BUNDLE_FILES} 个文件")]
    problems = []
    total = 0
    for key, text in files.items():
        if not isinstance(key, str) or not FILE_KEY_RE.fullmatch(key):
            problems.append((str(key)[:120], "不支持的文件名(允许 procedure.json、bpmn/、dmn/、form/、template/)"))
            continue
        if not isinstance(text, str):
            problems.append((key, "文件内容必须是文本"))
            continue
        size = len(text.encode("utf-8", "surrogatepass"))
        total += size
        if size > MAX_FILE_BYTES:
            problems.append((key, f"文件超过 {MAX_FILE_BYTES // 1024} KB"))
    if total > MAX_BUNDLE_BYTES:
        problems.append(("草稿", f"文件总大小超过 {MAX_BUNDLE_BYTES // 1024 // 1024} MB"))
    if "procedure.json" not in files:
        problems.append(("procedure.json", "缺少 procedure.json"))
    if sum(1 for k in files if isinstance(k, str) and k.startswith("bpmn/")) != 1:
        problems.append(("bpmn/", "流程必须有且只有一个 BPMN 文件"))
    return problems


def check_file_set(files: Any) -> dict[str, str]:
    """Refuse a file set whose shape is wrong before anything is parsed.

    :raises DefinitionError: naming each bad file.
    """
    problems = file_set_problems(files)
    if problems:
        raise DefinitionError("草稿文件无效", problems)
    return dict(files)


def parse_well_formed(files: dict[str, str]) -> None:
    """Refuse files that are not even well-formed (hostile XML, broken JSON).

    :raises DefinitionError: naming each bad file.
    """
    from engine.procedures.definitions import safe_xml

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
            problems.append((key, json_problem(exc)))
    if problems:
        raise DefinitionError("文件格式错误", problems)


def json_problem(exc: ValueError) -> str:
    """A JSON parse failure in Chinese, with its place."""
    if isinstance(exc, TooDeep):
        return f"JSON 嵌套超过 {MAX_JSON_DEPTH} 层"
    if not isinstance(exc, json.JSONDecodeError):
        return f"含有不允许的内容({exc})"  # engine/core/bounds.py names the field, in Chinese
    return f"不是有效的 JSON(第 {exc.lineno} 行第 {exc.colno} 列)"


# ----------------------------------------------------------------------------- checks
def file_set(b: CheckedBundle) -> list[Problem]:
    """The file set has the allowed names, sizes, one procedure.json and one BPMN file."""
    return [Problem(None, why, where) for where, why in file_set_problems(b.raw_files)]


def xml_well_formed(b: CheckedBundle) -> list[Problem]:
    """Every BPMN/DMN file is well-formed XML without DOCTYPE or entities."""
    return [Problem(None, why, where) for exc in b.xml.values() if isinstance(exc, DefinitionError)
            for where, why in exc.problems]


def manifest_fields(b: CheckedBundle) -> list[Problem]:
    """procedure.json: an object with a valid code, a name, subject kind, settings and process id."""
    manifest, error = b._manifest
    if manifest is None:
        return [Problem(None, error or "procedure.json 无效", "procedure.json")]
    found = []

    def bad(message: str) -> None:
        found.append(Problem(None, message, "procedure.json"))

    if not PROCEDURE_CODE_RE.fullmatch(str(manifest.get("code", ""))):
        bad(PROCEDURE_CODE_RULE)
    if not str(manifest.get("name", "")).strip() or len(str(manifest.get("name"))) > 120:
        bad("流程名称不能为空,且不超过 120 字")
    if manifest.get("subject_kind", "household") not in SUBJECT_KINDS:
        bad("办理对象只能是 household(农户)或 project(项目)")
    settings = manifest.get("settings", {})
    if not isinstance(settings, dict):
        bad("流程设置(settings)必须是对象")
    elif settings.get("day_kind", "natural") not in DAY_KINDS:
        bad("settings.day_kind 只能是 natural(自然日)或 working(工作日)")
    if not isinstance(manifest.get("process_id"), str) or not manifest.get("process_id"):
        bad("缺少 process_id(BPMN 中流程的 id)")
    declared = manifest.get("start_data", [])
    if not isinstance(declared, list) or not all(isinstance(n, str) and DATA_KEY_RE.fullmatch(n) for n in declared):
        bad("start_data 必须是字段名列表(发起案件时可传入的数据)")
    return found


def template_json(b: CheckedBundle) -> list[Problem]:
    """Every JSON file of the notice templates parses."""
    found = []
    for key in (k for k in b.files if k.startswith("template/") and k.endswith(".json")):
        try:
            loads_bounded(b.files[key])
        except ValueError as exc:
            found.append(Problem(None, json_problem(exc), key))
    return found

"""Bounds on what may enter the system: text without NUL or lone surrogates, dates in range, JSON not
too deep. One place, used by the web edge (web/edge.py) and by the engine where it parses stored text
(form schemas, studio files)."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_ID = 2**31 - 1  # PostgreSQL integer
MIN_YEAR, MAX_YEAR = 1900, 2199
MAX_JSON_DEPTH = 64
MAX_JSON_INT = 2**53  # what a browser's JSON keeps exactly
BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
DATE_VALUE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ][0-9:.+\-Z]{0,40})?")
BAD_CHARS_MESSAGE = "含有无效字符(空字符或不成对的代理字符)"


def is_id_name(name: str) -> bool:
    """A field that names a database row: ``id``, ``…_id``, ``lock_version``."""
    return name == "id" or name.endswith("_id") or name == "lock_version"


def id_problem(name: str, value: str) -> str | None:
    """Why a text field named like an id (``case_id=…``) is out of range, or None."""
    if is_id_name(name) and value.isdigit() and (len(value) > 10 or int(value) > MAX_ID):
        return f"编号超出范围(最大 {MAX_ID})"
    return None


def text_problem(value: str) -> str | None:
    """Why a string may not enter the system (NUL, a lone surrogate, a date out of range), or None."""
    if BAD_CHARS.search(value):
        return BAD_CHARS_MESSAGE
    match = DATE_VALUE.fullmatch(value) if len(value) <= 60 else None
    if match and not MIN_YEAR <= int(match.group(1)) <= MAX_YEAR:
        return f"日期超出范围({MIN_YEAR}-01-01 至 {MAX_YEAR}-12-31)"
    return None


class TooDeep(ValueError):
    """JSON nested deeper than allowed."""


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """The first bad string in a parsed JSON value as (field path, message), or None.

    :raises TooDeep: nested deeper than max_depth.
    """
    stack: list[tuple[Any, str, str, int]] = [(value, "", "", 1)]
    while stack:
        node, path, key_name, depth = stack.pop()
        if isinstance(node, bool):
            continue
        if isinstance(node, int):
            if is_id_name(key_name) and not 0 <= node <= MAX_ID:
                return _printable(path), f"编号超出范围(0 至 {MAX_ID})"
            if abs(node) > MAX_JSON_INT:
                return _printable(path), "数值过大"
        elif isinstance(node, (dict, list)):
            if depth > max_depth:
                raise TooDeep(f"JSON 嵌套不能超过 {max_depth} 层")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                child_path = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and BAD_CHARS.search(key):
                    return _printable(child_path), BAD_CHARS_MESSAGE
                stack.append((child, child_path, key if isinstance(key, str) else key_name, depth + 1))
        elif isinstance(node, str):
            problem = text_problem(node)
            if problem:
                return _printable(path or "body"), problem
    return None


def _printable(path: str) -> str:
    return BAD_CHARS.sub("?", path)[:100]


def loads_bounded(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that answers too deep or bad text with ValueError, never RecursionError.

    :raises ValueError: not JSON, nested deeper than max_depth (TooDeep), or holding NUL / lone surrogates.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeep(f"JSON 嵌套不能超过 {max_depth} 层") from None
    problem = json_problem(value, max_depth)
    if problem:
        raise ValueError(f"{problem[0]}: {problem[1]}")
    return value

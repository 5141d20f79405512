"""Input at the edge, parsed and bounded once, before any view or login check sees it.

Every request passes ``check_request`` (an app-wide ``before_request`` that runs first):

- ids in ``<int:…>`` routes are 1 … 2^31−1 (PostgreSQL ``integer``): anything else does not match the
  route (404) instead of reaching the driver;
- a JSON body is at most ``XIANGFLOW_MAX_JSON_BYTES`` (413) and ``XIANGFLOW_MAX_JSON_DEPTH`` levels deep
  (422), and parses (400); the parsed value is cached, views read it through ``request.get_json``;
- every string of the request — path values, query and form fields, file names, JSON keys and values —
  is refused with 422 naming the field when it holds NUL or a lone UTF-16 surrogate (PostgreSQL text and
  psycopg refuse both), a value that is a date (``YYYY-MM-DD…``) must lie in 1900–2199, and a field named
  like an id (``id``, ``…_id``, ``lock_version``) must fit PostgreSQL's integer; JSON integers stay within
  2^53.

Refusals raise ``ValidationError`` (422) or ``Refused`` (400, 413): the one error path in web/errors.py answers them.
Views that read numbers from the query use ``int_arg``, and a list's page cursor ``cursor_arg``
(``cursor_token`` makes the links).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence

from flask import Flask, current_app, request
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

from engine.core.bounds import MAX_ID, TooDeep, id_problem, json_problem, text_problem
from engine.core.errors import ValidationError
from engine.queries import paging
from engine.queries.paging import Keyset
from web.errors import Refused

BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class BoundedId(IntegerConverter):
    """``<int:…>``: a positive id that fits PostgreSQL's integer, matched by the URL pattern itself, so an
    id beyond it matches no route (404, never 405 from a sibling route or an int() of 5,000 digits)."""

    # 1 … 2147483647 exactly
    regex = ("(?:[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
             "|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])")

    def __init__(self, map, fixed_digits=0, min=1, max=MAX_ID, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=False)
        self.regex = BoundedId.regex


def init_app(app: Flask) -> None:
    """Bound ``<int:…>`` routes and check every request (register before the blueprints)."""
    app.url_map.converters["int"] = BoundedId
    app.before_request(check_request)


def check_request() -> None:
    """Refuse a request whose input is out of bounds; parse a JSON body once.

    :raises ValidationError: a bad character, an out-of-range date or too deep JSON (field → message).
    """
    for field, value in _strings():
        if not isinstance(value, str) or not isinstance(field, str):
            continue
        problem = text_problem(value) or id_problem(field, value)
        if problem:
            raise ValidationError("请求含有无效内容", {field: problem})
    if request.method in BODY_METHODS and request.is_json:
        _check_json()


def _strings() -> Iterator[tuple[str, str]]:
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str):
            yield name, value
    for name, values in request.args.lists():
        yield name, name
        for value in values:
            yield name, value
    if request.method in BODY_METHODS and request.mimetype in ("application/x-www-form-urlencoded",
                                                               "multipart/form-data"):
        for name, values in request.form.lists():
            yield name, name
            for value in values:
                yield name, value
        for name, upload in request.files.items(multi=True):
            yield name, upload.filename or ""


def _check_json() -> None:
    limit = current_app.config["XIANGFLOW_MAX_JSON_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"JSON 请求体不能超过 {limit // 1024} KB")
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise Refused(413, f"JSON 请求体不能超过 {limit // 1024} KB")
    if not raw.strip():
        return
    depth = current_app.config["XIANGFLOW_MAX_JSON_DEPTH"]
    try:
        problem = json_problem(request.get_json(), depth)
    except BadRequest:
        raise Refused(400, "请求体不是有效的 JSON") from None
    except (RecursionError, TooDeep):
        raise ValidationError("请求体嵌套过深", {"body": f"JSON 嵌套不能超过 {depth} 层"}) from None
    if problem:
        field, message = problem
        raise ValidationError("请求含有无效内容", {field: message})


def int_arg(name: str, default: int, low: int = 1, high: int = MAX_ID) -> int:
    """An integer query parameter in low … high.

    :raises ValidationError: not an integer or out of range (422 naming the parameter).
    """
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    raw = raw.strip()
    if not re.fullmatch(r"[+-]?\d{1,12}", raw) or not low <= int(raw) <= high:
        raise ValidationError("参数无效", {name: f"{name} 必须是 {low} 到 {high} 之间的整数"})
    return int(raw)


def list_scope(name: str, params: dict) -> str:
    """The name a list's cursors are bound to: the list and its filters (a cursor of another is refused)."""
    return name + ":" + json.dumps(params, sort_keys=True, ensure_ascii=False, default=str)


def cursor_arg(scope: str, kinds: Sequence[str], name: str = "cursor") -> Keyset | None:
    """The keyset of the ``cursor`` query parameter (None: the first page).

    :raises CursorError: a cursor this list did not hand out (400).
    """
    raw = request.args.get(name)
    if raw is None or not raw.strip():
        return None
    return paging.decode(raw.strip(), _cursor_secret(), scope, kinds)


def cursor_token(keyset: Keyset | None, scope: str) -> str | None:
    """The cursor of keyset for links (None for none)."""
    return paging.encode(keyset, _cursor_secret(), scope) if keyset is not None else None


def _cursor_secret() -> bytes:
    return hashlib.sha256(b"xiangflow-cursor\x00" + str(current_app.secret_key).encode()).digest()

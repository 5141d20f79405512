"""Keyset pages: a list is read from a sort key on, never skipped to by OFFSET.

A page starts after (下一页) or before (上一页) the sort key of a row the previous page showed, so page
1,000 costs what page 1 costs: an index range read from that key as far as one page needs. The key
travels to the browser as an opaque cursor: JSON of the key, signed with the application's secret and
bound to the list it came from (the tab and its search), so an edited, truncated or foreign cursor is
refused (``CursorError``, 400) instead of being read. The query still applies the caller's visibility,
so even a forged key could only start a page at another place of the caller's own list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import and_, literal, tuple_

from engine.core.errors import CursorError

T = TypeVar("T")

MAX_CURSOR_LENGTH = 600
# a list's count stops here: the badge shows "999+" instead of reading everything a user may see (an
# office acts on the first pages; the exact number beyond a thousand cost ~12 ms per inbox at 1 M cases)
COUNT_CAP = 999
BAD_CURSOR = "翻页参数无效或已过期,请回到第一页重新查看"
# key element kinds: a UTC datetime, one that may be NULL, an integer id, a string
KINDS = ("datetime", "datetime?", "int", "str")


@dataclass(frozen=True)
class Keyset:
    """Where a page starts: after the row with this sort key, or (``backward``) before it."""

    key: tuple
    backward: bool = False
    number: int = 2  # the page's number, shown as 第 N 页 (it travels with the cursor, it is not an offset)


@dataclass
class Page(Generic[T]):
    """One page of a list, with the keys of its neighbours (None: there is none)."""

    items: list[T]
    number: int = 1
    next: Keyset | None = None
    prev: Keyset | None = None
    total: int | None = None  # how many rows the list holds (COUNT_CAP + 1: more), where it was counted


def read_page(rows: Sequence[tuple[T, tuple]], per_page: int, after: Keyset | None) -> Page[T] | None:
    """The page from rows fetched in the list's order (or reversed, going back), per_page + 1 at most.

    Each row is (item, its sort key). Going back past the start gives None: the caller shows the first
    page instead (a short page would otherwise appear where page 1 belongs).
    """
    if after is not None and after.backward:
        if len(rows) <= per_page:
            return None
        kept = list(reversed(rows[:per_page]))
        number = max(after.number, 2)
        return Page([r[0] for r in kept], number, Keyset(kept[-1][1], False, number + 1),
                    Keyset(kept[0][1], True, number - 1))
    kept = list(rows[:per_page])
    number = after.number if after is not None else 1
    nxt = Keyset(kept[-1][1], False, number + 1) if len(rows) > per_page else None
    prev = Keyset(kept[0][1], True, number - 1) if after is not None and kept else None
    if after is not None and not kept:  # everything after the key went away meanwhile
        prev = Keyset(after.key, True, number - 1)
    return Page([r[0] for r in kept], number, nxt, prev)


def beyond(columns: Sequence[Any], key: tuple, descending: bool, backward: bool):
    """The rows strictly past key in a list ordered by columns (all ascending or all descending, no NULLs)."""
    left = tuple_(*columns)
    right = tuple_(*[literal(v, c.type) for c, v in zip(columns, key, strict=True)])
    return left < right if descending != backward else left > right


def beyond_nulls_last(nullable, rest: Sequence[Any], key: tuple, backward: bool) -> list:
    """Disjoint conditions (each an index range in order) for the rows past key in a list ordered by
    nullable ascending with NULLs last, then by rest ascending. OR-ed into one condition they would cost
    the range scan; the caller reads each and merges them."""
    first, others = key[0], key[1:]
    if first is None:
        tail = beyond(rest, others, False, backward)
        return [and_(nullable.is_(None), tail), nullable.is_not(None)] if backward else [
            and_(nullable.is_(None), tail)]
    dated = and_(nullable.is_not(None), beyond([nullable, *rest], key, False, backward))
    return [dated] if backward else [dated, nullable.is_(None)]


# ---------------------------------------------------------------------------------------------- cursor
def _mac(secret: bytes, scope: str, body: bytes) -> bytes:
    return hmac.new(secret, scope.encode() + b"\x00" + body, hashlib.sha256).digest()[:16]


def encode(keyset: Keyset, secret: bytes, scope: str) -> str:
    """The opaque cursor of keyset for the list named scope (URL-safe, signed with secret)."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in keyset.key]
    body = json.dumps([values, int(keyset.backward), keyset.number], separators=(",", ":"),
                      ensure_ascii=False).encode()
    token = base64.urlsafe_b64encode(body + _mac(secret, scope, body)).decode()
    return token.rstrip("=")


def decode(token: str, secret: bytes, scope: str, kinds: Sequence[str]) -> Keyset:
    """The keyset a cursor from encode holds, checked against scope and the list's key kinds.

    :raises CursorError: not a cursor of this list (edited, cut short, from another tab or search).
    """
    if not isinstance(token, str) or not 0 < len(token) <= MAX_CURSOR_LENGTH:
        raise CursorError(BAD_CURSOR)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise CursorError(BAD_CURSOR) from None
    body, mac = raw[:-16], raw[-16:]
    if len(raw) <= 16 or not hmac.compare_digest(mac, _mac(secret, scope, body)):
        raise CursorError(BAD_CURSOR)
    try:
        values, backward, number = json.loads(body)
        key = tuple(_load(kind, v) for kind, v in zip(kinds, values, strict=True))
    except (ValueError, TypeError):
        raise CursorError(BAD_CURSOR) from None
    if backward not in (0, 1) or not isinstance(number, int) or not 1 <= number <= 10**9:
        raise CursorError(BAD_CURSOR)
    return Keyset(key, bool(backward), number)


def _load(kind: str, value: Any) -> Any:
    loaders: dict[str, Callable[[Any], Any]] = {"datetime": _datetime, "int": _int, "str": _str}
    if kind == "datetime?":
        return None if value is None else _datetime(value)
    return loaders[kind](value)


def _datetime(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError("not an aware datetime")
    return parsed


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**31:
        raise ValueError("not an id")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError("not a short string")
    return value

"""Page cursors (engine/queries/paging.py): opaque, signed, bound to their list; anything else is refused."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from engine.core.errors import CursorError
from engine.queries.paging import Keyset, decode, encode, read_page

SECRET = b"s" * 32
KINDS = ("datetime?", "datetime", "int")
KEY = (None, datetime(2026, 9, 1, 1, 2, 3, 456789, tzinfo=timezone.utc), 42)


def test_a_cursor_round_trips_its_key_direction_and_page_number():
    token = encode(Keyset(KEY, True, 7), SECRET, "inbox:todo:{}")
    assert decode(token, SECRET, "inbox:todo:{}", KINDS) == Keyset(KEY, True, 7)
    assert "2026" not in token and "=" not in token  # opaque, URL-safe


@pytest.mark.parametrize("change", ["scope", "secret", "flip", "cut", "garbage", "long", "kinds", "empty"])
def test_a_cursor_of_another_list_or_edited_in_any_way_is_refused(change):
    token = encode(Keyset(KEY), SECRET, "inbox:todo:{}")
    scope, secret, kinds = "inbox:todo:{}", SECRET, KINDS
    if change == "scope":
        scope = 'inbox:todo:{"name": "王"}'
    elif change == "secret":
        secret = b"t" * 32
    elif change == "flip":
        token = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    elif change == "cut":
        token = token[:-4]
    elif change == "garbage":
        token = "%%%!"
    elif change == "long":
        token = "A" * 5000
    elif change == "kinds":
        kinds = ("int", "datetime", "int")
    else:
        token = ""
    with pytest.raises(CursorError, match="翻页参数无效"):
        decode(token, secret, scope, kinds)


def test_a_page_knows_its_neighbours_and_going_back_past_the_start_gives_the_first_page():
    rows = [(n, (n,)) for n in range(1, 4)]  # three rows after the key, per page two
    page = read_page(rows, 2, Keyset((0,), False, 3))
    assert page is not None and page.items == [1, 2] and page.number == 3
    assert page.next == Keyset((2,), False, 4) and page.prev == Keyset((1,), True, 2)
    back = read_page([(5, (5,)), (4, (4,)), (3, (3,))], 2, Keyset((6,), True, 2))
    assert back is not None and back.items == [4, 5] and back.prev == Keyset((4,), True, 1)
    assert read_page([(5, (5,))], 2, Keyset((6,), True, 2)) is None  # fewer than a page before: page 1
    first = read_page(rows[:2], 2, None)
    assert first is not None and first.next is None and first.prev is None and first.number == 1

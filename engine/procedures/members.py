"""The directory hook that diagram expressions read: ``role_members(role)`` lists the active holders of a
role in the running case's jurisdiction (会签 signers).

Expressions live in procedures, the directory in access and the running case in runtime: the runtime sets
the lookup for the duration of a case's engine steps (``using``), the studio's dry run sets a stand-in.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

# role code, region code → usernames of the active holders of that role there (set by the runtime)
MemberLookup = Callable[[str, str], list[str]]
_lookup: contextvars.ContextVar[MemberLookup | None] = contextvars.ContextVar("xiangflow_members", default=None)


@contextlib.contextmanager
def using(lookup: MemberLookup) -> Iterator[None]:
    """Make lookup the directory that ``role_members`` reads for the duration of the block."""
    token = _lookup.set(lookup)
    try:
        yield
    finally:
        _lookup.reset(token)


def role_members(role_code: Any, region_code: Any = None) -> list[str]:
    """Usernames holding role_code in the jurisdiction of the case (region_code is bound by the evaluator).

    :raises ValueError: outside a case, or nobody holds the role there.
    """
    lookup = _lookup.get()
    if lookup is None or not isinstance(region_code, str) or not region_code:
        raise ValueError("role_members() 只能在案件运行时使用")
    members = lookup(str(role_code), region_code)
    if not members:
        raise ValueError(f"本案辖区内没有持有角色 {role_code} 的人员,无法会签")
    return members

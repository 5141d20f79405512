"""The engine's clock. Services take a clock; SpiffWorkflow's timers read the same one.

SpiffWorkflow reads ``datetime.now(timezone.utc)`` inside its timer module only, so the
engine installs a ``datetime`` subclass there whose ``now`` asks the clock of the unit of
work in progress (a context variable). Outside a unit of work it is the system clock.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Protocol

from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """A clock that only moves when told to (tests, benchmarks, dry runs)."""

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        self._now = moment


_SYSTEM = SystemClock()
_current: contextvars.ContextVar[Clock | None] = contextvars.ContextVar("xiangflow_clock", default=None)


def current() -> Clock:
    """The clock of the unit of work in progress, or the system clock."""
    return _current.get() or _SYSTEM


@contextlib.contextmanager
def using(clock: Clock) -> Iterator[None]:
    """Make clock the one SpiffWorkflow's timers read for the duration of the block."""
    token = _current.set(clock)
    try:
        yield
    finally:
        _current.reset(token)


class _ClockDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        moment = current().now()
        return moment.astimezone(tz) if tz is not None else moment.replace(tzinfo=None)


_spiff_timer.datetime = _ClockDatetime

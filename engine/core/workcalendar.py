"""Working days in China: official holidays and make-up workdays (调休), plus local overrides.

The official calendar comes from the maintained ``chinesecalendar`` package, which knows the
years the State Council has published. For a year it does not know, weekends are the only
rest days until an admin enters that year's holidays in the override table; the calendar
reports such years so the admin page can warn (the State Council publishes next year's
holidays each November/December). Overrides (local holidays, corrections) always win.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import date, timedelta

import chinese_calendar


class WorkCalendar:
    def __init__(self, overrides: dict[date, bool] | None = None):
        """overrides maps a date to True (a workday) or False (a rest day)."""
        self.overrides = dict(overrides or {})
        self.unknown_years: set[int] = set()

    def official_known(self, year: int) -> bool:
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def is_workday(self, day: date) -> bool:
        if day in self.overrides:
            return self.overrides[day]
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            self.unknown_years.add(day.year)
            return day.weekday() < 5

    def add_workdays(self, start: date, count: int) -> date:
        """The count-th working day after start (start itself is not counted)."""
        if count < 0:
            raise ValueError("count must be non-negative")
        day = start
        remaining = count
        while remaining:
            day += timedelta(days=1)
            if self.is_workday(day):
                remaining -= 1
        return day

    def workdays_between(self, start: date, end: date) -> int:
        """Working days after start up to and including end."""
        return sum(1 for n in range(1, (end - start).days + 1) if self.is_workday(start + timedelta(days=n)))

    def missing_years(self, today: date) -> list[int]:
        """This year and next, where neither the package nor any override covers the holidays."""
        years = [today.year, today.year + 1] if today.month >= 11 else [today.year]
        return [y for y in years if not self.official_known(y) and not any(d.year == y for d in self.overrides)]


class LazyCalendar(WorkCalendar):
    """A calendar whose overrides are loaded on first use (most units of work never need them)."""

    def __init__(self, load):
        super().__init__()
        self._load = load
        self._real: WorkCalendar | None = None

    def _calendar(self) -> WorkCalendar:
        if self._real is None:
            self._real = self._load()
        return self._real

    def is_workday(self, day: date) -> bool:
        return self._calendar().is_workday(day)

    def missing_years(self, today: date) -> list[int]:
        return self._calendar().missing_years(today)


_current: contextvars.ContextVar[WorkCalendar | None] = contextvars.ContextVar("xiangflow_calendar", default=None)
_DEFAULT = WorkCalendar()


def current() -> WorkCalendar:
    return _current.get() or _DEFAULT


@contextlib.contextmanager
def using(calendar: WorkCalendar) -> Iterator[None]:
    token = _current.set(calendar)
    try:
        yield
    finally:
        _current.reset(token)

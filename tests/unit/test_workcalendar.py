from datetime import date

import pytest

from engine.core import workcalendar
from engine.core.workcalendar import WorkCalendar
from engine.procedures.expressions import evaluate


def test_spring_festival_2026_holidays_are_skipped_and_the_make_up_saturday_counts():
    cal = WorkCalendar()
    assert cal.is_workday(date(2026, 2, 14))  # Saturday, make-up workday (调休)
    assert not cal.is_workday(date(2026, 2, 17))  # 春节
    # Friday 13 Feb + 1 working day is the make-up Saturday 14 Feb
    assert cal.add_workdays(date(2026, 2, 13), 1) == date(2026, 2, 14)
    # from the make-up Saturday, the holiday runs to 23 Feb: the next working day is 24 Feb
    assert cal.add_workdays(date(2026, 2, 14), 1) == date(2026, 2, 24)


def test_national_day_2026_and_its_make_up_saturday():
    cal = WorkCalendar()
    assert cal.add_workdays(date(2026, 9, 28), 3) == date(2026, 10, 8)
    assert cal.is_workday(date(2026, 10, 10))  # Saturday make-up workday
    assert cal.workdays_between(date(2026, 9, 30), date(2026, 10, 10)) == 3  # 8, 9, 10 October


def test_a_year_the_official_calendar_does_not_know_falls_back_to_weekends_and_is_reported():
    cal = WorkCalendar()
    assert cal.add_workdays(date(2026, 12, 25), 10) == date(2027, 1, 8)
    assert 2027 in cal.unknown_years
    assert cal.missing_years(date(2026, 11, 22)) == [2027]
    assert cal.missing_years(date(2026, 6, 1)) == []


def test_an_admin_override_wins_over_the_official_calendar():
    cal = WorkCalendar({date(2027, 1, 1): False, date(2026, 9, 29): False})
    assert not cal.is_workday(date(2027, 1, 1))
    assert cal.add_workdays(date(2026, 9, 28), 1) == date(2026, 9, 30)
    assert cal.missing_years(date(2026, 11, 22)) == []


def test_negative_counts_are_refused():
    with pytest.raises(ValueError):
        WorkCalendar().add_workdays(date(2026, 1, 5), -1)


def test_workdays_helper_in_expressions_uses_the_current_calendar():
    with workcalendar.using(WorkCalendar({date(2026, 9, 29): False})):
        assert evaluate('workdays_after("2026-09-28", 1)', {}) == "2026-09-30T23:59:00+08:00"
    assert evaluate('workdays_after("2026-09-28", 1)', {}) == "2026-09-29T23:59:00+08:00"

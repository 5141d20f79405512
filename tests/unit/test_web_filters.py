"""Remaining and overdue time are counted by one rule: whole days, or whole hours under a day."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from web.filters import time_left_at

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(days=9.99), "剩余 9 天"),
    (timedelta(days=1), "剩余 1 天"),
    (timedelta(hours=23, minutes=59), "剩余 23 小时"),
    (timedelta(minutes=10), "剩余 1 小时"),
    (timedelta(minutes=-10), "超期 1 小时"),
    (timedelta(hours=-5), "超期 5 小时"),
    (timedelta(days=-4), "超期 4 天"),
    (timedelta(days=-4.5), "超期 4 天"),
])
def test_days_and_hours_are_counted_the_same_way_before_and_after_the_due_date(delta, text):
    assert time_left_at(NOW + delta, NOW) == text


def test_no_due_date_shows_nothing():
    assert time_left_at(None, NOW) == ""

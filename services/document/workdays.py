"""Ngày làm việc: add working days (Monday–Friday, minus public holidays) for processing deadlines.

Parts never import each other, so this is a small calendar of document's own, built on the
``holidays`` package's country calendar plus the days off the government decides each year.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import holidays


class WorkingCalendar:
    def __init__(self, *, country: str = "VN", extra_days_off: Iterable[date] = ()) -> None:
        self._holidays = holidays.country_holidays(country)
        self._extra = frozenset(extra_days_off)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self._holidays and day not in self._extra

    def add_working_days(self, start: date, days: int) -> date:
        """The date ``days`` working days after ``start``; 0 means ``start`` itself if it is a
        working day, else the next one (a document passed on "at once")."""
        if days < 0:
            raise ValueError("days must not be negative")
        current = start
        while not self.is_working_day(current):
            current += timedelta(days=1)
        remaining = days
        while remaining:
            current += timedelta(days=1)
            if self.is_working_day(current):
                remaining -= 1
        return current

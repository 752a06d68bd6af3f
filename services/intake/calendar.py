"""Lịch làm việc và thời hạn giải quyết: working days, office hours and deadline arithmetic.

Processing time is kept in working hours (8 to a working day in Thanh Hóa); this module turns
"accepted at X, N working hours, paused during P" into an instant in Asia/Ho_Chi_Minh time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import NamedTuple

import holidays

from shared import clock

VN_TZ = clock.VN_TZ  # one definition of Vietnam's zone, in shared.clock

# Labour Code 2019 and the civil-service working week: Saturday and Sunday are days off.
# Saturday-morning reception at some desks does not make Saturday count for deadlines.
DEFAULT_WEEKEND: frozenset[int] = frozenset({5, 6})

# Thanh Hóa office hours [unverified: provincial decision, may change by season]; they total
# 8 hours, the length of the "working day" that processing times are expressed in.
DEFAULT_OFFICE_HOURS: tuple[tuple[time, time], ...] = (
    (time(7, 30), time(11, 30)),
    (time(13, 30), time(17, 30)),
)

# Per-procedure setting [confirmed]: a dossier that arrives after this time starts its clock
# the next working day. The time itself is data so that a procedure can carry another one.
DEFAULT_CUTOFF = time(15, 0)

# A calendar that finds no working day in this many consecutive days is misconfigured
# (e.g. every day overridden as a day off); stop rather than loop for ever.
_MAX_IDLE_DAYS = 400

_HOUR = timedelta(hours=1)
_MICROS_PER_HOUR = Decimal(3_600_000_000)

_SWAP_REASON = {
    "vi": "Ngày làm việc bù theo lịch nghỉ do Chính phủ công bố",
    "en_US": "Working day swapped by government announcement",
}

Period = tuple[time, time]


class CalendarError(RuntimeError):
    """The calendar cannot answer (no working time found within a reasonable horizon)."""


class DayOff(NamedTuple):
    """A dated entry of the calendar: a holiday with its name, or a swap with its reason."""

    day: date
    name: str


@dataclass(frozen=True, slots=True)
class CalendarOverride:
    """Administrator's decision for one date, beating every computed rule.

    ``working=False`` is an extra day off; ``working=True`` makes a normally free day (usually a
    Saturday given in exchange for a bridge day) a working day.
    """

    day: date
    working: bool
    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("a calendar override needs a reason")

    @classmethod
    def day_off(cls, day: date, reason: str) -> CalendarOverride:
        return cls(day=day, working=False, reason=reason)

    @classmethod
    def working_day(cls, day: date, reason: str) -> CalendarOverride:
        return cls(day=day, working=True, reason=reason)

    @classmethod
    def swap(
        cls, *, day_off: date, worked_instead: date, reason: str
    ) -> tuple[CalendarOverride, CalendarOverride]:
        """The usual government swap: rest on ``day_off``, work on ``worked_instead``."""
        return cls.day_off(day_off, reason), cls.working_day(worked_instead, reason)


@dataclass(frozen=True, slots=True)
class Pause:
    """An interval during which the deadline clock is stopped (e.g. waiting for a supplement).

    ``end=None`` means the dossier is still paused.
    """

    start: datetime
    end: datetime | None = None


def as_vietnam_time(moment: datetime) -> datetime:
    """Convert an aware datetime to Asia/Ho_Chi_Minh; naive datetimes are refused."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise ValueError(f"naive datetime {moment.isoformat()} : give a timezone (+07:00)")
    return moment.astimezone(VN_TZ)


def to_hours(delta: timedelta) -> Decimal:
    """Exact hours in a timedelta, as a Decimal."""
    return Decimal(delta // timedelta(microseconds=1)) / _MICROS_PER_HOUR


def _hours_to_timedelta(hours: Decimal | float | int) -> timedelta:
    # Through str() so that 0.1 (float) means one tenth, not 0.1000000000000000055…
    value = hours if isinstance(hours, Decimal) else Decimal(str(hours))
    if not value.is_finite() or value < 0:
        raise ValueError(f"working hours must be a finite number >= 0, got {hours!r}")
    micros = (value * _MICROS_PER_HOUR).to_integral_value()
    return timedelta(microseconds=int(micros))


def _validate_periods(periods: Sequence[Period]) -> tuple[Period, ...]:
    checked = tuple((start, end) for start, end in periods)
    if not checked:
        raise ValueError("office hours need at least one period")
    previous_end: time | None = None
    for start, end in checked:
        if start.tzinfo is not None or end.tzinfo is not None:
            raise ValueError("office hours are wall-clock times without a timezone")
        if not start < end:
            raise ValueError(f"office period {start}–{end} ends before it starts")
        if previous_end is not None and start < previous_end:
            raise ValueError("office periods must be sorted and must not overlap")
        previous_end = end
    return checked


class WorkingCalendar:
    """Working days and office hours of one agency (or the whole province).

    A day is a working day, in this order of precedence:
    1. the administrator's override for that date, if any;
    2. a weekend day the government declared worked (as published by ``holidays``);
    3. not if it is a public holiday or a made-up day (``holidays``, country VN, lunar dates);
    4. not if it is a weekend day; otherwise yes.
    """

    def __init__(
        self,
        *,
        overrides: Iterable[CalendarOverride] = (),
        office_hours: Sequence[Period] = DEFAULT_OFFICE_HOURS,
        office_hours_from: Mapping[date, Sequence[Period]] | None = None,
        weekend: Iterable[int] = DEFAULT_WEEKEND,
        language: str = "vi",
        holiday_calendar: holidays.HolidayBase | None = None,
    ) -> None:
        self._overrides: dict[date, CalendarOverride] = {}
        for override in overrides:
            if override.day in self._overrides:
                raise ValueError(f"two overrides for {override.day.isoformat()}")
            self._overrides[override.day] = override
        # Office hours change by decision from a given date on: keep (effective_from, periods)
        # sorted so that a dossier is measured with the hours in force on each day.
        schedule = [(date.min, _validate_periods(office_hours))]
        for effective_from, periods in sorted((office_hours_from or {}).items()):
            schedule.append((effective_from, _validate_periods(periods)))
        self._schedule = schedule
        self._weekend = frozenset(weekend)
        if not self._weekend <= set(range(7)):
            raise ValueError("weekend days are weekday numbers 0 (Monday) to 6 (Sunday)")
        self._language = language
        self._holidays = holiday_calendar or holidays.country_holidays("VN", language=language)
        self._loaded_years: set[int] = set()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- days

    def _ensure_years(self, year: int) -> None:
        # Swaps can cross a year boundary (a January bridge day worked off in December), so
        # the neighbouring years are loaded too. Loading mutates the holidays object: lock.
        if year in self._loaded_years:
            return
        with self._lock:
            for y in (year - 1, year, year + 1):
                # Membership of any date of a year makes an expanding HolidayBase load it.
                _ = date(y, 1, 1) in self._holidays
            self._loaded_years.add(year)

    def _announced_workdays(self) -> set[date]:
        return set(getattr(self._holidays, "weekend_workdays", set()))

    def is_working_day(self, day: date) -> bool:
        """True when civil servants work on ``day`` (deadlines run on it)."""
        if isinstance(day, datetime):
            raise TypeError("is_working_day takes a date; use as_vietnam_time(x).date()")
        override = self._overrides.get(day)
        if override is not None:
            return override.working
        self._ensure_years(day.year)
        if day.weekday() in self._weekend:
            return day in self._announced_workdays()
        return day not in self._holidays

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        candidate = day
        for _ in range(_MAX_IDLE_DAYS):
            candidate += timedelta(days=1)
            if self.is_working_day(candidate):
                return candidate
        raise CalendarError(f"no working day within {_MAX_IDLE_DAYS} days after {day}")

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in the half-open range [start, end); negative when end < start."""
        if end < start:
            return -self.working_days_between(end, start)
        count = 0
        day = start
        while day < end:
            if self.is_working_day(day):
                count += 1
            day += timedelta(days=1)
        return count

    def holidays_in(self, year: int) -> list[DayOff]:
        """Non-working days of ``year`` other than plain weekends, with their names.

        Public holidays (a holiday falling on a weekend is listed together with the day it is
        made up on), days off announced by the government, and administrators' extra days off.
        A date an administrator made a working day is left out.
        """
        self._ensure_years(year)
        entries: dict[date, str] = {}
        for day, name in self._holidays.items():
            if day.year != year:
                continue
            override = self._overrides.get(day)
            if override is not None and override.working:
                continue
            entries[day] = name
        for override in self._overrides.values():
            if override.day.year == year and not override.working:
                entries.setdefault(override.day, override.reason)
        return [DayOff(day, entries[day]) for day in sorted(entries)]

    def working_weekend_days_in(self, year: int) -> list[DayOff]:
        """Weekend days of ``year`` that are working days, with the reason."""
        self._ensure_years(year)
        reason = _SWAP_REASON.get(self._language, _SWAP_REASON["vi"])
        entries: dict[date, str] = {
            day: reason
            for day in self._announced_workdays()
            if day.year == year and day.weekday() in self._weekend
        }
        for override in self._overrides.values():
            if override.day.year != year or override.day.weekday() not in self._weekend:
                continue
            if override.working:
                entries[override.day] = override.reason
            else:
                entries.pop(override.day, None)
        return [DayOff(day, entries[day]) for day in sorted(entries)]

    # ----------------------------------------------------------------- hours

    def office_periods_on(self, day: date) -> tuple[Period, ...]:
        """Office periods (wall-clock) in force on ``day``; empty on a non-working day."""
        if not self.is_working_day(day):
            return ()
        periods = self._schedule[0][1]
        for effective_from, candidate in self._schedule:
            if effective_from > day:
                break
            periods = candidate
        return periods

    def working_hours_on(self, day: date) -> Decimal:
        """Length of the working day ``day`` in hours (0 for a day off)."""
        total = timedelta()
        for start, end in self.office_periods_on(day):
            total += datetime.combine(day, end) - datetime.combine(day, start)
        return to_hours(total)

    def _intervals_from(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Office intervals (aware) from ``moment`` on, the first one clipped at ``moment``."""
        day = moment.date()
        idle = 0
        while True:
            periods = self.office_periods_on(day)
            if periods:
                idle = 0
                for start, end in periods:
                    begin = datetime.combine(day, start, tzinfo=VN_TZ)
                    finish = datetime.combine(day, end, tzinfo=VN_TZ)
                    if finish <= moment:
                        continue
                    yield max(begin, moment), finish
            else:
                idle += 1
                if idle > _MAX_IDLE_DAYS:
                    raise CalendarError(f"no working time within {_MAX_IDLE_DAYS} days of {day}")
            day += timedelta(days=1)

    def next_working_instant(self, moment: datetime) -> datetime:
        """``moment`` itself during office hours, else the start of the next office period."""
        start, _ = next(self._intervals_from(as_vietnam_time(moment)))
        return start

    def clock_start(self, accepted_at: datetime, *, cutoff: time | None = None) -> datetime:
        """The instant the deadline clock starts for a dossier accepted at ``accepted_at``.

        Outside office hours the clock starts at the next working instant. With a ``cutoff``
        (the procedure's setting, usually 15:00), a dossier accepted after the cutoff on a
        working day, or at any time on a non-working day, starts at the beginning of the next
        working day. Exactly at the cutoff counts as before it.
        """
        local = as_vietnam_time(accepted_at)
        if cutoff is not None:
            if cutoff.tzinfo is not None:
                raise ValueError("the cut-off is a wall-clock time without a timezone")
            day = local.date()
            if not self.is_working_day(day) or local.time() > cutoff:
                next_day = self.next_working_day(day)
                first_start = self.office_periods_on(next_day)[0][0]
                return datetime.combine(next_day, first_start, tzinfo=VN_TZ)
        return self.next_working_instant(local)

    def add_working_hours(
        self,
        start: datetime,
        hours: Decimal | float | int,
        *,
        pauses: Iterable[Pause | tuple[datetime, datetime | None]] = (),
    ) -> datetime | None:
        """``start`` plus ``hours`` of working time, skipping days off, breaks and pauses.

        When the hours run out exactly at the end of an office period the result is that end
        (17:30), not the start of the next period. Returns ``None`` when the clock is still
        paused (a pause without an end) before the hours are used up: the due instant is not
        known yet. A pause that opens after the due instant does not matter.
        """
        remaining = _hours_to_timedelta(hours)
        origin = as_vietnam_time(start)
        if not remaining:
            return origin
        closed, open_from = _normalise_pauses(pauses)
        for begin, end in self._intervals_from(origin):
            if open_from is not None and begin >= open_from:
                return None
            if open_from is not None:
                end = min(end, open_from)
            for piece_start, piece_end in _subtract(begin, end, closed):
                available = piece_end - piece_start
                if remaining <= available:
                    return piece_start + remaining
                remaining -= available
        raise AssertionError("unreachable: _intervals_from is endless")  # pragma: no cover

    def working_hours_between(
        self,
        start: datetime,
        end: datetime,
        *,
        pauses: Iterable[Pause | tuple[datetime, datetime | None]] = (),
    ) -> Decimal:
        """Working hours from ``start`` to ``end`` not covered by a pause (negative if reversed).

        A pause without an end lasts until ``end``.
        """
        a, b = as_vietnam_time(start), as_vietnam_time(end)
        if b < a:
            return -self.working_hours_between(b, a, pauses=pauses)
        closed, open_from = _normalise_pauses(pauses)
        limit = b if open_from is None else min(b, open_from)
        total = timedelta()
        if limit <= a:
            return to_hours(total)
        for begin, finish in self._intervals_from(a):
            if begin >= limit:
                break
            for piece_start, piece_end in _subtract(begin, min(finish, limit), closed):
                total += piece_end - piece_start
        return to_hours(total)

    def due_date(
        self,
        accepted_at: datetime,
        hours: Decimal | float | int,
        *,
        cutoff: time | None = None,
        pauses: Iterable[Pause | tuple[datetime, datetime | None]] = (),
    ) -> datetime | None:
        """Hạn trả kết quả: clock start (with the cut-off rule) plus processing hours.

        ``None`` while the dossier is paused with no end yet (see ``add_working_hours``).
        """
        started = self.clock_start(accepted_at, cutoff=cutoff)
        return self.add_working_hours(started, hours, pauses=pauses)


def _normalise_pauses(
    pauses: Iterable[Pause | tuple[datetime, datetime | None]],
) -> tuple[list[tuple[datetime, datetime]], datetime | None]:
    """Merge pauses; return the closed ones sorted, and the start of the open one if any."""
    closed: list[tuple[datetime, datetime]] = []
    open_from: datetime | None = None
    for item in pauses:
        begin, end = (item.start, item.end) if isinstance(item, Pause) else item
        begin = as_vietnam_time(begin)
        if end is None:
            open_from = begin if open_from is None else min(open_from, begin)
            continue
        end = as_vietnam_time(end)
        if end < begin:
            raise ValueError(f"pause ends ({end.isoformat()}) before it starts ({begin.isoformat()})")
        closed.append((begin, end))
    closed.sort()
    merged: list[tuple[datetime, datetime]] = []
    for begin, end in closed:
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    if open_from is not None:
        # Whatever starts at or after the open pause is swallowed by it.
        merged = [(b, min(e, open_from)) for b, e in merged if b < open_from]
    return merged, open_from


def _subtract(
    begin: datetime, end: datetime, pauses: Sequence[tuple[datetime, datetime]]
) -> Iterator[tuple[datetime, datetime]]:
    """The parts of [begin, end) outside every pause (pauses sorted and merged)."""
    cursor = begin
    for p_begin, p_end in pauses:
        if p_end <= cursor:
            continue
        if p_begin >= end:
            break
        if p_begin > cursor:
            yield cursor, p_begin
        cursor = max(cursor, p_end)
        if cursor >= end:
            return
    if cursor < end:
        yield cursor, end

"""Deadline engine: every expected value below was worked out by hand from a 2026–2027 calendar
(weekdays, the Labour Code holidays and the government's 2026 swap), not by running the code."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from services.intake.calendar import (
    VN_TZ,
    CalendarOverride,
    DayOff,
    Pause,
    WorkingCalendar,
)


def vn(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=VN_TZ)


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar()


# ------------------------------------------------------------------ working days

@pytest.mark.parametrize(
    ("day", "working", "why"),
    [
        (date(2026, 2, 13), True, "Friday before Tết 2026"),
        (date(2026, 2, 14), False, "Saturday"),
        (date(2026, 2, 16), False, "Tết 2026: lunar New Year's Eve (Mon)"),
        (date(2026, 2, 17), False, "Tết 2026: Mùng 1"),
        (date(2026, 2, 20), False, "Tết 2026: Mùng 4 (Fri)"),
        (date(2026, 2, 23), True, "first Monday after Tết 2026"),
        (date(2026, 4, 26), False, "Hùng Kings' day 2026 falls on a Sunday"),
        (date(2026, 4, 27), False, "… made up on Monday 27/4/2026"),
        (date(2026, 4, 28), True, "Tuesday after"),
        (date(2026, 4, 29), True, "Wednesday before 30/4"),
        (date(2026, 4, 30), False, "30/4/2026 (Thu)"),
        (date(2026, 5, 1), False, "1/5/2026 (Fri)"),
        (date(2026, 5, 4), True, "Monday after"),
        (date(2026, 8, 22), True, "Saturday 22/8/2026 worked in exchange for 31/8"),
        (date(2026, 8, 31), False, "Monday 31/8/2026 off (swapped)"),
        (date(2026, 9, 1), False, "2/9 adjacent day 2026 (Tue)"),
        (date(2026, 9, 2), False, "National Day 2026 (Wed)"),
        (date(2026, 9, 3), True, "Thursday after"),
        (date(2026, 12, 31), True, "last day of 2026 (Thu)"),
        (date(2027, 1, 1), False, "New Year 2027 (Fri)"),
        (date(2027, 1, 4), True, "Monday 4/1/2027"),
        (date(2027, 2, 3), True, "Wednesday before Tết 2027"),
        (date(2027, 2, 4), False, "Tết 2027: 29 Tết, making up Mùng 1 on a Saturday"),
        (date(2027, 2, 5), False, "Tết 2027: New Year's Eve (Fri)"),
        (date(2027, 2, 6), False, "Tết 2027: Mùng 1 is Saturday 6/2/2027"),
        (date(2027, 2, 8), False, "Tết 2027: Mùng 3 (Mon)"),
        (date(2027, 2, 10), False, "Tết 2027: Mùng 5, making up Mùng 2 on a Sunday"),
        (date(2027, 2, 11), True, "Thursday after Tết 2027"),
        (date(2027, 5, 1), False, "1/5/2027 is a Saturday"),
        (date(2027, 5, 3), False, "… made up on Monday 3/5/2027"),
    ],
)
def test_working_days_follow_the_vietnamese_calendar(
    cal: WorkingCalendar, day: date, working: bool, why: str
) -> None:
    assert cal.is_working_day(day) is working, why


def test_holidays_of_2026_with_names(cal: WorkingCalendar) -> None:
    listed = cal.holidays_in(2026)
    assert [entry.day for entry in listed] == [
        date(2026, 1, 1),
        date(2026, 2, 16), date(2026, 2, 17), date(2026, 2, 18), date(2026, 2, 19),
        date(2026, 2, 20),
        date(2026, 4, 26), date(2026, 4, 27),
        date(2026, 4, 30), date(2026, 5, 1),
        date(2026, 8, 31), date(2026, 9, 1), date(2026, 9, 2),
        date(2026, 11, 24),  # Ngày Văn hóa Việt Nam, as the holidays package has it
    ]
    names = dict(listed)
    assert names[date(2026, 2, 17)] == "Tết Nguyên Đán"
    assert names[date(2026, 4, 27)] == "Ngày Giỗ Tổ Hùng Vương (nghỉ bù)"
    assert cal.working_weekend_days_in(2026) == [
        DayOff(date(2026, 8, 22), "Ngày làm việc bù theo lịch nghỉ do Chính phủ công bố")
    ]


def test_holiday_names_in_english() -> None:
    english = WorkingCalendar(language="en_US")
    assert dict(english.holidays_in(2026))[date(2026, 5, 1)] == "International Labor Day"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2026, 4, 13), date(2026, 4, 20), 5),  # a plain week
        (date(2026, 2, 12), date(2026, 2, 24), 3),  # Thu 12, Fri 13, Mon 23 (Tết between)
        (date(2026, 12, 31), date(2027, 1, 5), 2),  # Thu 31/12, Mon 4/1
        (date(2026, 4, 20), date(2026, 4, 13), -5),  # reversed
        (date(2026, 4, 13), date(2026, 4, 13), 0),
    ],
)
def test_working_days_between(cal: WorkingCalendar, start: date, end: date, expected: int) -> None:
    assert cal.working_days_between(start, end) == expected


def test_next_working_day_skips_the_30_4_bridge(cal: WorkingCalendar) -> None:
    assert cal.next_working_day(date(2026, 4, 29)) == date(2026, 5, 4)


# ------------------------------------------------------------------ overrides

def test_administrator_swap_moves_the_due_date() -> None:
    # The province gives Friday 5/6/2026 off and has Saturday 13/6/2026 worked instead.
    swap = CalendarOverride.swap(
        day_off=date(2026, 6, 5),
        worked_instead=date(2026, 6, 13),
        reason="Quyết định của Chủ tịch UBND tỉnh: nghỉ bù, làm bù",
    )
    plain = WorkingCalendar()
    swapped = WorkingCalendar(overrides=swap)
    assert swapped.is_working_day(date(2026, 6, 5)) is False
    assert swapped.is_working_day(date(2026, 6, 13)) is True
    # Wed 10/6 09:00 + 24 h: Wed 6.5 h, Thu 8 h, Fri 12/6 8 h = 22.5 h, then 1.5 h more.
    assert plain.due_date(vn(2026, 6, 10, 9), 24) == vn(2026, 6, 15, 9)  # Monday
    assert swapped.due_date(vn(2026, 6, 10, 9), 24) == vn(2026, 6, 13, 9)  # the worked Saturday
    assert DayOff(date(2026, 6, 5), swap[0].reason) in swapped.holidays_in(2026)
    assert DayOff(date(2026, 6, 13), swap[1].reason) in swapped.working_weekend_days_in(2026)


def test_overrides_beat_computed_holidays_and_announced_swaps() -> None:
    cal = WorkingCalendar(
        overrides=[
            CalendarOverride.working_day(date(2026, 8, 31), "Tỉnh không áp dụng hoán đổi"),
            CalendarOverride.day_off(date(2026, 8, 22), "Tỉnh không áp dụng hoán đổi"),
        ]
    )
    assert cal.is_working_day(date(2026, 8, 31)) is True
    assert cal.is_working_day(date(2026, 8, 22)) is False
    assert date(2026, 8, 31) not in [entry.day for entry in cal.holidays_in(2026)]
    assert cal.working_weekend_days_in(2026) == []


def test_override_validation() -> None:
    with pytest.raises(ValueError):
        CalendarOverride.day_off(date(2026, 6, 5), "  ")
    with pytest.raises(ValueError):
        WorkingCalendar(
            overrides=[
                CalendarOverride.day_off(date(2026, 6, 5), "a"),
                CalendarOverride.working_day(date(2026, 6, 5), "b"),
            ]
        )


# ------------------------------------------------------------------ clock start

@pytest.mark.parametrize(
    ("accepted", "cutoff", "expected", "why"),
    [
        (vn(2026, 4, 15, 9), None, vn(2026, 4, 15, 9), "inside office hours"),
        (vn(2026, 4, 15, 12), None, vn(2026, 4, 15, 13, 30), "lunch break → 13:30"),
        (vn(2026, 4, 15, 11, 30), None, vn(2026, 4, 15, 13, 30), "end of morning → 13:30"),
        (vn(2026, 4, 15, 7), None, vn(2026, 4, 15, 7, 30), "before opening → 07:30"),
        (vn(2026, 4, 15, 18), None, vn(2026, 4, 16, 7, 30), "18:00 → next morning"),
        (vn(2026, 4, 15, 17, 30), None, vn(2026, 4, 16, 7, 30), "17:30 sharp → next morning"),
        (vn(2026, 4, 19, 10), None, vn(2026, 4, 20, 7, 30), "Sunday → Monday 07:30"),
        (vn(2026, 4, 29, 15, 30), None, vn(2026, 4, 29, 15, 30), "no cut-off: same afternoon"),
        (vn(2026, 4, 15, 14, 59), time(15), vn(2026, 4, 15, 14, 59), "before the cut-off"),
        (vn(2026, 4, 15, 15), time(15), vn(2026, 4, 15, 15), "at 15:00 sharp: not after"),
        (vn(2026, 4, 15, 15, 1), time(15), vn(2026, 4, 16, 7, 30), "after 15:00 → next day"),
        (vn(2026, 4, 17, 16), time(15), vn(2026, 4, 20, 7, 30), "Friday 16:00 → Monday"),
        (vn(2026, 4, 29, 15, 30), time(15), vn(2026, 5, 4, 7, 30), "before 30/4–1/5 → 4/5"),
        (vn(2026, 4, 18, 9), time(15), vn(2026, 4, 20, 7, 30), "Saturday morning desk"),
        (vn(2026, 4, 15, 12), time(15), vn(2026, 4, 15, 13, 30), "lunch, before cut-off"),
    ],
)
def test_clock_start(
    cal: WorkingCalendar, accepted: datetime, cutoff: time | None, expected: datetime, why: str
) -> None:
    assert cal.clock_start(accepted, cutoff=cutoff) == expected, why


def test_clock_start_accepts_any_timezone_and_answers_in_vietnam_time(cal: WorkingCalendar) -> None:
    started = cal.clock_start(datetime(2026, 4, 15, 3, 0, tzinfo=UTC))
    assert started == vn(2026, 4, 15, 10)
    assert started.utcoffset() == timedelta(hours=7)


def test_naive_datetimes_are_refused(cal: WorkingCalendar) -> None:
    naive = datetime(2026, 4, 15, 9)  # noqa: DTZ001 - the naive datetime under test
    with pytest.raises(ValueError):
        cal.clock_start(naive)
    with pytest.raises(ValueError):
        cal.add_working_hours(naive, 8)
    with pytest.raises(ValueError):
        cal.working_hours_between(vn(2026, 4, 15, 9), naive)
    with pytest.raises(ValueError):
        cal.add_working_hours(vn(2026, 4, 15, 9), 8, pauses=[(naive, None)])


# ------------------------------------------------------------------ adding hours

@pytest.mark.parametrize(
    ("start", "hours", "expected", "why"),
    [
        (vn(2026, 4, 13, 8), 8, vn(2026, 4, 14, 8), "one working day from Monday 08:00"),
        (vn(2026, 4, 13, 13, 30), 4, vn(2026, 4, 13, 17, 30), "ends at 17:30, not next morning"),
        (vn(2026, 4, 13, 7, 30), 8, vn(2026, 4, 13, 17, 30), "a full day ends at 17:30"),
        (vn(2026, 4, 13, 7, 30), 4, vn(2026, 4, 13, 11, 30), "a morning ends at 11:30"),
        (vn(2026, 4, 13, 7, 30), Decimal("1.25"), vn(2026, 4, 13, 8, 45), "fractional hours"),
        (vn(2026, 4, 13, 7, 30), 2.75, vn(2026, 4, 13, 10, 15), "float hours"),
        (vn(2026, 4, 13, 10), Decimal("2.5"), vn(2026, 4, 13, 14, 30), "1.5 h + lunch + 1 h"),
        (vn(2026, 4, 13, 7, 30), 40, vn(2026, 4, 17, 17, 30), "five days, Mon→Fri"),
        (vn(2026, 4, 14, 7, 30), 40, vn(2026, 4, 20, 17, 30), "five days over a weekend"),
        (vn(2026, 2, 12, 10), 24, vn(2026, 2, 24, 10), "over Tết 2026 (14–22/2 off)"),
        (vn(2026, 4, 24, 8), 16, vn(2026, 4, 29, 8), "over Hùng Kings' made-up Monday"),
        (vn(2026, 4, 29, 7, 30), 16, vn(2026, 5, 4, 17, 30), "over 30/4 and 1/5 2026"),
        (vn(2026, 8, 28, 13, 30), 8, vn(2026, 9, 3, 11, 30), "over 31/8–2/9 2026"),
        (vn(2026, 8, 21, 13, 30), 8, vn(2026, 8, 22, 11, 30), "into the worked Saturday"),
        (vn(2027, 4, 29, 13, 30), 8, vn(2027, 5, 4, 11, 30), "1/5/2027 Sat made up on 3/5"),
        (vn(2026, 12, 31, 14), 16, vn(2027, 1, 5, 14), "across the year end"),
        (vn(2027, 2, 3, 9, 30), 8, vn(2027, 2, 11, 9, 30), "over Tết 2027 (4–10/2 off)"),
        (vn(2026, 4, 13, 9), 0, vn(2026, 4, 13, 9), "zero hours"),
    ],
)
def test_add_working_hours(
    cal: WorkingCalendar, start: datetime, hours: Decimal | float, expected: datetime, why: str
) -> None:
    assert cal.add_working_hours(start, hours) == expected, why


def test_negative_hours_are_refused(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError):
        cal.add_working_hours(vn(2026, 4, 13, 9), -1)


# ------------------------------------------------------------------ due dates

@pytest.mark.parametrize(
    ("accepted", "hours", "cutoff", "expected", "why"),
    [
        (vn(2026, 4, 15, 15, 30), 8, time(15), vn(2026, 4, 16, 17, 30), "cut-off: next day"),
        (vn(2026, 4, 15, 15, 30), 8, None, vn(2026, 4, 16, 15, 30), "no cut-off"),
        (vn(2026, 4, 15, 14), 8, time(15), vn(2026, 4, 16, 14), "before the cut-off"),
        (vn(2026, 4, 15, 12), 4, None, vn(2026, 4, 15, 17, 30), "accepted at lunch"),
        (vn(2026, 4, 15, 18), 4, None, vn(2026, 4, 16, 11, 30), "accepted at 18:00"),
        (vn(2026, 4, 19, 10), 8, None, vn(2026, 4, 20, 17, 30), "accepted on a Sunday"),
        (vn(2026, 2, 13, 16), 8, time(15), vn(2026, 2, 23, 17, 30), "Friday before Tết"),
    ],
)
def test_due_date(
    cal: WorkingCalendar,
    accepted: datetime,
    hours: int,
    cutoff: time | None,
    expected: datetime,
    why: str,
) -> None:
    assert cal.due_date(accepted, hours, cutoff=cutoff) == expected, why


def test_supplement_pause_of_two_working_days_moves_the_due_date_two_working_days(
    cal: WorkingCalendar,
) -> None:
    accepted = vn(2026, 4, 13, 7, 30)
    assert cal.due_date(accepted, 40) == vn(2026, 4, 17, 17, 30)
    # Paused Tuesday and Wednesday: due Friday → Tuesday of the next week.
    whole_days = [(vn(2026, 4, 14, 7, 30), vn(2026, 4, 16, 7, 30))]
    assert cal.due_date(accepted, 40, pauses=whole_days) == vn(2026, 4, 21, 17, 30)
    # The same 16 working hours taken mid-day (Tue 10:00 → Thu 10:00).
    mid_day = [Pause(vn(2026, 4, 14, 10), vn(2026, 4, 16, 10))]
    assert cal.due_date(accepted, 40, pauses=mid_day) == vn(2026, 4, 21, 17, 30)


def test_pauses_only_count_their_working_time(cal: WorkingCalendar) -> None:
    accepted = vn(2026, 4, 13, 7, 30)
    # Fri 15:00 → Mon 09:00 covers 2.5 h on Friday and 1.5 h on Monday.
    over_weekend = [(vn(2026, 4, 17, 15), vn(2026, 4, 20, 9))]
    assert cal.due_date(accepted, 40, pauses=over_weekend) == vn(2026, 4, 20, 11, 30)
    # Overlapping pauses are not counted twice.
    overlapping = [
        (vn(2026, 4, 14, 7, 30), vn(2026, 4, 15, 17, 30)),
        (vn(2026, 4, 15, 7, 30), vn(2026, 4, 16, 7, 30)),
    ]
    assert cal.due_date(accepted, 40, pauses=overlapping) == vn(2026, 4, 21, 17, 30)
    # A pause before the clock starts changes nothing.
    earlier = [(vn(2026, 4, 10, 8), vn(2026, 4, 13, 7, 30))]
    assert cal.due_date(accepted, 40, pauses=earlier) == vn(2026, 4, 17, 17, 30)


def test_open_pause_means_no_due_date_yet(cal: WorkingCalendar) -> None:
    accepted = vn(2026, 4, 13, 7, 30)
    assert cal.due_date(accepted, 40, pauses=[Pause(vn(2026, 4, 15, 10))]) is None
    # Paused only after the deadline had passed: the due instant is already known.
    assert cal.due_date(accepted, 40, pauses=[(vn(2026, 4, 20, 8), None)]) == vn(2026, 4, 17, 17, 30)


def test_pause_ending_before_it_starts_is_refused(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError):
        cal.due_date(vn(2026, 4, 13, 8), 8, pauses=[(vn(2026, 4, 14, 8), vn(2026, 4, 13, 8))])


# ------------------------------------------------------------------ hours used

@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (vn(2026, 4, 13, 7, 30), vn(2026, 4, 17, 17, 30), Decimal(40)),
        (vn(2026, 4, 13, 10), vn(2026, 4, 13, 14), Decimal(2)),  # 1.5 + 0.5 around lunch
        (vn(2026, 4, 13, 11, 30), vn(2026, 4, 13, 13, 30), Decimal(0)),  # lunch only
        (vn(2026, 2, 13, 7, 30), vn(2026, 2, 23, 7, 30), Decimal(8)),  # Friday, then Tết
        (vn(2026, 12, 31, 16), vn(2027, 1, 4, 8), Decimal("2")),  # 1.5 + 0.5
        (vn(2026, 4, 13, 8), vn(2026, 4, 13, 8, 20), Decimal(1) / Decimal(3)),
        (vn(2026, 4, 17, 17, 30), vn(2026, 4, 13, 7, 30), Decimal(-40)),
    ],
)
def test_working_hours_between(
    cal: WorkingCalendar, start: datetime, end: datetime, expected: Decimal
) -> None:
    assert cal.working_hours_between(start, end) == expected


def test_working_hours_between_leaves_out_pauses(cal: WorkingCalendar) -> None:
    start, end = vn(2026, 4, 13, 7, 30), vn(2026, 4, 17, 17, 30)
    pauses = [(vn(2026, 4, 14, 7, 30), vn(2026, 4, 16, 7, 30))]
    assert cal.working_hours_between(start, end, pauses=pauses) == Decimal(24)
    still_paused = [(vn(2026, 4, 16, 7, 30), None)]
    assert cal.working_hours_between(start, end, pauses=still_paused) == Decimal(24)


def test_adding_then_measuring_gives_the_hours_back(cal: WorkingCalendar) -> None:
    start = vn(2026, 12, 30, 9, 10)
    for hours in (Decimal("0.5"), Decimal(7), Decimal("13.75"), Decimal(80)):
        due = cal.add_working_hours(start, hours)
        assert due is not None
        assert cal.working_hours_between(start, due) == hours


# ------------------------------------------------------------------ office hours

def test_office_hours_change_from_a_date() -> None:
    summer = [(time(7, 0), time(11, 30)), (time(13, 30), time(17, 0))]
    cal = WorkingCalendar(office_hours_from={date(2026, 5, 1): summer})
    assert cal.working_hours_on(date(2026, 4, 29)) == Decimal(8)
    assert cal.working_hours_on(date(2026, 5, 4)) == Decimal(8)
    assert cal.working_hours_on(date(2026, 5, 2)) == Decimal(0)  # Saturday
    assert cal.add_working_hours(vn(2026, 5, 4, 7), 8) == vn(2026, 5, 4, 17)
    assert cal.clock_start(vn(2026, 5, 4, 6, 45)) == vn(2026, 5, 4, 7)
    assert cal.clock_start(vn(2026, 4, 29, 7)) == vn(2026, 4, 29, 7, 30)


@pytest.mark.parametrize(
    "periods",
    [
        [],
        [(time(11, 30), time(7, 30))],
        [(time(7, 30), time(12, 0)), (time(11, 0), time(17, 0))],
    ],
)
def test_bad_office_hours_are_refused(periods: list[tuple[time, time]]) -> None:
    with pytest.raises(ValueError):
        WorkingCalendar(office_hours=periods)

"""The suite's one clock: every "now" and "today" in the product comes from here.

Instants are aware and in UTC; "today" is Vietnam's calendar day (Asia/Ho_Chi_Minh, UTC+7,
no daylight saving), because registers, number series, dossier codes and deadlines follow the
day in Thanh Hóa, not the server's. From 17:00 UTC on, Vietnam is already on the next day.

Tests move the clock with :func:`frozen` or :func:`shifted`; nothing else changes it. Token
expiry and rate limits use the epoch (``time.time()``) on purpose: they are about elapsed real
time, not about a date on paper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def _system_now() -> datetime:
    return datetime.now(UTC)


_source: Callable[[], datetime] = _system_now


def now() -> datetime:
    """The current instant, aware, in UTC."""
    return _source()


def vn_now() -> datetime:
    """The current instant as a wall clock in Vietnam."""
    return _source().astimezone(VN_TZ)


def vn_today() -> date:
    """Today's date in Vietnam: the date a document issued now carries."""
    return vn_now().date()


def vn_date_of(moment: datetime) -> date:
    """The Vietnamese calendar day of an aware instant (naive ones are refused, not guessed)."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place on Vietnam's calendar; give it a timezone")
    return moment.astimezone(VN_TZ).date()


@contextmanager
def frozen(at: datetime) -> Iterator[datetime]:
    """The clock stands still at ``at`` (aware) inside the block; for unit tests."""
    if at.tzinfo is None:
        raise ValueError("freeze the clock at an aware datetime")
    fixed = at.astimezone(UTC)
    with _using(lambda: fixed):
        yield fixed


@contextmanager
def shifted(to: datetime) -> Iterator[timedelta]:
    """The clock reads ``to`` now and keeps running inside the block; for whole-suite tests where
    timers, retries and expiry must still see time pass."""
    if to.tzinfo is None:
        raise ValueError("shift the clock to an aware datetime")
    offset = to.astimezone(UTC) - _system_now()
    with _using(lambda: _system_now() + offset):
        yield offset


@contextmanager
def _using(source: Callable[[], datetime]) -> Iterator[None]:
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous

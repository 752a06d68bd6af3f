"""The suite's one clock: every "now" and "today" in the product comes from here.

Instants are aware and in UTC; "today" is Vietnam's calendar day (Asia/Ho_Chi_Minh, UTC+7,
no daylight saving), because registers, number series, dossier codes and deadlines follow the
day in Thanh Hóa, not the server's. From 17:00 UTC on, Vietnam is already on the next day.

Tests move the calendar with :func:`frozen` or :func:`shifted`; nothing else changes it.

Expiry, backoff, rate limits and caches count seconds that pass, not dates on paper: they read
:func:`epoch` (Unix seconds, what a token's ``exp`` counts) or :func:`monotonic` (intervals),
which follow the machine's clock and not :func:`frozen`/:func:`shifted` — a token issued under a
shifted calendar must still be valid to a verifier outside the test. A test makes time pass with
:func:`advanced` instead of sleeping: inside it every reading here is that many seconds later.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def _system_now() -> datetime:
    return datetime.now(UTC)


_source: Callable[[], datetime] = _system_now
_ahead = 0.0  # seconds that advanced() has made pass


def now() -> datetime:
    """The current instant, aware, in UTC."""
    moment = _source()
    return moment + timedelta(seconds=_ahead) if _ahead else moment


def vn_now() -> datetime:
    """The current instant as a wall clock in Vietnam."""
    return now().astimezone(VN_TZ)


def epoch() -> float:
    """Seconds since 1970 (Unix time): what a token's ``iat``/``exp`` and a bucket's refill count."""
    return time.time() + _ahead


def monotonic() -> float:
    """Seconds from an arbitrary start that never step back: for intervals (backoff, cache age)."""
    return time.monotonic() + _ahead


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
def advanced(seconds: float) -> Iterator[None]:
    """Inside the block, ``seconds`` have passed for every reading of this module: tokens expire,
    buckets refill, backoffs and caches run out without a test sleeping. Blocks nest and add up;
    asyncio's own timers (``asyncio.sleep``, timeouts) still run in real time. On leaving, time
    is the machine's again, so whatever was stamped inside the block looks that much younger."""
    if seconds < 0:
        raise ValueError("time does not go back; advance by a positive number of seconds")
    global _ahead
    previous = _ahead
    _ahead = previous + seconds
    try:
        yield
    finally:
        _ahead = previous


@contextmanager
def _using(source: Callable[[], datetime]) -> Iterator[None]:
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous

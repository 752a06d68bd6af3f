"""The suite's clock: advanced() makes seconds pass for expiry and backoff without a test sleeping,
and leaves the calendar helpers and the machine's clock as they were afterwards."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from shared import clock


def test_advanced_moves_every_reading_by_the_same_seconds_and_gives_them_back() -> None:
    before_epoch, before_mono, before_now = clock.epoch(), clock.monotonic(), clock.now()
    with clock.advanced(3600):
        assert clock.epoch() - before_epoch == pytest.approx(3600, abs=1)
        assert clock.monotonic() - before_mono == pytest.approx(3600, abs=1)
        assert (clock.now() - before_now).total_seconds() == pytest.approx(3600, abs=1)
        with clock.advanced(60):  # blocks nest and add up
            assert clock.monotonic() - before_mono == pytest.approx(3660, abs=1)
        assert clock.monotonic() - before_mono == pytest.approx(3600, abs=1)
    assert clock.epoch() == pytest.approx(time.time(), abs=1)
    assert clock.monotonic() == pytest.approx(time.monotonic(), abs=1)


def test_a_frozen_calendar_moves_only_when_time_is_advanced() -> None:
    at = datetime(2026, 12, 31, 16, 59, 30, tzinfo=UTC)
    with clock.frozen(at):
        assert clock.vn_today().isoformat() == "2026-12-31"
        with clock.advanced(31):  # 17:00:01 UTC is already the next day in Thanh Hóa
            assert clock.now() == at + timedelta(seconds=31)
            assert clock.vn_today().isoformat() == "2027-01-01"
        assert clock.now() == at


def test_elapsed_time_follows_the_machine_not_a_shifted_calendar() -> None:
    """A token issued under a shifted calendar must still be valid to a verifier elsewhere."""
    with clock.shifted(datetime(2030, 1, 1, tzinfo=UTC)):
        assert clock.now().year == 2030
        assert clock.epoch() == pytest.approx(time.time(), abs=1)


def test_time_never_goes_back() -> None:
    with pytest.raises(ValueError, match="positive"), clock.advanced(-1):
        pass

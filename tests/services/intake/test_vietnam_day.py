"""Dossier codes, received days, deadlines and the public look-up follow Vietnam's calendar day,
whatever the machine's: run with the clock at the edges where UTC and Vietnam disagree.

16:59 UTC is 23:59 in Thanh Hóa, 17:01 UTC is already the next day there, and 23:30 UTC on
31 December is New Year's Day (a holiday) in Vietnam.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from shared import clock
from tests.services.intake.harness import WARD, birth_registration, running_intake

# (clock at, the dossier code's yyMMdd, the day it was received in Vietnam, the due day in Vietnam)
# 1.001193 (khai sinh) takes one working day (8 working hours) and has a 15:00 cut-off.
EDGES = [
    # Thursday 23:59 in Vietnam: after the cut-off, the clock starts on Friday morning
    (datetime(2026, 12, 3, 16, 59, tzinfo=UTC), "261203", date(2026, 12, 3), date(2026, 12, 4)),
    # Friday 00:01 in Vietnam: before the cut-off, the day's working hours are all ahead
    (datetime(2026, 12, 3, 17, 1, tzinfo=UTC), "261204", date(2026, 12, 4), date(2026, 12, 4)),
    # New Year's Day 06:30 in Vietnam, a holiday and then a weekend: the clock starts on Monday
    (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "270101", date(2027, 1, 1), date(2027, 1, 4)),
]


@pytest.mark.parametrize(("at", "day_code", "received_day", "due_day"), EDGES, ids=lambda v: str(v))
async def test_a_desk_dossier_takes_vietnams_day(
    tmp_path: Path, at: datetime, day_code: str, received_day: date, due_day: date
) -> None:
    async with running_intake(tmp_path) as intake:
        with clock.frozen(at):
            dossier = await intake.submit("desk_officer", birth_registration(agency=WARD))
            receipt = await intake.client.post(
                f"/dossiers/{dossier['code']}/receipt", headers=intake.as_("desk_officer")
            )
            assert receipt.status_code == 200, receipt.text
            looked = await intake.client.get(
                "/lookup", params={"code": dossier["code"], "secret": receipt.headers["lookup-secret"]}
            )
        assert dossier["code"] == f"{WARD}-{day_code}-0001"
        assert clock.vn_date_of(datetime.fromisoformat(dossier["received_at"])) == received_day
        assert clock.vn_date_of(datetime.fromisoformat(dossier["due_at"])) == due_day
        assert looked.status_code == 200, looked.text
        public = looked.json()
        assert clock.vn_date_of(datetime.fromisoformat(public["received_at"])) == received_day
        assert clock.vn_date_of(datetime.fromisoformat(public["due_at"])) == due_day


async def test_the_daily_sequence_restarts_at_vietnams_midnight(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        with clock.frozen(datetime(2026, 12, 3, 16, 59, tzinfo=UTC)):
            first = await intake.submit("desk_officer", birth_registration(agency=WARD))
            second = await intake.submit("desk_officer", birth_registration(agency=WARD))
        with clock.frozen(datetime(2026, 12, 3, 17, 1, tzinfo=UTC)):
            third = await intake.submit("desk_officer", birth_registration(agency=WARD))
    assert [first["code"], second["code"], third["code"]] == [
        f"{WARD}-261203-0001",
        f"{WARD}-261203-0002",
        f"{WARD}-261204-0001",
    ]

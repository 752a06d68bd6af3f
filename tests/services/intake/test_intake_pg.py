"""Dossier codes on PostgreSQL: 50 concurrent submissions to one agency on one day get
``-0001`` … ``-0050``, no gap and no duplicate, and a refused one gives its number back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.intake.app import MIGRATIONS
from shared.migrations import upgrade
from tests.servers import temporary_databases
from tests.services.intake.harness import WARD, birth_registration, running_intake

pytestmark = pytest.mark.pg


async def test_fifty_concurrent_submissions_number_without_gaps(tmp_path: Path) -> None:
    with temporary_databases(["intake"]) as urls:
        await asyncio.to_thread(upgrade, MIGRATIONS, urls["intake"], service="intake")
        async with running_intake(
            tmp_path, database_url=urls["intake"], auto_migrate=False, database_pool_size=10
        ) as intake:
            good = birth_registration()
            bad = {**birth_registration(), "components": [{"no": 1}]}  # a required component missing

            async def one(i: int) -> tuple[int, str | None]:
                body = bad if i % 10 == 9 else good
                r = await intake.client.post("/dossiers", json=body, headers=intake.as_("desk_officer"))
                return r.status_code, r.json().get("code")

            results = await asyncio.gather(*[one(i) for i in range(55)])
            codes = sorted(code for status, code in results if status == 201 and code)
            assert sorted(status for status, _ in results).count(422) == 5
            assert len(codes) == 50 == len(set(codes))
            assert [int(c.rsplit("-", 1)[1]) for c in codes] == list(range(1, 51))
            assert len({c.rsplit("-", 1)[0] for c in codes}) == 1


async def test_a_code_past_9999_keeps_every_digit(tmp_path: Path) -> None:
    with temporary_databases(["intake"]) as urls:
        await asyncio.to_thread(upgrade, MIGRATIONS, urls["intake"], service="intake")
        async with running_intake(tmp_path, database_url=urls["intake"], auto_migrate=False) as intake:
            first = await intake.submit("desk_officer", birth_registration())
            prefix, number = first["code"].rsplit("-", 1)
            assert number == "0001"
            day = prefix.rsplit("-", 1)[1]
            engine = create_async_engine(urls["intake"])
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE counter SET value = 9998 WHERE key = :key"), {"key": f"dossier:{WARD}:{day}"}
                )
            await engine.dispose()
            codes = [(await intake.submit("desk_officer", birth_registration()))["code"] for _ in range(2)]
            assert codes == [f"{prefix}-9999", f"{prefix}-10000"]

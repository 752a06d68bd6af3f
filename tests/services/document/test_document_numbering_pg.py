"""Fifty clerks number documents at once on PostgreSQL: no number twice, no gap, even when some
of their transactions roll back after taking a number."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlalchemy import select

from services.document.app import MIGRATIONS
from services.document.config import get_settings
from services.document.models import Document
from services.document.outgoing import assign_number
from services.document.service import new_document
from shared.db import Database
from shared.migrations import upgrade
from tests.servers import temporary_databases

pytestmark = pytest.mark.pg
AGENCY = "000.00.00.H56"
ISSUERS = 50


class _Abandoned(Exception):
    pass


async def test_fifty_concurrent_issuers_get_gap_free_unique_numbers() -> None:
    settings = get_settings()
    with temporary_databases(["document"]) as urls:
        url = urls["document"]
        await asyncio.to_thread(upgrade, MIGRATIONS, url, service="document")
        db = Database(url, pool_size=30)
        try:
            async with db.sessionmaker() as session:
                docs = [new_document(direction="outgoing", agency=AGENCY, status="signed_by_leader", type_key="QĐ",
                                     type_name="Quyết định", subject=f"Quyết định số {i}", created_by="t")
                        for i in range(ISSUERS)]
                session.add_all(docs)
                await session.commit()
                ids = [d.id for d in docs]
            start = asyncio.Event()

            async def issue(document_id: int, *, abandon: bool) -> None:
                await start.wait()
                try:
                    async with db.sessionmaker() as session:
                        doc = (await session.execute(
                            select(Document).where(Document.id == document_id).with_for_update())).scalar_one()
                        await assign_number(session, doc, settings=settings, today=date(2026, 6, 1))
                        if abandon:
                            raise _Abandoned  # e.g. the request failed after the number was taken
                        await session.commit()
                except _Abandoned:
                    pass

            tasks = [asyncio.create_task(issue(i, abandon=n % 7 == 3)) for n, i in enumerate(ids)]
            start.set()
            await asyncio.gather(*tasks)
            abandoned = [i for n, i in enumerate(ids) if n % 7 == 3]
            # the abandoned ones are numbered afterwards and continue the series
            await asyncio.gather(*(issue(i, abandon=False) for i in abandoned))

            async with db.sessionmaker() as session:
                rows = (await session.execute(select(Document.code_number, Document.code_text))).all()
            numbers = sorted(r.code_number for r in rows)
            assert numbers == list(range(1, ISSUERS + 1))
            assert len({r.code_text for r in rows}) == ISSUERS
            assert "05/QĐ-UBND" in {r.code_text for r in rows}
        finally:
            await db.dispose()

"""Retention: old inbox rows and old sent outbox rows are purged in bounded batches; recent rows,
unsent rows and the promise "applied once" within the window are kept. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from shared import clock
from shared.bus.memory import InProcessBroker
from shared.db import Database
from shared.inbox import purge_inbox
from shared.outbox import OutboxRelay, purge_sent
from tests import harness


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
async def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    async with harness.producer_and_consumer(request.param, tmp_path) as pair:
        yield pair


async def _count(db: Database, table, *where) -> int:  # type: ignore[no-untyped-def]
    async with db.sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


async def test_old_inbox_rows_go_in_batches_and_recent_ones_still_dedupe(dbs) -> None:  # type: ignore[no-untyped-def]
    producer, consumer_db = dbs
    broker = InProcessBroker()
    await broker.connect()
    consumer = harness.ledger_consumer()
    await consumer.attach(broker, consumer_db, batch=50, prefetch=50)
    await harness.produce(producer, count=120, aggregates=3)
    relay = OutboxRelay(producer, harness.outbox, broker, batch=64)
    while await relay.relay_once():
        pass
    await harness.wait_until_applied(consumer_db, 120)
    # 70 of the 120 were received eight days ago, 50 a moment ago
    inbox = harness.inbox
    async with consumer_db.sessionmaker() as session:
        old = select(inbox.c.event_id).order_by(inbox.c.event_id).limit(70).scalar_subquery()
        await session.execute(
            update(inbox).where(inbox.c.event_id.in_(old)).values(received_at=clock.now() - timedelta(days=8))
        )
        await session.commit()

    purged = await purge_inbox(consumer_db, inbox, clock.now() - timedelta(days=7), batch=16)

    assert purged == 70
    assert await _count(consumer_db, inbox) == 50
    # every event comes again (as after a relay crash before marking them sent): the 50 within
    # the window are still recognised; the 70 forgotten ones are what the window gives up
    async with producer.sessionmaker() as session:
        await session.execute(harness.outbox.table.update().values(sent_at=None))
        await session.commit()
    while await relay.relay_once():
        pass
    assert consumer.duplicates == 50
    await broker.close()


async def test_sent_outbox_rows_older_than_retention_go_unsent_and_recent_stay(dbs) -> None:  # type: ignore[no-untyped-def]
    producer, _ = dbs
    table = harness.outbox.table
    await harness.produce(producer, count=100, aggregates=4)
    long_ago = clock.now() - timedelta(days=9)
    async with producer.sessionmaker() as session:
        ids = (await session.execute(select(table.c.id).order_by(table.c.id))).scalars().all()
        # the first 60 were created and sent long ago, except 5 that never got out; the rest are recent
        await session.execute(
            update(table).where(table.c.id.in_(ids[:60])).values(created_at=long_ago, sent_at=long_ago)
        )
        await session.execute(update(table).where(table.c.id.in_(ids[10:15])).values(sent_at=None))
        await session.execute(update(table).where(table.c.id.in_(ids[60:80])).values(sent_at=clock.now()))
        await session.commit()

    purged = await purge_sent(producer, table, clock.now() - timedelta(days=7), batch=7)

    assert purged == 55
    async with producer.sessionmaker() as session:
        left = (await session.execute(select(table.c.id).order_by(table.c.id))).scalars().all()
    assert left == [*ids[10:15], *ids[60:]]
    assert await _count(producer, table, table.c.sent_at.is_(None)) == 25  # every unsent row kept

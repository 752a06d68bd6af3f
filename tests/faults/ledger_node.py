"""One process of the fault suite: a producer (business writes + outbox relay) or a consumer
(inbox + effects), built only from shared/ — killed, restarted and disconnected by the tests."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import func, select

from shared.bus.amqp import AmqpBroker
from shared.db import Database
from shared.outbox import OutboxRelay
from tests import harness


async def producer(db_url: str, amqp_url: str, count: int, rate: float, poison_every: int) -> None:
    db = Database(db_url)
    broker = AmqpBroker(amqp_url)
    relay = OutboxRelay(db, harness.outbox, broker, batch=100, poll_seconds=0.2)

    async def connect_then_relay() -> None:
        while True:
            try:
                await broker.connect()
                break
            except Exception:
                await asyncio.sleep(0.5)
        relay.start()

    # kept referenced: the event loop holds tasks weakly, and an unreferenced task waiting on
    # the broker was garbage-collected mid-connect (so the relay never started)
    connecting = asyncio.create_task(connect_then_relay())
    # a restarted producer carries on where the killed one stopped
    async with db.sessionmaker() as session:
        done = (await session.execute(select(func.count()).select_from(harness.outbox.table))).scalar_one()
    for i in range(done, count):
        async with db.sessionmaker() as session:
            poison = poison_every and i % poison_every == poison_every - 1
            await harness.outbox.emit(
                session,
                "ledger.changed",
                {"n": i, "poison": bool(poison)},
                subject=f"poison-{i}" if poison else f"agg-{i % 20}",
            )
            await session.commit()
        await asyncio.sleep(1 / rate)
    print("produced", flush=True)
    await connecting
    await asyncio.Event().wait()


async def consumer(db_url: str, amqp_url: str) -> None:
    db = Database(db_url)
    broker = AmqpBroker(amqp_url, delivery_limit=3)
    while True:
        try:
            await broker.connect()
            await harness.ledger_consumer().attach(broker, db, batch=50, prefetch=100)
            break
        except Exception:
            await asyncio.sleep(0.5)
    print("attached", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    role, db_url, amqp_url = sys.argv[1:4]
    if role == "producer":
        asyncio.run(producer(db_url, amqp_url, int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])))
    else:
        asyncio.run(consumer(db_url, amqp_url))

"""Events/s through outbox → RabbitMQ → inbox, against a bare aio-pika publisher with confirms
(200 in flight) and a bare consumer on the same broker, in the same run."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
from sqlalchemy import func, select

from bench.common import write
from shared.bus.amqp import AmqpBroker
from shared.db import Database
from shared.inbox import Consumer
from shared.outbox import OutboxRelay
from tests import harness
from tests.servers import temporary_databases, temporary_vhost

N = 20_000


async def bare(amqp_url: str, n: int) -> dict[str, float]:
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange("bare", aio_pika.ExchangeType.TOPIC, durable=True)
    consume_channel = await connection.channel()
    await consume_channel.set_qos(prefetch_count=200)
    queue = await consume_channel.declare_queue("bare", durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind("bare", "#")
    received = 0
    done = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal received
        await message.ack()
        received += 1
        if received >= n:
            done.set()

    body = b'{"specversion":"1.0","id":"x","source":"urn:bench","type":"vn.lienthong.bench.v1","data":{"n":1}}'
    start = time.perf_counter()
    await queue.consume(on_message)
    in_flight = asyncio.Semaphore(200)

    async def publish_one(i: int) -> None:
        async with in_flight:
            await exchange.publish(
                aio_pika.Message(body, message_id=str(i), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="bench.event",
            )

    await asyncio.gather(*(publish_one(i) for i in range(n)))
    published = time.perf_counter() - start
    await asyncio.wait_for(done.wait(), 120)
    total = time.perf_counter() - start
    await connection.close()
    return {"published_per_s": n / published, "end_to_end_per_s": n / total}


async def ours(amqp_url: str, producer: Database, consumer_db: Database, n: int) -> dict[str, float]:
    # fill the outbox first (1,000 events a transaction): the bench measures the path after it
    for start in range(0, n, 1000):
        async with producer.sessionmaker() as session:
            for i in range(start, min(n, start + 1000)):
                await harness.outbox.emit(session, "ledger.changed", {"n": i}, subject=f"agg-{i % 100}")
            await session.commit()
    consumer_broker = AmqpBroker(amqp_url)
    await consumer_broker.connect()

    async def no_effect(session, event) -> None:  # type: ignore[no-untyped-def]
        # the bare consumer does nothing but ack; ours does the inbox and nothing else, so the
        # ratio is the bus machinery's, not a business effect's
        return None

    consumer = Consumer(name="ledger", handlers={"ledger.*": no_effect}, inbox=harness.inbox)
    await consumer.attach(consumer_broker, consumer_db, batch=100, prefetch=400)
    publisher = AmqpBroker(amqp_url, in_flight=200)
    await publisher.connect()
    relay = OutboxRelay(producer, harness.outbox, publisher, batch=1000, poll_seconds=0.05)
    start = time.perf_counter()
    relay.start()
    while relay.published < n:
        await asyncio.sleep(0.01)
    published = time.perf_counter() - start
    applied = 0
    deadline = time.monotonic() + 300
    while applied < n and time.monotonic() < deadline:
        async with consumer_db.sessionmaker() as session:
            applied = (await session.execute(select(func.count()).select_from(harness.inbox))).scalar_one()
        await asyncio.sleep(0.05)
    total = time.perf_counter() - start
    await relay.stop()
    await publisher.close()
    await consumer_broker.close()
    assert applied == n == consumer.applied, (applied, consumer.applied)
    assert await relay.pending() == 0
    return {"published_per_s": n / published, "end_to_end_per_s": n / total}


async def main() -> dict[str, object]:
    with temporary_vhost() as bare_url:
        baseline = await bare(bare_url, N)
    with temporary_databases(["producer", "consumer"]) as urls, temporary_vhost() as amqp_url:
        producer, consumer_db = Database(urls["producer"]), Database(urls["consumer"])
        await harness.create_schema(producer)
        await harness.create_schema(consumer_db)
        measured = await ours(amqp_url, producer, consumer_db, N)
        await producer.dispose()
        await consumer_db.dispose()
    ratio = measured["end_to_end_per_s"] / baseline["end_to_end_per_s"]
    figures = {
        "events": N,
        "bare": baseline,
        "lienthong": measured,
        "ratio_end_to_end": ratio,
        "target_ratio": 0.5,
        "notes": "bare: aio-pika, confirms, 200 in flight, quorum queue, ack per message; lienthong: "
        "PostgreSQL outbox → relay (confirms, mandatory, persistent) → quorum queue → inbox row in "
        "PostgreSQL (no business effect, like the bare consumer), batches of 100 per transaction",
        "run_id": uuid.uuid4().hex[:8],
    }
    print(f"bus: bare {baseline['end_to_end_per_s']:.0f} ev/s (publish {baseline['published_per_s']:.0f}/s); "
          f"lienthong {measured['end_to_end_per_s']:.0f} ev/s (relay {measured['published_per_s']:.0f}/s); "
          f"ratio {ratio:.2f} (target ≥ 0.5)")
    write("bus", figures)
    return figures


if __name__ == "__main__":
    asyncio.run(main())

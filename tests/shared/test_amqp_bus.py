"""Outbox → RabbitMQ → inbox on the real servers, with the broker failing under load.

Each test gets its own PostgreSQL databases and its own RabbitMQ virtual host.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from sqlalchemy import func, select

from shared.bus import OutgoingMessage, PublishError
from shared.bus.amqp import AmqpBroker
from shared.db import Database
from shared.events import EXCHANGE
from shared.outbox import OutboxRelay
from tests import harness
from tests.servers import rabbitmqctl, temporary_databases, temporary_vhost, wait_rabbitmq
from tests.waiting import eventually

pytestmark = [pytest.mark.pg, pytest.mark.amqp]


@pytest.fixture
async def setup() -> AsyncIterator[tuple[Database, Database, str, dict[str, str]]]:
    with temporary_databases(["producer", "consumer"]) as urls, temporary_vhost() as amqp_url:
        producer, consumer = Database(urls["producer"]), Database(urls["consumer"])
        await harness.create_schema(producer)
        await harness.create_schema(consumer)
        try:
            yield producer, consumer, amqp_url, urls
        finally:
            await producer.dispose()
            await consumer.dispose()


async def _attach(amqp_url: str, consumer_db: Database, **kwargs) -> tuple[AmqpBroker, object]:  # type: ignore[no-untyped-def]
    broker = AmqpBroker(amqp_url, delivery_limit=kwargs.pop("delivery_limit", 5))
    await broker.connect()
    consumer = harness.ledger_consumer(**kwargs)
    await consumer.attach(broker, consumer_db, batch=100, prefetch=200)
    return broker, consumer


async def test_rabbitmq_stopped_and_started_mid_load_loses_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    producer, consumer_db, amqp_url, _ = setup
    consumer_broker, _consumer = await _attach(amqp_url, consumer_db)
    publisher = AmqpBroker(amqp_url)
    await publisher.connect()
    relay = OutboxRelay(producer, harness.outbox, publisher, batch=100, poll_seconds=0.2)
    relay.start()
    total = 2000
    load = asyncio.create_task(harness.produce(producer, count=total, aggregates=20))
    # inject the fault a third of the way in
    while relay.published < total // 3:
        await asyncio.sleep(0.02)
    await asyncio.to_thread(rabbitmqctl, "stop_app")
    await asyncio.sleep(2)
    await asyncio.to_thread(rabbitmqctl, "start_app")
    await asyncio.to_thread(wait_rabbitmq)
    await load
    applied = await harness.wait_until_applied(consumer_db, total, timeout=120)
    deadline = time.monotonic() + 30
    while await relay.pending() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await relay.stop()  # a stopped relay has written the sent marks it was keeping
    report = await harness.check(producer, consumer_db)
    await publisher.close()
    await consumer_broker.close()
    assert applied == total, str(report)
    assert report.ok, str(report)


async def test_poison_event_is_dead_lettered_while_the_others_flow(setup) -> None:  # type: ignore[no-untyped-def]
    producer, consumer_db, amqp_url, _ = setup
    consumer_broker, _ = await _attach(amqp_url, consumer_db, delivery_limit=3)
    publisher = AmqpBroker(amqp_url)
    await publisher.connect()
    await harness.produce(producer, count=200, poison_every=50)
    relay = OutboxRelay(producer, harness.outbox, publisher)
    while await relay.relay_once():
        pass
    assert await harness.wait_until_applied(consumer_db, 196) == 196
    deadline = time.monotonic() + 60
    dead = []
    while time.monotonic() < deadline:
        dead = await consumer_broker.dead_letters("ledger")
        if len(dead) >= 4:
            break
        await asyncio.sleep(0.5)
    report = await harness.check(producer, consumer_db)
    async with producer.sessionmaker() as s:
        poison_ids = set(
            (
                await s.execute(
                    select(harness.outbox.table.c.event_id).where(harness.outbox.table.c.aggregate.like("poison-%"))
                )
            ).scalars()
        )
    depths = await consumer_broker.queue_depths()
    await publisher.close()
    await consumer_broker.close()
    assert report.ok, str(report)
    assert {d.message_id for d in dead} == poison_ids and len(poison_ids) == 4
    assert all(d.routing_key == "ledger.changed" for d in dead)
    assert depths["ledger"] == 0 and depths["ledger.dlq"] == 4


KILLED_PRODUCER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from shared.db import Database
    from tests import harness

    async def main():
        db = Database(sys.argv[1])
        await harness.produce(db, count=int(sys.argv[2]))
        print("committed", flush=True)
        await asyncio.sleep(3600)  # the relay would publish now: we are killed first

    asyncio.run(main())
    """
)


async def test_a_service_killed_between_commit_and_publish_publishes_after_restart(setup) -> None:  # type: ignore[no-untyped-def]
    producer, consumer_db, amqp_url, urls = setup
    consumer_broker, _ = await _attach(amqp_url, consumer_db)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_PRODUCER, urls["producer"], "150"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
    assert line.strip() == "committed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    async with producer.sessionmaker() as s:
        unsent = (await s.execute(select(func.count()).where(harness.outbox.table.c.sent_at.is_(None)))).scalar_one()
    assert unsent == 150  # committed, never published
    # the restarted service's relay picks them up
    publisher = AmqpBroker(amqp_url)
    await publisher.connect()
    relay = OutboxRelay(producer, harness.outbox, publisher)
    relay.start()
    applied = await harness.wait_until_applied(consumer_db, 150)
    await relay.stop()  # a stopped relay has written the sent marks it was keeping
    report = await harness.check(producer, consumer_db)
    await publisher.close()
    await consumer_broker.close()
    assert applied == 150 and report.ok, str(report)


class CarelessPublisher:
    """Publishing as a naive producer does: no publisher confirms, not mandatory (what
    ``AmqpBroker`` never does). Only what the relay calls."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url

    async def connect(self) -> None:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self.connection.channel(publisher_confirms=False)
        self.exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)

    async def publish(self, messages: list[OutgoingMessage]) -> int:
        for message in messages:
            body = aio_pika.Message(message.body, message_id=message.message_id)
            await self.exchange.publish(body, routing_key=message.routing_key)
        return len(messages)

    async def close(self) -> None:
        await self.connection.close()


async def test_checker_reports_loss_without_confirms(setup) -> None:  # type: ignore[no-untyped-def]
    """Unconfirmed, non-mandatory publishing marks events sent that no queue ever held."""
    producer, consumer_db, amqp_url, _ = setup
    careless = CarelessPublisher(amqp_url)
    await careless.connect()
    await harness.produce(producer, count=50)
    relay = OutboxRelay(producer, harness.outbox, careless)  # type: ignore[arg-type]
    await relay.relay_once()  # the consumer's queue does not exist yet: dropped silently
    await careless.close()
    consumer_broker, _ = await _attach(amqp_url, consumer_db)
    await asyncio.sleep(1.0)
    report = await harness.check(producer, consumer_db)
    await consumer_broker.close()
    assert not report.ok
    assert len(report.lost) == 50 and report.unsent == 0


async def test_confirmed_mandatory_publishing_keeps_events_until_a_queue_exists(setup) -> None:  # type: ignore[no-untyped-def]
    """The same situation with our defaults: nothing is marked sent until it is routable."""
    producer, consumer_db, amqp_url, _ = setup
    publisher = AmqpBroker(amqp_url)
    await publisher.connect()
    await harness.produce(producer, count=50)
    relay = OutboxRelay(producer, harness.outbox, publisher)
    with pytest.raises(PublishError):
        await relay.relay_once()
    assert await relay.pending() == 50
    consumer_broker, _ = await _attach(amqp_url, consumer_db)
    while await relay.relay_once():
        pass
    assert await harness.wait_until_applied(consumer_db, 50) == 50
    report = await harness.check(producer, consumer_db)
    await publisher.close()
    await consumer_broker.close()
    assert report.ok, str(report)


async def test_checker_reports_double_effect_without_the_inbox(setup) -> None:  # type: ignore[no-untyped-def]
    producer, consumer_db, amqp_url, _ = setup
    consumer_broker, _ = await _attach(amqp_url, consumer_db, with_inbox=False)
    publisher = AmqpBroker(amqp_url)
    await publisher.connect()
    await harness.produce(producer, count=40)
    relay = OutboxRelay(producer, harness.outbox, publisher)
    await relay.relay_once()
    # the relay crashed before marking them sent: they go out again
    async with producer.sessionmaker() as s:
        await s.execute(harness.outbox.table.update().values(sent_at=None))
        await s.commit()
    await relay.relay_once()

    async def all_applied_twice() -> harness.Report | None:
        report = await harness.check(producer, consumer_db)
        return report if len(report.applied_twice) == 40 else None

    report = await eventually(all_applied_twice, within=30, what="every event applied twice")
    await publisher.close()
    await consumer_broker.close()
    assert not report.ok


async def test_a_retired_binding_is_removed_from_a_durable_queue(setup) -> None:  # type: ignore[no-untyped-def]
    """A queue bound "#" by an earlier release, attached again with family bindings and "#"
    retired, no longer receives the families it stopped binding."""
    _, _, amqp_url, _ = setup
    heard: list[str] = []

    async def hear(deliveries) -> None:  # type: ignore[no-untyped-def]
        for delivery in deliveries:
            heard.append(delivery.routing_key)
            await delivery.ack()

    earlier = AmqpBroker(amqp_url)
    await earlier.connect()
    await earlier.consume("integrations", ["#"], hear, batch=10, prefetch=10)
    await earlier.close()
    broker = AmqpBroker(amqp_url)
    await broker.connect()
    await broker.consume("integrations", ["dossier.#"], hear, batch=10, prefetch=10, retired=["#"])
    # mandatory publishing: a message no queue is bound for is refused, not silently dropped
    with pytest.raises(PublishError):
        await broker.publish([OutgoingMessage("access.recorded", b"{}", "m-1")])
    await broker.publish([OutgoingMessage("dossier.received", b"{}", "m-2")])
    deadline = time.monotonic() + 10
    while not heard and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    await broker.close()
    assert heard == ["dossier.received"]


async def _paced(broker: AmqpBroker, count: int, rate: float, tag: str) -> None:
    """``count`` events published one by one at ``rate`` per second, as a busy producer's relay does."""
    loop = asyncio.get_running_loop()
    begin = loop.time()
    for i in range(count):
        await broker.publish([OutgoingMessage("dossier.received", b"{}", f"{tag}-{i}")])
        await asyncio.sleep(max(0.0, begin + (i + 1) / rate - loop.time()))


async def test_a_lingering_consumer_batches_a_steady_flow_and_hands_a_lone_event_over_at_once(setup) -> None:  # type: ignore[no-untyped-def]
    """With a linger (audit's option), events arriving at a few hundred a second are handled in
    batches of several; without it, one or two at a time. A lone event after a quiet spell is not
    held back for followers that are not coming."""
    _, _, amqp_url, _ = setup
    batches: dict[str, list[int]] = {"lingering": [], "eager": []}
    handled_at: dict[str, float] = {}

    def hearing(name: str):  # type: ignore[no-untyped-def]
        async def hear(deliveries) -> None:  # type: ignore[no-untyped-def]
            batches[name].append(len(deliveries))
            for delivery in deliveries:
                handled_at[delivery.message_id] = time.perf_counter()
            await deliveries[-1].ack(multiple=True)

        return hear

    broker = AmqpBroker(amqp_url)
    await broker.connect()
    linger = 0.05
    await broker.consume("lingering", ["dossier.#"], hearing("lingering"), batch=100, prefetch=200, linger=linger)
    await broker.consume("eager", ["dossier.#"], hearing("eager"), batch=100, prefetch=200)
    try:
        # a lone event, the consumer idle: handed over without waiting out the linger
        sent = time.perf_counter()
        await broker.publish([OutgoingMessage("dossier.received", b"{}", "lone-1")])
        await eventually(lambda: "lone-1" in handled_at, within=5)
        assert handled_at["lone-1"] - sent < linger / 2, handled_at["lone-1"] - sent

        # both consumers have the lone event (the eager one may take it after the lingering one)
        await eventually(lambda: all(sum(b) == 1 for b in batches.values()), within=5)
        # a steady 250 events/s for 1.2 s
        for name in batches:
            batches[name].clear()
        await _paced(broker, 300, 250, "steady")
        await eventually(lambda: sum(batches["lingering"]) == 300 and sum(batches["eager"]) == 300, within=10)
        lingering = sum(batches["lingering"]) / len(batches["lingering"])
        eager = sum(batches["eager"]) / len(batches["eager"])
        print(f"mean batch at 250/s: {lingering:.1f} lingering, {eager:.1f} eager")
        assert lingering >= 5, batches["lingering"]
        assert lingering >= 3 * eager

        # quiet, then a lone event again: the pace of the flow before does not hold it back
        await asyncio.sleep(0.3)
        sent = time.perf_counter()
        await broker.publish([OutgoingMessage("dossier.received", b"{}", "lone-2")])
        await eventually(lambda: "lone-2" in handled_at, within=5)
        assert handled_at["lone-2"] - sent < linger / 2, handled_at["lone-2"] - sent
    finally:
        await broker.close()


async def test_an_event_committed_after_a_later_one_was_published_still_goes_out(setup) -> None:  # type: ignore[no-untyped-def]
    """The relay writes its sent marks in bulk a moment after publishing and passes over the rows
    it published meanwhile; a transaction that took a lower id but commits after a higher id went
    out must not be passed over with them. Once idle, every row is marked sent."""
    producer, _, amqp_url, _ = setup
    heard: list[str] = []

    async def hear(deliveries) -> None:  # type: ignore[no-untyped-def]
        heard.extend(d.message_id for d in deliveries)
        await deliveries[-1].ack(multiple=True)

    broker = AmqpBroker(amqp_url)
    await broker.connect()
    await broker.consume("listener", ["ledger.#"], hear, batch=10, prefetch=10)
    relay = OutboxRelay(producer, harness.outbox, broker, poll_seconds=0.2)
    relay.start()
    try:
        async with producer.sessionmaker() as slow:
            early = await harness.outbox.emit(slow, "ledger.changed", {"n": 1}, subject="agg-slow")
            async with producer.sessionmaker() as quick:
                late = await harness.outbox.emit(quick, "ledger.changed", {"n": 2}, subject="agg-quick")
                await quick.commit()
            await eventually(lambda: heard == [late.id], within=10)
            await slow.commit()
        await eventually(lambda: heard == [late.id, early.id], within=10)
        table = harness.outbox.table

        async def unmarked() -> int:
            async with producer.sessionmaker() as session:
                return int((await session.execute(select(func.count()).where(table.c.sent_at.is_(None)))).scalar_one())

        async def all_marked() -> bool:
            return await unmarked() == 0

        await eventually(all_marked, within=5, what="every published row marked sent")
        assert await relay.pending() == 0
    finally:
        await relay.stop()
        await broker.close()


async def test_internal_events_cross_rabbitmq_as_cloudevents_batches_applied_once(setup) -> None:  # type: ignore[no-untyped-def]
    """A relay with an internal key (the gateway's access records) sends a pass's events to
    ``lienthong.internal`` as one message in the CloudEvents JSON batch format: a plain AMQP
    reader bound there sees that content type and an array whose every element the CloudEvents
    SDK reads; one bound to everything on ``lienthong.events`` sees none; the part's consumer
    applies each event once, in order, also after the relay publishes everything again."""
    import json

    from cloudevents.http import from_json

    from shared.events import INTERNAL_EXCHANGE

    producer, consumer_db, amqp_url, _ = setup
    consumer_broker, consumer = await _attach(amqp_url, consumer_db, internal=True)
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    internal = await channel.declare_queue("plain-internal", exclusive=True)
    await internal.bind(await channel.get_exchange(INTERNAL_EXCHANGE), routing_key="#")
    everything = await channel.declare_queue("plain-everything", exclusive=True)
    await everything.bind(await channel.get_exchange(EXCHANGE), routing_key="#")
    publisher = AmqpBroker(amqp_url)
    await publisher.connect()
    relay = OutboxRelay(producer, harness.outbox, publisher, batch=50, internal_keys={"ledger.changed"})
    await harness.produce(producer, count=120, aggregates=4)
    while await relay.relay_once():
        pass
    await relay._write_marks()
    table = harness.outbox.table
    async with producer.sessionmaker() as session:
        order = (await session.execute(select(table.c.event_id).order_by(table.c.id))).scalars().all()
        await session.execute(table.update().values(sent_at=None))  # a relay crash before the marks
        await session.commit()
    while await relay.relay_once():
        pass
    await harness.wait_until_applied(consumer_db, 120)
    seen = []
    for _ in range(6):  # 120 events in passes of 50, twice: 3 messages each time
        message = await internal.get(timeout=10)
        await message.ack()
        assert message.content_type == "application/cloudevents-batch+json; charset=utf-8"
        seen.extend(from_json(json.dumps(item))["id"] for item in json.loads(message.body))
    assert await internal.get(fail=False) is None
    assert seen == list(order) * 2
    assert await everything.get(fail=False) is None
    await eventually(lambda: consumer.duplicates == 120, within=30, what="every copy dropped")
    report = await harness.check(producer, consumer_db)
    assert report.ok, str(report)
    assert report.applied_rows == 120
    await relay.stop()
    await connection.close()
    await publisher.close()
    await consumer_broker.close()

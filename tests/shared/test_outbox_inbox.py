"""Outbox, relay and inbox with the in-process broker, on SQLite (the embedded mode) and on
PostgreSQL (where an event's sequence is taken in the statement that writes it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared.bus.memory import InProcessBroker
from shared.db import Database
from shared.events import CloudEvent
from shared.outbox import OutboxRelay
from tests import harness


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
async def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    async with harness.producer_and_consumer(request.param, tmp_path) as pair:
        yield pair


async def test_an_event_exists_exactly_when_its_change_was_committed(dbs) -> None:  # type: ignore[no-untyped-def]
    producer, _ = dbs
    async with producer.sessionmaker() as session:
        await harness.outbox.emit(session, "ledger.changed", {"n": 1}, subject="agg-1")
        await session.rollback()
    async with producer.sessionmaker() as session:
        await harness.outbox.emit(session, "ledger.changed", {"n": 2}, subject="agg-1")
        await session.commit()
    async with producer.sessionmaker() as session:
        rows = (await session.execute(select(harness.outbox.table.c.body))).scalars().all()
    assert len(rows) == 1 and b'"n":2' in rows[0]


async def test_sequence_is_per_aggregate_and_gap_free_across_rollbacks(dbs) -> None:  # type: ignore[no-untyped-def]
    producer, _ = dbs
    sequences = []
    for i, commit in enumerate([True, False, True, True]):
        async with producer.sessionmaker() as session:
            event = await harness.outbox.emit(session, "ledger.changed", {"n": i}, subject="agg-x")
            if commit:
                await session.commit()
                sequences.append(event.sequence)
            else:
                await session.rollback()
    assert sequences == ["000000000001", "000000000002", "000000000003"]


async def test_the_stored_body_carries_the_sequence_the_event_was_given(dbs) -> None:  # type: ignore[no-untyped-def]
    producer, _ = dbs
    # data naming a "sequence" of its own, and the envelope's members after the sequence, stay as they were
    data = {"n": 1, "sequence": "000000000000", "inner": {"sequence": "000000000000"}}
    emitted = []
    async with producer.sessionmaker() as session:
        for agency in (None, "000.00.00.H56", None):
            emitted.append(await harness.outbox.emit(session, "ledger.changed", data, subject="agg-s", agency=agency))
        await session.commit()
    async with producer.sessionmaker() as session:
        rows = (
            await session.execute(select(harness.outbox.table.c.body).order_by(harness.outbox.table.c.id))
        ).scalars()
        stored = [CloudEvent.from_bytes(body) for body in rows]
    assert [e.sequence for e in emitted] == ["000000000001", "000000000002", "000000000003"]
    assert stored == emitted
    assert all(e.data == data for e in stored) and stored[1].agency == "000.00.00.H56"


async def test_relay_and_inbox_apply_every_event_once_in_order(dbs) -> None:  # type: ignore[no-untyped-def]
    producer, consumer_db = dbs
    broker = InProcessBroker()
    await broker.connect()
    consumer = harness.ledger_consumer()
    await consumer.attach(broker, consumer_db, batch=50, prefetch=50)
    await harness.produce(producer, count=300, aggregates=7)
    relay = OutboxRelay(producer, harness.outbox, broker, batch=64)
    while await relay.relay_once():
        pass
    await publish_all_again_and_check(producer, consumer_db, relay, consumer, 300)
    await broker.close()


async def publish_all_again_and_check(producer, consumer_db, relay, consumer, events: int) -> None:  # type: ignore[no-untyped-def]
    """A crash after publishing but before marking sent makes the relay publish again: the inbox
    must turn those duplicates into no-ops, and every event stays applied once."""
    async with producer.sessionmaker() as session:
        await session.execute(harness.outbox.table.update().values(sent_at=None))
        await session.commit()
    while await relay.relay_once():
        pass
    report = await harness.check(producer, consumer_db)
    assert report.ok, str(report)
    assert report.committed == events and report.applied_rows == events
    assert consumer.duplicates == events


async def test_without_the_inbox_the_checker_sees_the_double_effect(dbs) -> None:  # type: ignore[no-untyped-def]
    producer, consumer_db = dbs
    broker = InProcessBroker()
    await broker.connect()
    await harness.ledger_consumer(with_inbox=False).attach(broker, consumer_db, batch=50, prefetch=50)
    await harness.produce(producer, count=20)
    relay = OutboxRelay(producer, harness.outbox, broker)
    await relay.relay_once()
    async with producer.sessionmaker() as session:
        await session.execute(harness.outbox.table.update().values(sent_at=None))
        await session.commit()
    await relay.relay_once()
    report = await harness.check(producer, consumer_db)
    assert not report.ok
    assert len(report.applied_twice) == 20
    await broker.close()


async def test_a_failing_handler_rolls_back_only_its_own_message(dbs) -> None:  # type: ignore[no-untyped-def]
    producer, consumer_db = dbs
    broker = InProcessBroker(delivery_limit=3)
    await broker.connect()
    await harness.ledger_consumer().attach(broker, consumer_db, batch=50, prefetch=50)
    await harness.produce(producer, count=30, poison_every=10)
    relay = OutboxRelay(producer, harness.outbox, broker)
    await relay.relay_once()
    report = await harness.check(producer, consumer_db)
    assert report.ok, str(report)
    assert report.applied_rows == 27
    dead = await broker.dead_letters("ledger")
    assert len(dead) == 3
    async with consumer_db.sessionmaker() as session:
        inbox_rows = (await session.execute(select(func.count()).select_from(harness.inbox))).scalar_one()
    assert inbox_rows == 27  # the failed attempts left no inbox row behind
    await broker.close()


async def test_ignored_routing_keys_are_acknowledged_without_a_transaction(dbs) -> None:  # type: ignore[no-untyped-def]
    """notify is bound to "#" but never offers access records: they are acked unread, leave no
    inbox row, and the events around them are applied as usual."""
    from shared.inbox import Consumer

    producer, consumer_db = dbs
    broker = InProcessBroker()
    await broker.connect()
    consumer = Consumer(name="ledger", handlers={"#": harness.apply_change}, inbox=harness.inbox, ignore=("trace.#",))
    await consumer.attach(broker, consumer_db, batch=50, prefetch=50)
    async with producer.sessionmaker() as session:
        ignored = {
            (await harness.outbox.emit(session, "trace.recorded", {"n": n}, subject="trace")).id for n in range(20)
        }
        await session.commit()
    await harness.produce(producer, count=30, aggregates=3)
    relay = OutboxRelay(producer, harness.outbox, broker, batch=64)
    while await relay.relay_once():
        pass
    report = await harness.check(producer, consumer_db)
    # the checker expects every committed event applied: exactly the ignored ones were not
    assert report.applied_rows == 30 and report.lost == ignored and not report.applied_twice, str(report)
    async with consumer_db.sessionmaker() as session:
        claimed = (await session.execute(select(func.count()).select_from(harness.inbox))).scalar_one()
    assert claimed == 30  # the 20 ignored events left no trace
    await broker.close()


async def test_events_emitted_together_keep_each_aggregates_sequence_gap_free(dbs) -> None:  # type: ignore[no-untyped-def]
    producer, _ = dbs
    async with producer.sessionmaker() as session:
        await harness.outbox.emit_many(session, "ledger.changed", [({"n": 0}, "agg-a", None)] * 3)
        await session.rollback()  # gives its values back
    async with producer.sessionmaker() as session:
        together = await harness.outbox.emit_many(
            session,
            "ledger.changed",
            [({"n": 1}, "agg-a", None), ({"n": 2}, "agg-b", "000.00.00.H56"), ({"n": 3}, "agg-a", None)],
        )
        alone = await harness.outbox.emit(session, "ledger.changed", {"n": 4}, subject="agg-a")
        await session.commit()
    assert [(e.subject, e.sequence) for e in [*together, alone]] == [
        ("agg-a", "000000000001"),
        ("agg-b", "000000000001"),
        ("agg-a", "000000000002"),
        ("agg-a", "000000000003"),
    ]
    assert together[1].agency == "000.00.00.H56"
    async with producer.sessionmaker() as session:
        stored = (await session.execute(select(harness.outbox.table.c.event_id))).scalars().all()
    assert set(stored) == {e.id for e in [*together, alone]}


class RecordingBroker(InProcessBroker):
    """The in-process broker, keeping what the relay hands it: each pass's size (one publish call
    a pass) and every message."""

    def __init__(self) -> None:
        super().__init__()
        self.passes: list[int] = []
        self.messages: list = []  # type: ignore[type-arg]

    async def publish(self, messages):  # type: ignore[no-untyped-def, override]
        self.passes.append(len(messages))
        self.messages.extend(messages)
        return await super().publish(messages)


@pytest.mark.parametrize("coalesce", [0.0, 0.3])
async def test_a_coalescing_relay_sends_a_moment_of_commits_in_one_pass(dbs, coalesce: float) -> None:  # type: ignore[no-untyped-def]
    """The gateway's relay (one access record committed per request) waits a moment after the
    first commit wakes it: the commits of that moment go out in one pass, not one pass each."""
    import asyncio

    producer, consumer_db = dbs
    broker = RecordingBroker()
    await broker.connect()
    await harness.ledger_consumer().attach(broker, consumer_db, batch=50, prefetch=50)
    relay = OutboxRelay(producer, harness.outbox, broker, poll_seconds=5.0, coalesce_seconds=coalesce)
    relay.start()
    try:
        await asyncio.sleep(0.1)  # the relay's first pass (nothing to send) is done
        for n in range(5):
            async with producer.sessionmaker() as session:
                await harness.outbox.emit(session, "ledger.changed", {"n": n}, subject="agg-c")
                await session.commit()
            await asyncio.sleep(0.03)
        for _ in range(100):
            if relay.published == 5:
                break
            await asyncio.sleep(0.02)
    finally:
        await relay.stop()
        await broker.close()
    assert relay.published == 5
    if coalesce:
        assert broker.passes == [5]
    else:
        assert len(broker.passes) >= 3  # without it, each commit (30 ms apart) had its own pass


async def test_internal_keys_go_many_to_a_message_and_are_applied_once_in_order(dbs) -> None:  # type: ignore[no-untyped-def]
    """The gateway's relay sends its access records to the internal exchange in the CloudEvents
    JSON batch format: a run of rows of an internal key is one message there, the other keys one
    event a message on the events exchange, all in order; the consumer applies each event of a
    batch once, redelivered or not."""
    from shared.events import BATCH_CONTENT_TYPE, EXCHANGE, INTERNAL_EXCHANGE, STRUCTURED_CONTENT_TYPE, events_of

    producer, consumer_db = dbs
    broker = RecordingBroker()
    await broker.connect()
    consumer = harness.ledger_consumer(internal=True)
    await consumer.attach(broker, consumer_db, batch=50, prefetch=50)
    await harness.produce(producer, count=20, aggregates=3)
    async with producer.sessionmaker() as session:  # one event of another key between two runs
        await harness.outbox.emit(session, "ledger.noted", {"n": 20}, subject="agg-0")
        await session.commit()
    await harness.produce(producer, count=10, aggregates=3)
    relay = OutboxRelay(producer, harness.outbox, broker, batch=16, internal_keys={"ledger.changed"})
    while await relay.relay_once():
        pass
    kinds = [
        (m.exchange, m.routing_key, m.content_type, len(events_of(m.body, m.content_type))) for m in broker.messages
    ]
    assert kinds == [
        (INTERNAL_EXCHANGE, "ledger.changed", BATCH_CONTENT_TYPE, 16),  # a pass reads 16 rows
        (INTERNAL_EXCHANGE, "ledger.changed", BATCH_CONTENT_TYPE, 4),
        (EXCHANGE, "ledger.noted", STRUCTURED_CONTENT_TYPE, 1),
        (INTERNAL_EXCHANGE, "ledger.changed", BATCH_CONTENT_TYPE, 10),
    ]
    published = [e.id for m in broker.messages for e in events_of(m.body, m.content_type)]
    async with producer.sessionmaker() as session:
        stored = (
            (await session.execute(select(harness.outbox.table.c.event_id).order_by(harness.outbox.table.c.id)))
            .scalars()
            .all()
        )
    assert published == list(stored)  # every event once, in the outbox's order
    assert relay.published == 31
    await publish_all_again_and_check(producer, consumer_db, relay, consumer, 31)
    await broker.close()


async def test_internal_events_reach_only_queues_bound_on_the_internal_exchange(dbs) -> None:  # type: ignore[no-untyped-def]
    """A queue bound to everything on the events exchange (what an integrator would like to do)
    gets none of them: with no queue bound internally they are not even taken."""
    from shared.bus import PublishError

    producer, consumer_db = dbs
    broker = InProcessBroker()
    await broker.connect()
    await harness.ledger_consumer().attach(broker, consumer_db, batch=50, prefetch=50)  # "ledger.*", events only
    await harness.produce(producer, count=3)
    relay = OutboxRelay(producer, harness.outbox, broker, internal_keys={"ledger.changed"})
    with pytest.raises(PublishError):
        await relay.relay_once()
    assert await relay.pending() == 3  # kept for when audit's queue is there
    await harness.ledger_consumer(internal=True).attach(broker, consumer_db, batch=50, prefetch=50)
    assert await relay.relay_once() == 3
    assert (await harness.check(producer, consumer_db)).applied_rows == 3
    await broker.close()


async def test_a_batch_message_with_a_failing_event_applies_the_others_once(dbs) -> None:  # type: ignore[no-untyped-def]
    """An event that keeps failing takes its whole message to the dead letters after the delivery
    limit; the other events of that message were applied on the first delivery, once."""
    producer, consumer_db = dbs
    broker = InProcessBroker(delivery_limit=3)
    await broker.connect()
    consumer = harness.ledger_consumer(internal=True)
    await consumer.attach(broker, consumer_db, batch=50, prefetch=50)
    await harness.produce(producer, count=30, poison_every=10)
    relay = OutboxRelay(producer, harness.outbox, broker, batch=10, internal_keys={"ledger.changed"})
    while await relay.relay_once():
        pass
    report = await harness.check(producer, consumer_db)
    assert report.ok, str(report)
    assert report.applied_rows == 27
    dead = await broker.dead_letters("ledger")
    assert len(dead) == 3  # the three messages of ten, each with one event that always fails
    assert consumer.duplicates == 2 * 27  # the good events of each message, at its 2nd and 3rd delivery
    await broker.close()

"""The audit consumer's batch append on SQLite and PostgreSQL: concurrent batches, redelivery, poison."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.audit.app import MIGRATIONS
from services.audit.canonical import leaf_hash
from services.audit.handlers import AuditConsumer
from services.audit.handlers import consumer as audit_consumer
from services.audit.models import AuditEntry
from services.audit.store import tree
from shared.bus import Delivery
from shared.db import Database
from shared.events import BATCH_CONTENT_TYPE, batch_bytes, events_of
from shared.migrations import upgrade_async
from tests.servers import temporary_databases
from tests.services.audit.running import event
from tests.services.audit.test_audit_merkle import ReferenceTree


class FakeDelivery(Delivery):
    def __init__(self, body: bytes, routing_key: str = "dossier.received", content_type: str | None = None) -> None:
        self.body, self.routing_key, self.message_id, self.delivery_count = body, routing_key, None, 1
        self.content_type = content_type
        self.outcome: str | None = None

    async def ack(self) -> None:
        self.outcome = "ack"

    async def reject(self, *, requeue: bool) -> None:
        self.outcome = "requeue" if requeue else "dead"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/audit.sqlite"
        await upgrade_async(MIGRATIONS, url, service="audit")
        database = Database(url)
        yield database
        await database.dispose()
        return
    with temporary_databases(["audit"]) as urls:
        await upgrade_async(MIGRATIONS, urls["audit"], service="audit")
        database = Database(urls["audit"])
        yield database
        await database.dispose()


async def test_concurrent_batches_build_one_tree_and_redelivery_adds_nothing(db: Database) -> None:
    events = [event("dossier.received", subject=f"s-{i}", n=i) for i in range(600)]
    bodies = [e.to_bytes() for e in events]
    consumers = [AuditConsumer(name="audit", handlers=audit_consumer.handlers, inbox=None) for _ in range(3)]
    rng = random.Random(7)
    # Three replicas take overlapping batches (every event delivered twice somewhere), concurrently.
    batches = [bodies[i : i + 100] for i in range(0, 600, 100)] + [bodies[i : i + 75] for i in range(0, 600, 75)]
    rng.shuffle(batches)
    deliveries = [[FakeDelivery(b) for b in batch] for batch in batches]

    async def replica(k: int) -> None:
        for batch in deliveries[k::3]:
            await consumers[k].handle_batch(db, batch)

    await asyncio.gather(*(replica(k) for k in range(3)))
    assert all(d.outcome == "ack" for batch in deliveries for d in batch)
    async with db.sessionmaker() as session:
        assert await tree(session).size() == 600
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 600
        rows = (
            await session.execute(
                select(AuditEntry.index, AuditEntry.event_id, AuditEntry.leaf).order_by(AuditEntry.index)
            )
        ).all()
        assert [r.index for r in rows] == list(range(600))
        assert {r.event_id for r in rows} == {e.id for e in events}
        reference = ReferenceTree([leaf_hash(bytes(r.leaf)) for r in rows])
        assert await tree(session).root(600) == reference.mth(0, 600)
        assert await tree(session).root(137) == reference.mth(0, 137)
    assert sum(c.applied for c in consumers) == 600 and sum(c.duplicates for c in consumers) == 600


async def test_poison_in_a_batch_is_dead_lettered_alone(db: Database) -> None:
    good = [event("dossier.received", subject=f"g-{i}") for i in range(5)]
    batch = [
        FakeDelivery(good[0].to_bytes()),
        FakeDelivery(b"\xff not json"),
        FakeDelivery(good[1].to_bytes()),
        FakeDelivery(event("dossier.received", subject="x", n=2**62).to_bytes()),
        FakeDelivery(good[1].to_bytes()),
    ] + [FakeDelivery(g.to_bytes()) for g in good[2:]]
    await audit_consumer.handle_batch(db, batch)
    assert [d.outcome for d in batch] == ["ack", "dead", "ack", "dead", "ack", "ack", "ack", "ack"]
    async with db.sessionmaker() as session:
        subjects = (await session.execute(select(AuditEntry.subject).order_by(AuditEntry.index))).scalars().all()
    assert subjects == [f"g-{i}" for i in range(5)]


async def test_a_batch_that_fails_is_redone_message_by_message(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.audit import handlers

    def fragile(real):  # type: ignore[no-untyped-def]
        async def append(target, records, *args, **options):  # type: ignore[no-untyped-def]
            if any(r.columns["subject"] == "explodes" for r in records):
                raise RuntimeError("the database refused one row")
            return await real(target, records, *args, **options)

        return append

    # every way the consumer appends: one statement, the batch's transaction, one event's
    for name in ("append_from", "append_new_from_head", "append_new"):
        monkeypatch.setattr(handlers, name, fragile(getattr(handlers, name)))
    batch = [
        FakeDelivery(event("dossier.received", subject=s).to_bytes())
        for s in ("before", "explodes", "after", "nul\x00in subject")
    ]
    await audit_consumer.handle_batch(db, batch)
    assert [d.outcome for d in batch] == ["ack", "requeue", "ack", "ack"]
    async with db.sessionmaker() as session:
        subjects = (await session.execute(select(AuditEntry.subject).order_by(AuditEntry.index))).scalars().all()
    assert subjects == ["before", "after", "nulin subject"]


def batch_of(*bodies: bytes) -> FakeDelivery:
    """A message in the CloudEvents JSON batch format, as the gateway's relay sends access records."""
    return FakeDelivery(batch_bytes(bodies), routing_key="access.recorded", content_type=BATCH_CONTENT_TYPE)


async def test_each_event_of_a_batch_message_is_its_own_entry_once(db: Database) -> None:
    records = [event("access.recorded", subject="gateway:access", n=i) for i in range(5)]
    single = event("dossier.received", subject="between")
    batch = [
        batch_of(*(r.to_bytes() for r in records[:3])),
        FakeDelivery(single.to_bytes()),
        batch_of(*(r.to_bytes() for r in records[3:])),
    ]
    await audit_consumer.handle_batch(db, batch)
    assert [d.outcome for d in batch] == ["ack", "ack", "ack"]
    # the first batch again, overlapping the second (a relay that published both before a crash)
    again = [batch_of(*(r.to_bytes() for r in records[2:]))]
    await audit_consumer.handle_batch(db, again)
    assert again[0].outcome == "ack"
    async with db.sessionmaker() as session:
        rows = (await session.execute(select(AuditEntry.event_id, AuditEntry.leaf).order_by(AuditEntry.index))).all()
        # one leaf per event, in the order they were published, each the event itself
        assert [r.event_id for r in rows] == [r.id for r in records[:3]] + [single.id] + [r.id for r in records[3:]]
        reference = ReferenceTree([leaf_hash(bytes(r.leaf)) for r in rows])
        assert await tree(session).root(6) == reference.mth(0, 6)


async def test_a_bad_event_in_a_batch_dead_letters_the_message_and_keeps_the_others(db: Database) -> None:
    good = [event("access.recorded", subject="gateway:access", n=i) for i in range(2)]
    bad = batch_of(good[0].to_bytes(), b'{"specversion":"1.0","id":"x"}', good[1].to_bytes())
    not_an_array = FakeDelivery(b'{"not": "a batch"}', routing_key="access.recorded", content_type=BATCH_CONTENT_TYPE)
    batch = [bad, not_an_array]
    await audit_consumer.handle_batch(db, batch)
    # the message goes where an operator sees it; its good events are in the log already, so a
    # replay of it adds nothing twice
    assert [d.outcome for d in batch] == ["dead", "dead"]
    async with db.sessionmaker() as session:
        ids = (await session.execute(select(AuditEntry.event_id).order_by(AuditEntry.index))).scalars().all()
    assert ids == [g.id for g in good]


async def test_a_batch_message_that_fails_is_retried_whole(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.audit import handlers

    real = {name: getattr(handlers, name) for name in ("append_from", "append_new_from_head", "append_new")}

    def fragile(name: str):  # type: ignore[no-untyped-def]
        async def append(target, records, *args, **options):  # type: ignore[no-untyped-def]
            if any(r.columns["subject"] == "explodes" for r in records):
                raise RuntimeError("the database refused one row")
            return await real[name](target, records, *args, **options)

        return append

    for name in real:
        monkeypatch.setattr(handlers, name, fragile(name))
    fine = FakeDelivery(event("dossier.received", subject="fine").to_bytes())
    failing = batch_of(*(event("access.recorded", subject=s).to_bytes() for s in ("ok", "explodes")))
    await audit_consumer.handle_batch(db, [fine, failing])
    assert [fine.outcome, failing.outcome] == ["ack", "requeue"]
    # each event had its own savepoint: the good one of the failing message is logged, and the
    # message comes back for the other
    monkeypatch.undo()
    again = batch_of(*(e.to_bytes() for e in events_of(failing.body, failing.content_type)))  # type: ignore[union-attr]
    await audit_consumer.handle_batch(db, [again])
    assert again.outcome == "ack"
    async with db.sessionmaker() as session:
        subjects = (await session.execute(select(AuditEntry.subject).order_by(AuditEntry.index))).scalars().all()
    assert subjects == ["fine", "ok", "explodes"]

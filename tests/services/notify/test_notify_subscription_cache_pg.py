"""Notify's subscription cache with two workers on one PostgreSQL database: an event nobody wants
costs no transaction; a subscription made by the other worker is owed events once the cache's
seconds are over, one made here at once; one deleted elsewhere is never owed an event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select

from services.notify import handlers
from services.notify.app import MIGRATIONS
from services.notify.config import get_settings
from services.notify.models import Delivery, Subscription, inbox
from shared import clock
from shared.bus import Delivery as BusDelivery
from shared.db import Database, session_scope
from shared.events import CloudEvent, event_type
from shared.inbox import Consumer
from shared.migrations import upgrade_async
from tests.servers import temporary_databases
from tests.services.notify.notify_support import AGENCY, stored_subscription

pytestmark = pytest.mark.pg

SECONDS = 5.0


class FakeDelivery(BusDelivery):
    def __init__(self, event: CloudEvent) -> None:
        self.body, self.routing_key, self.message_id, self.delivery_count = event.to_bytes(), event.routing_key, None, 1
        self.outcome: str | None = None

    async def ack(self, *, multiple: bool = False) -> None:
        self.outcome = "ack"

    async def reject(self, *, requeue: bool) -> None:
        self.outcome = "requeue" if requeue else "dead"


def dossier_event() -> CloudEvent:
    return CloudEvent(
        id=str(uuid.uuid4()),
        source="urn:lienthong:intake",
        type=event_type("dossier.received"),
        subject="000.00.00.H56-260101-0001",
        data={"code": "000.00.00.H56-260101-0001"},
        agency=AGENCY,
    )


@pytest.fixture
async def workers() -> AsyncIterator[tuple[Database, Database]]:
    with temporary_databases(["notify"]) as urls:
        await upgrade_async(MIGRATIONS, urls["notify"], service="notify")
        here, there = Database(urls["notify"]), Database(urls["notify"])
        yield here, there
        await here.dispose()
        await there.dispose()


@pytest.fixture
def cache() -> handlers.SubscriptionCache:
    return handlers.SubscriptionCache(SECONDS)


@pytest.fixture
def consumer(cache: handlers.SubscriptionCache) -> Consumer:
    settings = get_settings()
    return handlers.consumer(
        settings, cache, handlers.QueueBindings(handlers.bindable_families(settings.withheld_events))
    )


async def subscribe(db: Database) -> int:
    now = datetime.now(UTC)
    async with session_scope(db) as session:
        subscription = stored_subscription(["dossier.#"], now)
        session.add(subscription)
        await session.flush()
        await handlers.subscriptions_changed(session)
        return subscription.id


async def owed(db: Database, event: CloudEvent) -> int:
    async with db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).where(Delivery.event_id == event.id)) or 0)


async def taken_in(db: Database) -> int:
    async with db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(inbox)) or 0)


async def consume(consumer: Consumer, db: Database, event: CloudEvent) -> None:
    delivery = FakeDelivery(event)
    await consumer.handle_batch(db, [delivery])
    assert delivery.outcome == "ack"


async def test_the_cache_follows_changes_made_by_either_worker(
    workers: tuple[Database, Database], cache: handlers.SubscriptionCache, consumer: Consumer
) -> None:
    here, there = workers

    # nobody subscribed: acknowledged without an inbox row (no transaction)
    nobody = dossier_event()
    await consume(consumer, here, nobody)
    assert await taken_in(here) == 0
    loads = cache.loads
    for _ in range(20):
        await consume(consumer, here, dossier_event())
    assert cache.loads == loads  # the subscriptions are not read again per event

    # the other worker subscribes: owed from at most the cache's seconds later
    await subscribe(there)
    later = dossier_event()
    with clock.advanced(SECONDS + 0.1):
        await consume(consumer, here, later)
    assert await owed(here, later) == 1 and await taken_in(here) == 1

    # the other worker deletes it: the cache does not know yet, the database decides
    async with session_scope(there) as session:
        await session.execute(delete(Subscription))
        await handlers.subscriptions_changed(session)
    after_delete = dossier_event()
    await consume(consumer, here, after_delete)
    assert await owed(here, after_delete) == 0

    # this worker subscribes: owed at once, without waiting for the cache's seconds
    await consume(consumer, here, dossier_event())  # the cache has just been checked
    await subscribe(here)
    at_once = dossier_event()
    await consume(consumer, here, at_once)
    assert await owed(here, at_once) == 1

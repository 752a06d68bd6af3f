"""What notify consumes: every event integrators may be offered (queue ``notify``, one
``<family>.#`` binding per event family not withheld), turned into deliveries.

The handler only records which subscriptions are owed the event, in the inbox's transaction;
the delivery worker sends them. So a slow or dead callback never holds up the bus, and an event
seen twice is owed once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.config import NotifySettings
from services.notify.models import Delivery, Subscription, inbox
from shared import clock, organ_id
from shared.bus import topic_matches
from shared.db import insert_ignoring_duplicates
from shared.events import FAMILIES, CloudEvent
from shared.inbox import Consumer

WAKE = "notify_wake"


def wants(subscription: Subscription, routing_key: str, agency: str | None) -> bool:
    """A subscription is owed an event of a type it names, of an agency inside its subtree."""
    if agency is None or not organ_id.within(agency, subscription.agency):
        return False
    return any(topic_matches(pattern, routing_key) for pattern in subscription.event_types)


def pending_delivery(subscription_id: int, event: CloudEvent, now: datetime) -> dict[str, Any]:
    """The columns of a delivery owed now (the worker sends it, then retries on its schedule)."""
    return {
        "subscription_id": subscription_id,
        "event_id": event.id,
        "event_type": event.type,
        "body": event.to_bytes(),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "retry_from": now,
        "created_at": now,
    }


async def owe(session: AsyncSession, subscription: Subscription, event: CloudEvent, now: datetime) -> None:
    await session.execute(
        insert_ignoring_duplicates(session, Delivery.__table__).values(
            **pending_delivery(subscription.id, event, now)
        )
    )
    session.info[WAKE] = True


def consumer(settings: NotifySettings) -> Consumer:
    withheld = tuple(settings.withheld_events)

    async def on_event(session: AsyncSession, event: CloudEvent) -> None:
        try:
            routing_key = event.routing_key
        except ValueError:
            return  # not one of ours: nothing an integrator subscribed to
        if any(topic_matches(pattern, routing_key) for pattern in withheld):
            return  # published under another routing key than its type says
        subscriptions = (
            (await session.execute(select(Subscription).where(Subscription.active.is_(True)))).scalars().all()
        )
        now = clock.now()
        for subscription in subscriptions:
            if wants(subscription, routing_key, event.agency):
                await owe(session, subscription, event, now)

    # A family withheld whole (access records, one per API call) is not bound at all, so the
    # broker never routes it here; other withheld patterns are acknowledged without a
    # transaction. Releases before this one bound "#": that binding is retired.
    families = [f for f in FAMILIES if f"{f}.#" not in withheld and "#" not in withheld]
    return Consumer(
        name="notify",
        handlers={f"{family}.#": on_event for family in families},
        inbox=inbox,
        ignore=withheld,
        retired=("#",),
    )

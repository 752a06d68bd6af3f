"""What notify consumes: every event integrators may be offered (queue ``notify``, one
``<family>.#`` binding per event family not withheld), turned into deliveries.

The handler only records which subscriptions are owed the event, in the inbox's transaction;
the delivery worker sends them. So a slow or dead callback never holds up the bus, and an event
seen twice is owed once.

The active subscriptions are cached in each process (``SubscriptionCache``): an event none of
them wants is acknowledged without a transaction or an inbox row. Every change of a subscription
bumps a version counter in its own transaction; a process re-reads that version at most every
``subscription_cache_seconds`` (1 s) and reloads the subscriptions when it moved, and the process
that made the change reloads at once after its commit. So a new or widened subscription is owed
the events taken in from at most that long after its creation (another worker's changes) or at
once (this worker's); a narrowed, disabled or deleted one is checked against the database in the
transaction that owes the event, so it is never owed an event it no longer wants.

The queue is bound only to the event families some active subscription wants
(:class:`QueueBindings`): with no subscription, RabbitMQ routes notify nothing, and no process
reads, decodes and acknowledges a firehose of events nobody is owed. A transaction that creates,
widens or re-enables a subscription binds its families before it commits (a failure to bind is a
503 and nothing is stored), so an event published once the API has answered reaches the queue.
Families nobody wants any more are unbound by the reconciliation every process runs at start and
every ``RECONCILE_SECONDS``: it reads the committed subscriptions and makes the bindings exactly
what they want. Binding writers and the reconciliation take one advisory lock (PostgreSQL), so a
reconciliation never reads the subscriptions before a writer's commit and unbinds after its bind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.config import NotifySettings
from services.notify.models import Delivery, Subscription, counters, inbox
from shared import clock, organ_id
from shared.bus import Broker, BusUnavailable, topic_matches
from shared.db import CommitSignal, Database, insert_ignoring_duplicates, next_value, peek_value, session_scope
from shared.errors import ServiceUnavailable
from shared.events import FAMILIES, CloudEvent
from shared.inbox import Consumer

# marked by a transaction that owes deliveries: the delivery worker wakes after its commit
DELIVERIES_OWED = CommitSignal("deliveries owed")
VERSION_KEY = "subscriptions-version"
SUBSCRIPTIONS_CHANGED = CommitSignal("subscriptions changed")
QUEUE = "notify"
# how often each process makes the queue's bindings exactly what the subscriptions want (one
# lock and one small query): unbinding what nobody wants any more may wait that long
RECONCILE_SECONDS = 30.0
_BINDINGS_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('notify:bindings'))")


async def subscriptions_changed(session: AsyncSession) -> None:
    """Call in the transaction that creates, changes or deletes a subscription: every process's
    cache reloads (this one right after the commit, the others within the cache's seconds)."""
    await next_value(session, counters, VERSION_KEY)
    SUBSCRIPTIONS_CHANGED.mark(session)


def bindable_families(withheld: Sequence[str]) -> list[str]:
    """The event families notify may bind: all but those withheld whole (access records, one
    per API call, never leave the part's audit trail)."""
    return [f for f in FAMILIES if f"{f}.#" not in withheld and "#" not in withheld]


def families_wanted(patterns: Iterable[str], families: Sequence[str]) -> list[str]:
    """The families (of ``families``) of which an event can match one of ``patterns``: a
    pattern's first word is its family, or, a wildcard (``*.issued``, ``#``), every family."""
    wanted: set[str] = set()
    for pattern in patterns:
        first = pattern.split(".", 1)[0]
        if first in ("*", "#"):
            return list(families)
        wanted.add(first)
    return [f for f in families if f in wanted]


class QueueBindings:
    """Notify's queue bound to the families the active subscriptions want (see the module's doc)."""

    def __init__(self, families: Sequence[str]) -> None:
        self.families = list(families)

    async def bind_for(self, session: AsyncSession, broker: Broker, patterns: Iterable[str]) -> None:
        """In the transaction that creates, widens or re-enables a subscription with
        ``patterns``: its families bound before the commit; the broker away is a 503."""
        keys = _keys(families_wanted(patterns, self.families))
        if not keys:  # only families notify never binds: nothing to bind, nothing to guard
            return
        await _lock(session)
        try:
            await broker.rebind(QUEUE, bind=keys)
        except BusUnavailable as exc:
            raise ServiceUnavailable("the event bus cannot be reached: try again shortly") from exc

    async def at_attach(self, db: Database) -> list[str]:
        """The bindings the consumer attaches with: what the committed subscriptions want. Only
        added, never removed here (a durable queue keeps its earlier bindings until the
        reconciliation right after), so no event a subscription wants is missed at a restart."""
        async with session_scope(db) as session:
            return _keys(await self._wanted(session))

    async def reconcile(self, db: Database, broker: Broker) -> list[str]:
        """The queue bound to exactly the families the committed subscriptions want; returns them."""
        async with session_scope(db) as session:
            await _lock(session)
            wanted = await self._wanted(session)
            await broker.rebind(QUEUE, bind=_keys(wanted), unbind=_keys(f for f in self.families if f not in wanted))
        return wanted

    async def _wanted(self, session: AsyncSession) -> list[str]:
        rows = await session.execute(select(Subscription.event_types).where(Subscription.active.is_(True)))
        return families_wanted((p for (patterns,) in rows for p in patterns), self.families)


def _keys(families: Iterable[str]) -> list[str]:
    return [f"{family}.#" for family in families]


async def _lock(session: AsyncSession) -> None:
    # SQLite (embedded mode: one process, one writer at a time) needs no lock
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(_BINDINGS_LOCK)


@dataclass(frozen=True)
class Cached:
    id: int
    agency: str
    event_types: tuple[str, ...]


class SubscriptionCache:
    """The active subscriptions of one process, reloaded when their version counter moves."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.subscriptions: list[Cached] = []
        self.loads = 0
        self._version: int | None = None
        self._checked = float("-inf")
        self._watched: set[int] = set()  # the databases whose commits reload this cache

    async def refresh(self, db: Database) -> None:
        self._watch(db)
        if clock.monotonic() - self._checked < self.seconds:
            return
        async with db.sessionmaker() as session:
            # the version first: a change committed between the two reads is then seen as a
            # newer version next time, never hidden behind the old one
            version = await peek_value(session, counters, VERSION_KEY)
            if version != self._version:
                rows = (await session.execute(select(Subscription).where(Subscription.active.is_(True)))).scalars()
                self.subscriptions = [Cached(s.id, s.agency, tuple(s.event_types)) for s in rows]
                self.loads += 1
            await session.rollback()
        self._version, self._checked = version, clock.monotonic()

    def _watch(self, db: Database) -> None:
        # this process's own changes: reload right after their commit, not a few seconds later
        if id(db) in self._watched:
            return
        self._watched.add(id(db))
        db.on_commit(SUBSCRIPTIONS_CHANGED, self._recheck)

    def _recheck(self) -> None:
        self._checked = float("-inf")

    def wanting(self, routing_key: str, agency: str | None) -> list[int]:
        return [s.id for s in self.subscriptions if _wants(s.agency, s.event_types, routing_key, agency)]


def _wants(subscribed_agency: str, event_types: Any, routing_key: str, agency: str | None) -> bool:
    if agency is None or not organ_id.within(agency, subscribed_agency):
        return False
    return any(topic_matches(pattern, routing_key) for pattern in event_types)


def wants(subscription: Subscription, routing_key: str, agency: str | None) -> bool:
    """A subscription is owed an event of a type it names, of an agency inside its subtree."""
    return _wants(subscription.agency, subscription.event_types, routing_key, agency)


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
        insert_ignoring_duplicates(Delivery.__table__).values(**pending_delivery(subscription.id, event, now))
    )
    DELIVERIES_OWED.mark(session)


def consumer(settings: NotifySettings, cache: SubscriptionCache, bindings: QueueBindings) -> Consumer:
    """Notify's consumer: an event is owed to the subscriptions that want it, found through
    ``cache`` (the process's one, which the part makes) and confirmed in the database; its queue
    bound as ``bindings`` keeps it."""
    withheld = tuple(settings.withheld_events)

    def routing_key_of(event: CloudEvent) -> str | None:
        try:
            routing_key = event.routing_key
        except ValueError:
            return None  # not one of ours: nothing an integrator subscribed to
        if any(topic_matches(pattern, routing_key) for pattern in withheld):
            return None  # published under another routing key than its type says
        return routing_key

    def accepts(event: CloudEvent) -> bool:
        routing_key = routing_key_of(event)
        return routing_key is not None and bool(cache.wanting(routing_key, event.agency))

    async def on_event(session: AsyncSession, event: CloudEvent) -> None:
        routing_key = routing_key_of(event)
        if routing_key is None:
            return
        # the cache said someone may want it; the database says who still does
        ids = cache.wanting(routing_key, event.agency)
        subscriptions = (
            (await session.execute(select(Subscription).where(Subscription.id.in_(ids), Subscription.active.is_(True))))
            .scalars()
            .all()
        )
        now = clock.now()
        for subscription in subscriptions:
            if wants(subscription, routing_key, event.agency):
                await owe(session, subscription, event, now)

    # A family withheld whole (access records, one per API call) is never bound, so the broker
    # never routes it here; other withheld patterns are acknowledged without a transaction. Of
    # the others, only those some subscription wants are bound (QueueBindings). Releases before
    # this one bound "#": that binding is retired.
    return Consumer(
        name=QUEUE,
        handlers={f"{family}.#": on_event for family in bindings.families},
        bind_at_attach=bindings.at_attach,
        inbox=inbox,
        ignore=withheld,
        retired=("#",),
        accepts=accepts,
        before_batch=cache.refresh,
    )

"""The inbox: a consumer applies each event at most once, in the same transaction as its effects.

At-least-once delivery from the broker + a ``(consumer, source, id)`` row written with the
handler's effects = effectively once. A batch of deliveries shares one transaction, each message
in its own savepoint, so one failing message is retried (and finally dead-lettered) while the
others commit.

Retention: inbox rows older than ``inbox_retention_hours`` (7 days by default) are purged on a
schedule, oldest first by the ``received_at`` index, a bounded batch per transaction. The promise
"applied once" therefore holds for redeliveries within that window, which covers every way the
same event comes back: the broker redelivers unacknowledged messages within minutes, the relay
republishes after a crash within seconds, and a dead letter replayed later was never applied (it
was rejected, so it left no row to forget).
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Column, Index, MetaData, String, Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from shared import clock
from shared.bus import Broker, Delivery, topic_matches
from shared.db import Database, UtcDateTime, insert_ignoring_duplicates
from shared.events import CloudEvent, events_of, is_batch
from shared.failpoints import failpoint
from shared.logging import set_request_context
from shared.metrics import EVENTS_HANDLED

log = structlog.get_logger("inbox")

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
# one event of a delivery: the event (None when unreadable), its handler, or the verdict already
# reached without one ("ignored", "poison")
Parsed = tuple[CloudEvent | None, Handler | None, str | None]

# what settles a message of several events: any to try again → again (the applied ones are
# duplicates then); else any poison → dead-lettered (an operator sees it; the others are applied)
_MESSAGE_OUTCOME_ORDER = ("retry", "poison", "applied", "duplicate", "ignored")


def message_outcome(events: Sequence[str]) -> str:
    """How a delivery is settled, from the outcomes of its events."""
    for outcome in _MESSAGE_OUTCOME_ORDER:
        if outcome in events:
            return outcome
    return "ignored"


class PoisonEvent(Exception):
    """Raised by a handler for an event it can never apply: dead-lettered at once, not retried."""


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("source", String(200), primary_key=True),
        Column("event_id", String(100), primary_key=True),
        Column("received_at", UtcDateTime(), nullable=False),
        Index("ix_inbox_received_at", "received_at"),  # retention deletes the oldest first
    )


async def purge_inbox(db: Database, table: Table, before: datetime, *, batch: int = 1000) -> int:
    """Delete inbox rows received before ``before``, ``batch`` rows per transaction (so a large
    backlog never holds a long lock or a huge transaction); return how many went."""
    keys = (table.c.consumer, table.c.source, table.c.event_id)
    oldest = select(*keys).where(table.c.received_at < before).order_by(table.c.received_at).limit(batch)
    purged = 0
    while True:
        async with db.sessionmaker() as session:
            gone = (await session.execute(delete(table).where(tuple_(*keys).in_(oldest)))).rowcount
            await session.commit()
        purged += gone
        if gone < batch:
            return purged


async def keep_inbox_trimmed(
    db: Database, table: Table, *, retention: timedelta, every_seconds: float, batch: int = 1000
) -> None:
    """Background job: purge the inbox every ``every_seconds``. Several workers of a part may run
    it at once: they delete the same old rows, and a row deleted twice is deleted once."""
    while True:
        try:
            purged = await purge_inbox(db, table, clock.now() - retention, batch=batch)
            if purged:
                log.info("inbox_purged", table=table.name, rows=purged)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: try again next time
            log.warning("inbox_purge_failed", error=repr(exc)[:300])
        await asyncio.sleep(every_seconds)


@functools.cache
def _claim(inbox: Table) -> Any:
    """The inbox claim, its rows given as parameters: compiled once. Rows written into the
    statement (``.values([...])``) made a statement SQLAlchemy does not cache, compiled anew for
    every batch: half a millisecond, more than the insert itself."""
    return insert_ignoring_duplicates(inbox).returning(inbox.c.source, inbox.c.event_id)


@dataclass
class Consumer:
    """A named consumer: its queue, the routing keys it binds and a handler per pattern."""

    name: str
    handlers: dict[str, Handler]
    # None: the handlers apply an event at most once by a unique key of their own effects (audit's
    # log), so an inbox row would check the same thing a second time
    inbox: Table | None
    # routing-key patterns acknowledged unread: bound by "#" but of no interest to this part,
    # they cost no transaction and leave no inbox row
    ignore: tuple[str, ...] = ()
    # bindings an earlier release of this consumer had; removed from its queue at attach
    retired: tuple[str, ...] = ()
    # patterns bound on the internal exchange (events no integrator may read: audit's "#")
    internal: tuple[str, ...] = ()
    # an event this says no to is acknowledged unread like an ignored one: no transaction, no
    # inbox row (notify: no subscription wants it); ``before_batch`` refreshes what it relies on
    accepts: Callable[[CloudEvent], bool] | None = None
    before_batch: Callable[[Database], Awaitable[None]] | None = None
    # seconds a batch that is not full may wait for more while events arrive fast (see
    # ``shared.bus.Batching``): for a consumer whose cost is mostly per batch
    linger: float = 0.0
    # for a consumer whose bindings follow its own state (notify: the families some subscription
    # wants): the patterns bound at attach, read then; the handlers' patterns say only what it can
    # handle, and the part changes the bindings while it runs (``Broker.rebind``)
    bind_at_attach: Callable[[Database], Awaitable[Sequence[str]]] | None = None
    applied: int = field(default=0, init=False)
    duplicates: int = field(default=0, init=False)

    @property
    def bindings(self) -> list[str]:
        return list(self.handlers)

    def handler_for(self, routing_key: str) -> Handler | None:
        for pattern, handler in self.handlers.items():
            if topic_matches(pattern, routing_key):
                return handler
        return None

    async def attach(self, broker: Broker, db: Database, *, batch: int, prefetch: int) -> None:
        async def on_batch(deliveries: list[Delivery]) -> None:
            await self.handle_batch(db, deliveries)

        bindings = self.bindings if self.bind_at_attach is None else list(await self.bind_at_attach(db))
        await broker.consume(
            self.name,
            bindings,
            on_batch,
            batch=batch,
            prefetch=prefetch,
            retired=self.retired,
            linger=self.linger,
            internal=self.internal,
        )

    async def handle_batch(self, db: Database, deliveries: Sequence[Delivery]) -> None:
        """Apply a batch in one transaction (:meth:`apply_batch`); settle each delivery after the
        commit. If that fails, the batch is replayed message by message, each in its own
        savepoint, so only the culprit is retried and finally dead-lettered."""
        if self.before_batch is not None:
            await self.before_batch(db)
        outcomes = await self.apply_batch(db, deliveries)
        if outcomes is None:
            outcomes = await self._careful_path(db, deliveries)
            if outcomes is None:
                for delivery in deliveries:
                    await delivery.reject(requeue=True)
                return
        failpoint("inbox.after_commit")  # effects committed, deliveries not yet acked
        await self._settle(deliveries, outcomes)

    async def _settle(self, deliveries: Sequence[Delivery], outcomes: list[list[str]]) -> None:
        """``outcomes``: per delivery, its events' (a batch message carries several)."""
        for outcome, count in Counter(o for events in outcomes for o in events).items():
            EVENTS_HANDLED.labels(self.name, outcome).inc(count)
        verdicts = [message_outcome(events) for events in outcomes]
        settled_ok = ("applied", "duplicate", "ignored")
        if len(deliveries) > 1 and deliveries[-1].acks_in_bulk and all(v in settled_ok for v in verdicts):
            # deliveries arrive in order on one channel: one multiple-ack settles the batch
            await deliveries[-1].ack(multiple=True)
            return
        for delivery, verdict in zip(deliveries, verdicts, strict=True):
            if verdict in settled_ok:
                await delivery.ack()
            elif verdict == "poison":
                await delivery.reject(requeue=False)
            else:
                await delivery.reject(requeue=True)
        if "retry" in verdicts:
            await asyncio.sleep(0.1)  # a failing dependency should not be hammered

    def _parse(self, delivery: Delivery) -> list[Parsed]:
        """The delivery's events (one, or a batch's), each with its handler or its verdict."""
        if self.ignore and any(topic_matches(p, delivery.routing_key) for p in self.ignore):
            return [(None, None, "ignored")]
        parsed: list[Parsed] = []
        batch = is_batch(delivery.content_type)
        for event in events_of(delivery.body, delivery.content_type):
            if isinstance(event, Exception):
                log.warning("poison_event", consumer=self.name, reason=str(event)[:200])
                parsed.append((None, None, "poison"))
                continue
            # a batch's events are routed by their own types (the message's key names the batch)
            keys = (event.routing_key,) if batch else (delivery.routing_key, event.routing_key)
            handler = next((h for key in keys if (h := self.handler_for(key)) is not None), None)
            if handler is None or (self.accepts is not None and not self.accepts(event)):
                parsed.append((event, None, "ignored"))
            else:
                parsed.append((event, handler, None))
        return parsed

    async def apply_batch(self, db: Database, deliveries: Sequence[Delivery]) -> list[list[str]] | None:
        """The whole batch in one transaction: per delivery, the outcome of each of its events
        (``applied``, ``duplicate``, ``ignored``, ``poison``), or None when it failed and was
        rolled back.

        Here: claim every new event in the inbox with one multi-row insert and run the handlers
        without savepoints. A consumer that can apply a batch in a cheaper way of its own (audit
        appends it to its log at once) overrides this; settling and the fall-back stay here.
        """
        parsed = [self._parse(d) for d in deliveries]
        outcomes: list[list[str]] = [[verdict or "" for _, _, verdict in events] for events in parsed]
        keys = {(e.source, e.id) for events in parsed for e, h, v in events if v is None and e is not None}
        if not keys:  # nothing to apply: no session, no transaction
            return outcomes
        try:
            async with db.sessionmaker() as session:
                if self.inbox is not None:
                    now = clock.now()
                    rows = [{"consumer": self.name, "source": s, "event_id": i, "received_at": now} for s, i in keys]
                    result = await session.execute(_claim(self.inbox), rows if len(rows) > 1 else rows[0])
                    claimed = set(result.all())
                else:
                    claimed = set(keys)
                done: set[tuple[str, str]] = set()
                for message, events in enumerate(parsed):
                    for index, (event, handler, verdict) in enumerate(events):
                        if verdict is not None or event is None or handler is None:
                            continue
                        key = (event.source, event.id)
                        if key not in claimed or (self.inbox is not None and key in done):
                            outcomes[message][index] = "duplicate"
                            continue
                        set_request_context(getattr(event, "requestid", None), event.traceparent)
                        await handler(session, event)
                        done.add(key)
                        outcomes[message][index] = "applied"
                await session.commit()
        except Exception as exc:
            if len(deliveries) > 1 or not isinstance(exc, PoisonEvent):
                log.info("batch_falls_back", consumer=self.name, size=len(deliveries), error=repr(exc)[:200])
            return None
        # counted once committed: a batch that falls back is counted by the careful path
        self.applied += sum(events.count("applied") for events in outcomes)
        self.duplicates += sum(events.count("duplicate") for events in outcomes)
        return outcomes

    async def _careful_path(self, db: Database, deliveries: Sequence[Delivery]) -> list[list[str]] | None:
        outcomes: list[list[str]] = []
        async with db.sessionmaker() as session:
            for delivery in deliveries:
                outcomes.append([await self._apply_one(session, delivery, *item) for item in self._parse(delivery)])
            try:
                await session.commit()
            except Exception as exc:
                log.warning("inbox_commit_failed", consumer=self.name, error=repr(exc))
                await session.rollback()
                return None
        return outcomes

    async def _apply_one(
        self,
        session: AsyncSession,
        delivery: Delivery,
        event: CloudEvent | None,
        handler: Handler | None,
        verdict: str | None,
    ) -> str:
        if verdict is not None or event is None or handler is None:
            return verdict or "ignored"
        set_request_context(getattr(event, "requestid", None), event.traceparent)
        try:
            async with session.begin_nested():
                if self.inbox is not None:
                    result = await session.execute(
                        insert_ignoring_duplicates(self.inbox).values(
                            consumer=self.name,
                            source=event.source,
                            event_id=event.id,
                            received_at=clock.now(),
                        )
                    )
                    if result.rowcount == 0:
                        self.duplicates += 1
                        return "duplicate"
                await handler(session, event)
        except PoisonEvent as exc:
            log.warning("poison_event", consumer=self.name, event_id=event.id, reason=str(exc)[:200])
            return "poison"
        except Exception as exc:
            log.warning(
                "event_handler_failed",
                consumer=self.name,
                event_id=event.id,
                type=event.type,
                delivery=delivery.delivery_count,
                error=repr(exc)[:300],
            )
            return "retry"
        self.applied += 1
        return "applied"

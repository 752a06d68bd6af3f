"""The inbox: a consumer applies each event at most once, in the same transaction as its effects.

At-least-once delivery from the broker + a ``(consumer, source, id)`` row written with the
handler's effects = effectively once. A batch of deliveries shares one transaction, each message
in its own savepoint, so one failing message is retried (and finally dead-lettered) while the
others commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from pydantic import ValidationError
from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import Broker, Delivery, topic_matches
from shared.db import Database, UtcDateTime, insert_ignoring_duplicates
from shared.events import CloudEvent
from shared.logging import set_request_context
from shared.metrics import EVENTS_HANDLED

log = structlog.get_logger("inbox")

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


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
    )


@dataclass
class Consumer:
    """A named consumer: its queue, the routing keys it binds and a handler per pattern."""

    name: str
    handlers: dict[str, Handler]
    inbox: Table
    dedupe: bool = True  # False exists only so a test can show the double effect without it
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

        await broker.consume(self.name, self.bindings, on_batch, batch=batch, prefetch=prefetch)

    async def handle_batch(self, db: Database, deliveries: Sequence[Delivery]) -> None:
        outcomes: list[str] = []
        async with db.sessionmaker() as session:
            for delivery in deliveries:
                outcomes.append(await self._apply_one(session, delivery))
            try:
                await session.commit()
            except Exception as exc:
                log.warning("inbox_commit_failed", consumer=self.name, error=repr(exc))
                await session.rollback()
                for delivery in deliveries:
                    await delivery.reject(requeue=True)
                return
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            EVENTS_HANDLED.labels(self.name, outcome).inc()
            if outcome in ("applied", "duplicate", "ignored"):
                await delivery.ack()
            elif outcome == "poison":
                await delivery.reject(requeue=False)
            else:
                await delivery.reject(requeue=True)
        if "retry" in outcomes:
            await asyncio.sleep(0.1)  # a failing dependency should not be hammered

    async def _apply_one(self, session: AsyncSession, delivery: Delivery) -> str:
        try:
            event = CloudEvent.from_bytes(delivery.body)
        except (ValidationError, ValueError) as exc:
            log.warning("poison_event", consumer=self.name, reason=str(exc)[:200])
            return "poison"
        handler = self.handler_for(delivery.routing_key) or self.handler_for(event.routing_key)
        if handler is None:
            return "ignored"
        set_request_context(getattr(event, "requestid", None), event.traceparent)
        try:
            async with session.begin_nested():
                if self.dedupe:
                    result = await session.execute(
                        insert_ignoring_duplicates(session, self.inbox).values(
                            consumer=self.name,
                            source=event.source,
                            event_id=event.id,
                            received_at=datetime.now(UTC),
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

"""Audit consumes every event on the bus (its queue is bound to ``#``), access records included:
those come several to a message (the CloudEvents JSON batch format, one relay pass of the
gateway's), and each is its own leaf.

A batch of deliveries is appended whole, and the log needs no savepoint per message: an event
either becomes a leaf or is refused before touching the database. So the batch is read first
(poison refused), and its events not in the log yet are appended in one go: on PostgreSQL in one
statement from the head this consumer remembers (``store.append_from``), else in a transaction
(``store.append_new``). Deduplication is the log's own ``UNIQUE(source, event_id)``: the one
statement fails on it, and the transaction looks the batch up under the append lock. Audit keeps
no inbox table, and an event redelivered at any time — not only within an inbox's retention
window — adds nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.store import (
    Head,
    Record,
    UnknownEventError,
    append_from,
    append_new,
    append_new_from_head,
    record_of,
)
from shared.bus import Delivery
from shared.db import Database
from shared.events import CloudEvent, events_of
from shared.inbox import Consumer, PoisonEvent

log = structlog.get_logger("audit")


async def record_event(session: AsyncSession, event: CloudEvent) -> None:
    """The single-event path (the base ``Consumer``'s): the event becomes the next leaf, once."""
    try:
        record = record_of(event)
    except UnknownEventError as exc:
        raise PoisonEvent(str(exc)) from exc
    await append_new(session, [record])


# Tries of the one-statement append before the transaction's path: each failed try brings the
# head back, so a second one succeeds unless another appender moved it again meanwhile.
APPEND_FROM_TRIES = 2


@dataclass
class AuditConsumer(Consumer):
    """The consumer, with the batch appended to the log at once.

    On PostgreSQL it remembers the head its last append left (per database) and appends the
    next batch from it in one statement, outside a transaction; the head row is the check
    (``store.append_from``), so a remembered head gone stale — another replica appended — costs
    one more round trip, never a fork.
    """

    _heads: dict[str, Head] = field(default_factory=dict, init=False, repr=False)  # by database URL

    async def apply_batch(self, db: Database, deliveries: Sequence[Delivery]) -> list[list[str]] | None:
        outcomes: list[list[str]] = []
        read: list[tuple[int, int, Record]] = []  # (message, its event, the record)
        for message, delivery in enumerate(deliveries):
            events = events_of(delivery.body, delivery.content_type)  # a batch: the gateway's access records
            outcomes.append(["poison"] * len(events))
            for position, event in enumerate(events):
                try:
                    record = record_of(event) if isinstance(event, CloudEvent) else event
                except (ValidationError, ValueError) as exc:  # UnknownEventError is a ValueError
                    record = exc
                if isinstance(record, Exception):  # unreadable, or never a leaf
                    log.warning("poison_event", consumer=self.name, reason=str(record)[:200])
                    continue
                read.append((message, position, record))
        records = [record for _, _, record in read]
        try:
            appended = await self._append_from_remembered_head(db, records)
            if appended is None:
                try:
                    appended = await self._append(db, records, look_up_after_lock=False)
                except IntegrityError:
                    # the look-up missed an entry the appender before us had just committed (a
                    # redelivery racing its first delivery): again, looking up after the lock
                    appended = await self._append(db, records, look_up_after_lock=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # One bad message must not sink the others: the base class redoes the batch each
            # message in its own savepoint, so only the culprit is retried and dead-lettered.
            log.warning("audit_batch_failed", consumer=self.name, size=len(deliveries), error=repr(exc)[:300])
            return None
        for message, position, record in read:
            outcomes[message][position] = "applied" if id(record) in appended else "duplicate"
        self.applied += len(appended)
        self.duplicates += len(read) - len(appended)
        return outcomes  # settled by the base: one multiple-ack for a batch without poison

    async def _append_from_remembered_head(self, db: Database, records: list[Record]) -> set[int] | None:
        """PostgreSQL: the batch in one statement from the head this consumer last saw (see
        ``store.append_from``); None when that did not append it, for the transaction's path."""
        if not records or db.dialect != "postgresql":
            return None
        for _ in range(APPEND_FROM_TRIES):
            head = self._heads.get(db.url)
            if head is None:
                return None
            try:
                appended, seen = await append_from(db, records, head)
            except IntegrityError:
                return None  # an event of the batch is logged already: look them up

            self._heads[db.url] = seen
            if appended:
                return {id(r) for r in records}
        return None

    async def _append(self, db: Database, records: list[Record], *, look_up_after_lock: bool) -> set[int]:
        async with db.sessionmaker() as session:
            appended, head = await append_new_from_head(session, records, look_up_after_lock=look_up_after_lock)
            await session.commit()
        if head is not None:
            self._heads[db.url] = head
        return {id(r) for r in appended}


# no inbox: the log's unique key is the deduplication (see append_new)
# A batch costs audit a few statements whatever its size, so at a steady few hundred events a
# second a batch that waits this long for more costs several times less CPU per event; a lone
# event is not held (shared.bus.Batching lingers only while events arrive faster than this).
LINGER_SECONDS = 0.02
consumer = AuditConsumer(name="audit", handlers={"#": record_event}, inbox=None, linger=LINGER_SECONDS, internal=("#",))

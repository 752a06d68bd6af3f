"""Audit consumes every event on the bus (its queue is bound to ``#``), access records included.

A batch of deliveries is one transaction, as for every consumer, but the log needs no savepoint
per message: an event either becomes a leaf or is refused before touching the database. So the
batch is read first (poison refused, duplicates within it dropped), its inbox rows inserted in
one statement whose RETURNING says which events are new, and the new ones appended to the tree
in one go. The inbox's promise is unchanged: the same (consumer, source, id) is applied once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.models import inbox
from services.audit.store import Record, UnknownEventError, append_records, record_of
from shared import clock
from shared.bus import Delivery
from shared.db import Database, insert_ignoring_duplicates
from shared.events import CloudEvent
from shared.inbox import Consumer, PoisonEvent

log = structlog.get_logger("audit")


async def record_event(session: AsyncSession, event: CloudEvent) -> None:
    """The single-event path (the base ``Consumer``'s): the event becomes the next leaf."""
    try:
        record = record_of(event)
    except UnknownEventError as exc:
        raise PoisonEvent(str(exc)) from exc
    await append_records(session, [record])


class AuditConsumer(Consumer):
    """The inbox consumer, with the batch appended to the log at once."""

    async def handle_batch(self, db: Database, deliveries: Sequence[Delivery]) -> None:
        outcomes: list[str] = ["poison"] * len(deliveries)
        fresh: dict[tuple[str, str], tuple[int, Record]] = {}
        for position, delivery in enumerate(deliveries):
            try:
                event = CloudEvent.from_bytes(delivery.body)
                record = record_of(event)
            except (ValidationError, ValueError) as exc:  # UnknownEventError is a ValueError
                log.warning("poison_event", consumer=self.name, reason=str(exc)[:200])
                continue
            key = (event.source, event.id)
            if key in fresh:
                outcomes[position] = "duplicate"
                continue
            fresh[key] = (position, record)
        try:
            async with db.sessionmaker() as session:
                new_keys = await self._claim(session, list(fresh))
                appended = [fresh[key] for key in fresh if key in new_keys]
                await append_records(session, [record for _, record in appended])
                await session.commit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # One bad message must not sink the others: redo the batch the base way, each
            # message in its own savepoint, so only the culprit is retried and dead-lettered.
            log.warning("audit_batch_failed", consumer=self.name, size=len(deliveries), error=repr(exc)[:300])
            await super().handle_batch(db, deliveries)
            return
        for key, (position, _) in fresh.items():
            outcomes[position] = "applied" if key in new_keys else "duplicate"
        self.applied += len(appended)
        self.duplicates += sum(1 for outcome in outcomes if outcome == "duplicate")
        await self._settle(deliveries, outcomes)  # one multiple-ack for a batch without poison

    async def _claim(self, session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Insert the inbox rows; return the keys that were not there before (the new events)."""
        if not self.dedupe:
            return set(keys)
        if not keys:
            return set()
        now = clock.now()
        stmt = insert_ignoring_duplicates(session, inbox).returning(inbox.c.source, inbox.c.event_id)
        rows = [{"consumer": self.name, "source": s, "event_id": i, "received_at": now} for s, i in keys]
        # executemany with RETURNING: SQLAlchemy batches it as "insertmanyvalues" from one cached form
        return {(s, i) for s, i in await session.execute(stmt, rows)}


consumer = AuditConsumer(name="audit", handlers={"#": record_event}, inbox=inbox)

"""Audit consumes every event on the bus (its queue is bound to ``#``)."""

from __future__ import annotations

import json

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.models import AuditEntry, inbox
from shared.events import CloudEvent
from shared.inbox import Consumer


async def record_event(session: AsyncSession, event: CloudEvent) -> None:
    """Append the event as the next leaf (the inbox already made sure it is new)."""
    next_index = (await session.execute(select(func.coalesce(func.max(AuditEntry.index) + 1, 0)))).scalar_one()
    record = event.model_dump(mode="json", exclude_none=True)
    actor = (event.data or {}).get("actor") if isinstance(event.data, dict) else None
    session.add(
        AuditEntry(
            index=next_index,
            source=event.source,
            event_id=event.id,
            type=event.type,
            subject=event.subject,
            agency=event.agency,
            actor=actor if isinstance(actor, str) else None,
            time=event.time,
            leaf=json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
        )
    )
    await session.flush()


consumer = Consumer(name="audit", handlers={"#": record_event}, inbox=inbox)

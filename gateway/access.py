"""Access records: who called which route with what result, sent to audit as events.

The request path only appends to an in-memory queue; a background task writes the queue into
the gateway's outbox in batches (one sequence allocation and one multi-row insert per batch),
from where the relay publishes ``access.recorded`` like any other event. While the database is
away the queue holds up to ``access_queue_limit`` records, then drops the oldest (counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import deque
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import Counter

from shared import clock
from shared.aio import wait_event
from shared.db import Database, next_values, session_scope
from shared.events import event_type, format_sequence
from shared.outbox import EVENTS_WRITTEN, SEQUENCE_KEY, Outbox

log = structlog.get_logger("access")

ROUTING_KEY = "access.recorded"
# One aggregate for all records: the access log of the gateway.
SUBJECT = "gateway:access"
ACCESS_DROPPED = Counter("lienthong_access_records_dropped_total", "Access records dropped (queue full)")


TYPE = event_type(ROUTING_KEY)


def _utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def envelope(source: str, event_id: str, record: dict[str, Any], sequence: str) -> bytes:
    """The CloudEvent bytes of one record, written directly: a few thousand records a second
    would otherwise cost a model validation and a model dump each. Byte for byte what
    ``CloudEvent(...).to_bytes()`` gives (a test holds the two together)."""
    data = {**record, "at": _utc(record["at"])}
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": TYPE,
        "time": _utc(record["at"]),
        "subject": SUBJECT,
        "datacontenttype": "application/json",
        "data": data,
        "sequence": sequence,
    }
    if record["agency"] is not None:
        event["agency"] = record["agency"]
    if record["request_id"] is not None:
        event["requestid"] = record["request_id"]
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


class AccessLog:
    def __init__(self, outbox: Outbox, *, batch: int, flush_seconds: float, queue_limit: int) -> None:
        self.outbox = outbox
        self.batch = batch
        self.flush_seconds = flush_seconds
        self._queue: deque[dict[str, Any]] = deque(maxlen=queue_limit)
        self._wakeup = asyncio.Event()
        self._inflight: asyncio.Future[int] | None = None
        self.written = 0

    def record(
        self,
        *,
        actor: str | None,
        roles: frozenset[str] | list[str],
        agency: str | None,
        client_ip: str | None,
        method: str,
        route: str,
        status: int,
        duration_ms: float,
        request_id: str | None,
    ) -> None:
        """Called on the hot path: an append, nothing else."""
        if len(self._queue) == self._queue.maxlen:
            ACCESS_DROPPED.inc()
        self._queue.append(
            {
                "actor": actor,
                "roles": sorted(roles),
                "agency": agency,
                "client_ip": client_ip,
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(duration_ms, 3),
                "request_id": request_id,
                "at": clock.now(),
            }
        )
        if len(self._queue) >= self.batch:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def run(self, db: Database) -> None:
        """Background job: write what has queued up every ``flush_seconds`` (or when a batch is full)."""
        while True:
            self._wakeup.clear()
            await wait_event(self._wakeup, self.flush_seconds)
            try:
                while self._queue:
                    # shielded: a shutdown waits for the batch in hand (drain) instead of cutting
                    # its transaction in half
                    self._inflight = asyncio.ensure_future(self.flush(db))
                    await asyncio.shield(self._inflight)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: keep the records, try again later
                log.warning("access_flush_failed", error=repr(exc), pending=len(self._queue))
                await asyncio.sleep(min(5.0, self.flush_seconds * 4))

    async def drain(self, db: Database) -> None:
        """At shutdown: finish the batch in hand, then write what is left."""
        if self._inflight is not None and not self._inflight.done():
            with contextlib.suppress(Exception):
                await self._inflight
        while self._queue:
            await self.flush(db)

    async def flush(self, db: Database) -> int:
        """Write one batch into the outbox; put it back if the transaction fails."""
        records = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
        if not records:
            return 0
        try:
            async with session_scope(db) as session:
                sequences = await next_values(session, self.outbox.counters, SEQUENCE_KEY + SUBJECT, len(records))
                rows = []
                for sequence, record in zip(sequences, records, strict=True):
                    event_id = str(uuid.uuid4())
                    rows.append(
                        {
                            "event_id": event_id,
                            "aggregate": SUBJECT,
                            "routing_key": ROUTING_KEY,
                            "body": envelope(self.outbox.source, event_id, record, format_sequence(sequence)),
                            "created_at": record["at"],
                        }
                    )
                await session.execute(self.outbox.table.insert(), rows)
                EVENTS_WRITTEN.mark(session)
        except BaseException:
            self._queue.extendleft(reversed(records))
            raise
        self.written += len(records)
        return len(records)

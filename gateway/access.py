"""Access records: who called which route with what result, sent to audit as events.

No record may be lost once its response is sent, so the edge holds each response's last piece
until the record is committed in the gateway's outbox (from where the relay publishes
``access.recorded`` like any other event): a gateway killed at any moment has recorded every
answer a client received whole. That is a database commit per response, paid cheaply by **group
commit**: records that arrive while a batch is being written wait for the next one, and the next
one starts the moment the one in hand is done. Idle, a lone record is written at once (no timer
adds latency); busy, dozens of requests share one commit.

On PostgreSQL a batch is one statement on the access log's own asyncpg connection, outside
SQLAlchemy (whose session and pool cost more than the statement itself): it takes the batch's
sequence numbers from the counter and inserts the rows, sequence spliced into each envelope by
the database. Elsewhere (SQLite, the embedded mode) a batch is one session transaction.

When a batch cannot be written, its requests' futures fail with :class:`AccessNotRecorded` and
the edge answers 503 (nothing was sent yet) or cuts the connection (a streamed answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import structlog
from prometheus_client import Counter
from sqlalchemy.engine import make_url

from shared import clock
from shared.db import Database, next_values, session_scope
from shared.events import SEQUENCE_DIGITS, event_type, format_sequence
from shared.outbox import EVENTS_WRITTEN, SEQUENCE_KEY, Outbox

log = structlog.get_logger("access")

ROUTING_KEY = "access.recorded"
# One aggregate for all records: the access log of the gateway.
SUBJECT = "gateway:access"
TYPE = event_type(ROUTING_KEY)
RECORDS_WRITTEN = Counter("lienthong_access_records_written_total", "Access records committed")
COMMITS = Counter("lienthong_access_commits_total", "Commits of access records (records per commit: written / commits)")
RECORDS_FAILED = Counter(
    "lienthong_access_records_failed_total", "Access records not committed (their answer was a 503 or cut off)"
)
# after a failed connection attempt, batches fail at once for this long instead of each trying
# again (a database that is away would otherwise be asked once per waiting request)
RECONNECT_PAUSE_SECONDS = 0.5
# a batch not committed by then fails (its requests answer 503) rather than hold them for ever
WRITE_TIMEOUT_SECONDS = 10.0


class AccessNotRecorded(Exception):
    """The batch holding this record was not committed (the database is away)."""


def _utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# compact JSON as the event model writes it (no ASCII escapes, no spaces), one encoder for all
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_TYPE_JSON = _json(TYPE)
_SUBJECT_JSON = _json(SUBJECT)


def envelope_halves(source: str, event_id: str, record: dict[str, Any]) -> tuple[bytes, bytes]:
    """The CloudEvent bytes of one record before and after its sequence number, written
    directly: a few thousand records a second would otherwise cost a model validation and a
    model dump each (and, built whole and cut around the number, a second pass). ``head +
    sequence + tail`` is byte for byte what ``CloudEvent(...).to_bytes()`` gives (a test holds
    the two together): the members in the model's order, ``agency`` and ``requestid`` only when
    set."""
    at = _utc(record["at"])
    head = (
        f'{{"specversion":"1.0","id":{_json(event_id)},"source":{_json(source)},"type":{_TYPE_JSON},'
        f'"time":"{at}","subject":{_SUBJECT_JSON},"datacontenttype":"application/json",'
        f'"data":{_json({**record, "at": at})},"sequence":"'
    )
    tail = '"'
    if record["agency"] is not None:
        tail += ',"agency":' + _json(record["agency"])
    if record["request_id"] is not None:
        tail += ',"requestid":' + _json(record["request_id"])
    return head.encode(), (tail + "}").encode()


def envelope(source: str, event_id: str, record: dict[str, Any], sequence: str) -> bytes:
    """The whole envelope of one record with its sequence number (``format_sequence``)."""
    head, tail = envelope_halves(source, event_id, record)
    return head + sequence.encode() + tail


class BatchWriter(Protocol):
    async def write(self, records: list[dict[str, Any]]) -> None:
        """Commit these records in the outbox, in order, numbered in ``SUBJECT``'s sequence."""

    async def close(self) -> None: ...


class SessionWriter:
    """A batch as one SQLAlchemy transaction: for SQLite (the embedded mode)."""

    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db, self.outbox = db, outbox

    async def write(self, records: list[dict[str, Any]]) -> None:
        outbox = self.outbox
        async with session_scope(self.db) as session:
            sequences = await next_values(session, outbox.counters, SEQUENCE_KEY + SUBJECT, len(records))
            rows = []
            for sequence, record in zip(sequences, records, strict=True):
                event_id = str(uuid.uuid4())
                body = envelope(outbox.source, event_id, record, format_sequence(sequence))
                rows.append(
                    {
                        "event_id": event_id,
                        "aggregate": SUBJECT,
                        "routing_key": ROUTING_KEY,
                        "body": body,
                        "created_at": record["at"],
                    }
                )
            await session.execute(outbox.table.insert(), rows)
            EVENTS_WRITTEN.mark(session)

    async def close(self) -> None:
        pass


class PostgresWriter:
    """A batch as one statement on a connection of its own: one round trip, committed by itself
    (a lone statement is its own transaction). The counter row's lock orders the batches of
    several gateway processes, and the rows of a batch take their ids in sequence order."""

    def __init__(self, dsn: str, outbox: Outbox, on_written: Callable[[], None]) -> None:
        self.dsn = dsn
        self.outbox = outbox
        self.on_written = on_written
        self._connection: asyncpg.Connection | None = None
        self._failed_at: float | None = None
        counter, table = outbox.counters.name, outbox.table.name
        zeros = SEQUENCE_DIGITS
        self.statement = (
            f"WITH taken AS ("
            f" INSERT INTO {counter} (key, value) VALUES ($1, $2)"
            f" ON CONFLICT (key) DO UPDATE SET value = {counter}.value + $2"
            f" RETURNING value - $2 AS before)"
            f" INSERT INTO {table} (event_id, aggregate, routing_key, body, created_at)"
            f" SELECT r.event_id, $3, $4,"
            f" r.head || convert_to(lpad(s.n::text, greatest({zeros}, length(s.n::text)), '0'), 'UTF8') || r.tail,"
            f" r.at"
            f" FROM taken, unnest($5::text[], $6::bytea[], $7::bytea[], $8::timestamptz[])"
            f" WITH ORDINALITY AS r(event_id, head, tail, at, i),"
            f" LATERAL (SELECT taken.before + r.i AS n) AS s"
            f" ORDER BY r.i"
        )

    @classmethod
    def for_database(cls, db: Database, outbox: Outbox, on_written: Callable[[], None]) -> PostgresWriter:
        url = make_url(db.url).set(drivername="postgresql")
        return cls(url.render_as_string(hide_password=False), outbox, on_written)

    async def _connected(self) -> asyncpg.Connection:
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        now = clock.monotonic()
        if self._failed_at is not None and now - self._failed_at < RECONNECT_PAUSE_SECONDS:
            raise AccessNotRecorded("the database was not reachable a moment ago")
        try:
            self._connection = await asyncpg.connect(self.dsn, timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            self._failed_at = now
            raise AccessNotRecorded(f"cannot connect: {exc!r}") from exc
        self._failed_at = None
        return self._connection

    async def write(self, records: list[dict[str, Any]]) -> None:
        connection = await self._connected()
        source = self.outbox.source
        ids, heads, tails, times = [], [], [], []
        for record in records:
            event_id = str(uuid.uuid4())
            head, tail = envelope_halves(source, event_id, record)
            ids.append(event_id)
            heads.append(head)
            tails.append(tail)
            times.append(record["at"])
        try:
            await connection.execute(
                self.statement,
                SEQUENCE_KEY + SUBJECT,
                len(records),
                SUBJECT,
                ROUTING_KEY,
                ids,
                heads,
                tails,
                times,
                timeout=WRITE_TIMEOUT_SECONDS,
            )
        except BaseException:
            # the outcome of a statement cut off is unknown: the connection is not used again
            # (a record written after all is a record too many, never one too few)
            self._connection = None
            with contextlib.suppress(Exception):
                connection.terminate()
            raise
        self.on_written()

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 2)
            self._connection = None


class AccessLog:
    """Group commit of access records: :meth:`record` returns a future that is done once the
    record is committed (or failed with :class:`AccessNotRecorded`)."""

    def __init__(self, writer: BatchWriter, *, batch: int) -> None:
        self.writer = writer
        self.batch = batch
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self.written = 0
        self.commits = 0  # batches committed: requests per commit is written / commits

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
    ) -> asyncio.Future[None]:
        """Queue the record for the next commit; a response waits for the future before its last piece."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(
            (
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
                },
                future,
            )
        )
        if self._committer is None:
            # started now, it runs on the loop's next turn: the records of every request that
            # finishes in this turn go into its first batch
            self._committer = asyncio.create_task(self._commit_while_waiting(), name="access-commit")
        return future

    async def _commit_while_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.batch], self._waiting[self.batch :]
                try:
                    await self.writer.write([record for record, _ in batch])
                except Exception as exc:
                    log.warning("access_records_not_written", error=repr(exc)[:300], records=len(batch))
                    RECORDS_FAILED.inc(len(batch))
                    failure = exc if isinstance(exc, AccessNotRecorded) else AccessNotRecorded(repr(exc))
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(failure)
                            future.exception()  # a request that left no longer looks: no warning
                    continue
                except BaseException:
                    # cancelled mid-write (shutdown): the batch's outcome is unknown, its
                    # requests hear so instead of waiting for ever
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(AccessNotRecorded("the gateway is stopping"))
                            future.exception()
                    raise
                self.written += len(batch)
                self.commits += 1
                RECORDS_WRITTEN.inc(len(batch))
                COMMITS.inc()
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._committer = None

    async def drain(self) -> None:
        """At shutdown: let the batch in hand and those waiting be written, then close."""
        while self._committer is not None:
            await asyncio.shield(self._committer)
        await self.writer.close()

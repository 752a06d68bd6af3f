"""Transactional outbox and its relay.

A part records each event in its own ``outbox`` table in the same transaction as the change
it describes, so an event exists exactly when its change does. The relay publishes unsent rows
in id order with publisher confirms (pipelined) and marks the confirmed prefix as sent. A crash
between publish and mark gives a duplicate (the consumers' inbox drops it), never a loss. Only one
relay per database runs at a time (a PostgreSQL advisory lock), which keeps per-aggregate order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
import zlib
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.expression import ColumnElement

from shared import clock
from shared.aio import stop_tasks, wait_event
from shared.bus import Broker, OutgoingMessage, PublishError
from shared.db import (
    CommitSignal,
    Database,
    UtcDateTime,
    among,
    counter_bump,
    counter_table,
    execute_rows,
    next_values,
    replace_in,
)
from shared.events import (
    BATCH_CONTENT_TYPE,
    INTERNAL_EXCHANGE,
    REGISTRY,
    SEQUENCE_DIGITS,
    CloudEvent,
    EventData,
    batch_bytes,
    event_type,
    format_sequence,
)
from shared.failpoints import failpoint
from shared.logging import current_request_id, current_traceparent
from shared.metrics import OUTBOX_PENDING, OUTBOX_PUBLISHED

log = structlog.get_logger("outbox")

# an aggregate's events are numbered by the counter row of this key and its name (the subject)
SEQUENCE_KEY = "event-seq:"
# marked by a transaction that wrote outbox rows: the relay wakes after its commit, not a poll later
EVENTS_WRITTEN = CommitSignal("events written to the outbox")


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("aggregate", String(200), nullable=False),
        Column("routing_key", String(100), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("sent_at", UtcDateTime(), nullable=True),
        Index(
            "ix_outbox_unsent",
            "id",
            postgresql_where=text("sent_at IS NULL"),
            sqlite_where=text("sent_at IS NULL"),
        ),
    )


class Outbox:
    """Where a part's code records the events its changes produce."""

    def __init__(self, metadata: MetaData, *, service: str) -> None:
        self.service = service
        self.source = f"urn:lienthong:{service}"
        self.table = outbox_table(metadata)
        self.counters = metadata.tables["counter"] if "counter" in metadata.tables else counter_table(metadata)
        self._insert = self.table.insert()  # built once: its cache key is then computed once
        self._insert_numbered = _numbered_insert(self.table, self.counters)

    async def emit(
        self,
        session: AsyncSession,
        routing_key: str,
        data: EventData | Mapping[str, Any],
        *,
        subject: str,
        agency: str | None = None,
    ) -> CloudEvent:
        """Record an event in the caller's transaction; it is published after the commit."""
        return (await self.emit_many(session, routing_key, [(data, subject, agency)]))[0]

    async def emit_many(
        self,
        session: AsyncSession,
        routing_key: str,
        items: Sequence[tuple[EventData | Mapping[str, Any], str, str | None]],
    ) -> list[CloudEvent]:
        """Record events of one type — ``(data, subject, agency)`` each — in the caller's
        transaction, in order: one counter statement per subject and one insert for them all
        (a batch of a hundred signatures is a hundred events of one certificate)."""
        if not items:
            return []
        payloads = [self._payload(routing_key, data) for data, _, _ in items]  # invalid data: no counter taken
        if len(items) == 1 and session.bind.dialect.name == "postgresql":
            [(_, subject, agency)] = items
            return [await self._emit_numbered(session, routing_key, payloads[0], subject, agency)]
        wanted: dict[str, int] = {}
        for _, subject, _ in items:
            wanted[subject] = wanted.get(subject, 0) + 1
        sequences = {
            subject: iter(await next_values(session, self.counters, SEQUENCE_KEY + subject, count))
            for subject, count in wanted.items()
        }
        events = [
            self._event(routing_key, payload, subject, agency, next(sequences[subject]))
            for payload, (_, subject, agency) in zip(payloads, items, strict=True)
        ]
        rows = [
            {
                "event_id": event.id,
                "aggregate": event.subject,
                "routing_key": routing_key,
                "body": event.to_bytes(),
                "created_at": event.time,
            }
            for event in events
        ]
        await execute_rows(session, self._insert, rows if len(rows) > 1 else rows[0])
        EVENTS_WRITTEN.mark(session)
        return events

    async def _emit_numbered(
        self, session: AsyncSession, routing_key: str, payload: dict[str, Any], subject: str, agency: str | None
    ) -> CloudEvent:
        """One event whose sequence PostgreSQL writes into its body as it takes it: the counter's
        bump and the insert are one statement (one round trip; it was two for every event)."""
        event = self._event(routing_key, payload, subject, agency, 0)
        body = event.to_bytes()
        # the envelope's sequence is its last "sequence" member: data comes before it, and what
        # follows it (agency, traceparent, requestid) are strings, whose quotes are escaped
        at = body.rfind(_SEQUENCE_MEMBER + format_sequence(0).encode() + b'"')
        if at < 0:
            raise ValueError("an event's body without its sequence")
        head, tail = body[: at + len(_SEQUENCE_MEMBER)], body[at + len(_SEQUENCE_MEMBER) + SEQUENCE_DIGITS :]
        [row] = await execute_rows(
            session,
            self._insert_numbered,
            {
                "counter_key": SEQUENCE_KEY + subject,
                "event_id": event.id,
                "aggregate": subject,
                "routing_key": routing_key,
                "body_head": head,
                "body_tail": tail,
                "created_at": event.time,
            },
        )
        EVENTS_WRITTEN.mark(session)
        return event.model_copy(update={"sequence": format_sequence(int(row["value"]))})

    @staticmethod
    def _payload(routing_key: str, data: EventData | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(data, EventData):
            return data.model_dump(mode="json")
        registered = REGISTRY.get(routing_key)
        return registered[1].model_validate(dict(data)).model_dump(mode="json") if registered else dict(data)

    def _event(
        self, routing_key: str, payload: dict[str, Any], subject: str, agency: str | None, sequence: int
    ) -> CloudEvent:
        event = CloudEvent(
            id=str(uuid.uuid4()),
            source=self.source,
            type=event_type(routing_key),
            subject=subject,
            data=payload,
            sequence=format_sequence(sequence),
            agency=agency,
            traceparent=current_traceparent(),
        )
        if current_request_id():
            event = event.model_copy(update={"requestid": current_request_id()})
        return event

    def resubject(self, subject: ColumnElement[str]) -> list[Update]:
        """Statements that move the events emitted in this transaction under a stand-in subject,
        and that subject's sequence, to ``subject`` (an SQL expression): for an aggregate whose
        name is only known at the end of its transaction (see ``shared.db.CodeCounter``). Each
        row's aggregate and every mention of the stand-in in its body (the CloudEvent's subject,
        the data naming it) are rewritten. Bind parameters: ``stand_in`` and ``event_ids``."""
        table, counters = self.table, self.counters
        stand_in = bindparam("stand_in", type_=String)
        return [
            update(table)
            .where(among(table.c.event_id, "event_ids"))
            .values(aggregate=subject, body=replace_in(table.c.body, stand_in, subject)),
            update(counters)
            .where(counters.c.key == literal(SEQUENCE_KEY) + stand_in)
            .values(key=literal(SEQUENCE_KEY) + subject),
        ]


_SEQUENCE_MEMBER = b'"sequence":"'


def _numbered_insert(table: Table, counters: Table) -> Select[Any]:
    """An event's counter bump and its outbox row in one statement (PostgreSQL): the body comes
    in two parts, before and after its sequence, and the sequence taken goes between them,
    zero-padded as ``format_sequence`` does. Gives the sequence (``value``)."""
    taken = counter_bump(counters).cte("taken")
    number = cast(taken.c.value, String)
    sequence = func.convert_to(func.lpad(number, func.greatest(SEQUENCE_DIGITS, func.length(number)), "0"), "UTF8")
    body = (
        bindparam("body_head", type_=LargeBinary)
        .op("||", return_type=LargeBinary)(sequence)
        .op("||", return_type=LargeBinary)(bindparam("body_tail", type_=LargeBinary))
    )
    row = select(
        bindparam("event_id", type_=String),
        bindparam("aggregate", type_=String),
        bindparam("routing_key", type_=String),
        body,
        bindparam("created_at", type_=UtcDateTime()),
    ).select_from(taken)
    written = insert(table).from_select(["event_id", "aggregate", "routing_key", "body", "created_at"], row)
    return select(taken.c.value).add_cte(written.cte("written"))


async def purge_sent(db: Database, table: Table, before: datetime, *, batch: int = 1000) -> int:
    """Delete outbox rows sent before ``before``, ``batch`` rows per transaction; return how many.

    Ids are given in creation order and a row is sent after it is created, so the old rows are
    the first ones by primary key: each batch reads the next ``batch`` rows by that index (no
    index on ``sent_at`` needed, no scan of the recent rows), deletes the sent old ones among
    them and stops at the first row created after ``before``. A row not sent yet is kept.
    """
    purged, cursor = 0, 0
    while True:
        async with db.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(table.c.id, table.c.sent_at, table.c.created_at)
                    .where(table.c.id > cursor)
                    .order_by(table.c.id)
                    .limit(batch)
                )
            ).all()
            old = [r.id for r in rows if r.sent_at is not None and r.sent_at < before]
            if old:
                await session.execute(delete(table).where(table.c.id.in_(old)))
            await session.commit()
        purged += len(old)
        if len(rows) < batch or rows[-1].created_at >= before:
            return purged
        cursor = rows[-1].id


# how long the relay may keep the sent marks of published rows before writing them at once
MARK_DELAY_SECONDS = 0.2


class OutboxRelay:
    """Publishes a part's outbox to the broker, in order, confirmed, resuming after any crash."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        broker: Broker,
        *,
        batch: int = 500,
        poll_seconds: float = 1.0,
        coalesce_seconds: float = 0.0,
        internal_keys: Collection[str] = (),
        retention: timedelta = timedelta(days=7),
        purge_every: timedelta = timedelta(minutes=10),
        purge_batch: int = 1000,
    ) -> None:
        self.db, self.outbox, self.broker = db, outbox, broker
        self.batch, self.poll_seconds, self.retention = batch, poll_seconds, retention
        self.coalesce_seconds = coalesce_seconds
        # routing keys of events no integrator may read (the gateway's access records): they go to
        # the internal exchange, many to a message (one publish, one confirm and one broker write
        # for a pass rather than per request); their consumers read the batch format
        # (``shared.events.events_of``)
        self.internal_keys = frozenset(internal_keys)
        self.purge_every, self.purge_batch = purge_every, purge_batch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock_conn: AsyncConnection | None = None
        name = outbox.table.name
        # published rows whose sent_at is not written yet are passed over by id, not by a cursor:
        # a transaction that took a lower id may commit after a higher one was published
        self._unsent_sql = (
            f"SELECT id, event_id, routing_key, body FROM {name} "
            "WHERE sent_at IS NULL AND NOT (id = ANY($2::bigint[])) ORDER BY id LIMIT $1"
        )
        self._mark_sent_sql = f"UPDATE {name} SET sent_at = $1 WHERE id = ANY($2::bigint[])"
        self._unmarked: list[int] = []  # confirmed by the broker, sent_at not written yet
        self._marks_due = 0.0
        self.published = 0
        db.on_commit(EVENTS_WRITTEN, self.wake)

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"relay:{self.outbox.service}")

    async def stop(self) -> None:
        if self._task:
            await stop_tasks([self._task])
            self._task = None
        await self._release_lock()

    @property
    def running(self) -> bool:
        return bool(self._task and not self._task.done())

    async def _run(self) -> None:
        backoff = 0.2
        last_purge = datetime.min.replace(tzinfo=UTC)
        while True:
            try:
                if not await self._hold_lock():
                    await asyncio.sleep(2.0)
                    continue
                # cleared before the read: a commit during this pass wakes the next one at once
                self._wakeup.clear()
                sent = await self.relay_once()
                backoff = 0.2
                now = clock.now()
                if now - last_purge > self.purge_every:
                    await self._purge(now - self.retention)
                    last_purge = now
                if sent < self.batch:
                    woken = await wait_event(self._wakeup, self._idle_seconds())
                    if woken and self.coalesce_seconds:
                        # a stream of small commits (the gateway's access records, one per
                        # request) goes out a pass per moment rather than a pass per commit: one
                        # read and one confirm wait for all, and the consumers get them together
                        await asyncio.sleep(self.coalesce_seconds)
                if self._unmarked and clock.monotonic() >= self._marks_due:
                    await self._write_marks()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database away: wait and try again
                # a blip (a consumer not bound yet at start-up, a reconnect) is routine; only a
                # relay that keeps failing at the longest back-off needs someone's attention
                report = log.warning if backoff >= 5.0 else log.info
                report("relay_retry", service=self.outbox.service, error=repr(exc), backoff=backoff)
                await self._release_lock()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def relay_once(self) -> int:
        """Publish one batch of unsent events; return how many were confirmed."""
        driver = await self._lock_driver()
        rows = await (self._unsent_by_driver(driver) if driver is not None else self._unsent())
        if not rows:
            OUTBOX_PENDING.labels(self.outbox.service).set(0)
            return 0
        failpoint("relay.after_read")  # committed, about to be published
        messages, sizes = self._messages(rows)
        error: PublishError | None = None
        try:
            confirmed = await self.broker.publish(messages)
        except PublishError as exc:
            confirmed, error = exc.confirmed, exc
        confirmed = sum(sizes[:confirmed])  # rows, from messages
        if confirmed:
            ids = [r[0] for r in rows[:confirmed]]
            if driver is not None:
                if not self._unmarked:
                    self._marks_due = clock.monotonic() + MARK_DELAY_SECONDS
                self._unmarked.extend(ids)
                if len(self._unmarked) >= self.batch:
                    await self._write_marks()
            else:
                table = self.outbox.table
                async with self.db.sessionmaker() as session:
                    await session.execute(update(table).where(table.c.id.in_(ids)).values(sent_at=clock.now()))
                    await session.commit()
            self.published += confirmed
            OUTBOX_PUBLISHED.labels(self.outbox.service).inc(confirmed)
        if error:
            raise error
        return confirmed

    def _messages(self, rows: Sequence[Any]) -> tuple[list[OutgoingMessage], list[int]]:
        """The rows as messages, in order, and how many rows each carries: one event a message
        on ``lienthong.events``, except the rows of ``internal_keys``: consecutive ones go out as
        one message on ``lienthong.internal``, in the CloudEvents JSON batch format, their bytes
        unchanged inside it."""
        messages: list[OutgoingMessage] = []
        sizes: list[int] = []
        for key, group in itertools.groupby(rows, key=lambda r: r[2]):
            run = list(group)
            if key in self.internal_keys:
                messages.append(
                    OutgoingMessage(
                        key,
                        batch_bytes([bytes(r[3]) for r in run]),
                        # a batch is known by its first event and how many follow it
                        f"{run[0][1]}+{len(run) - 1}",
                        content_type=BATCH_CONTENT_TYPE,
                        exchange=INTERNAL_EXCHANGE,
                    )
                )
                sizes.append(len(run))
                continue
            messages.extend(OutgoingMessage(routing_key=key, body=bytes(r[3]), message_id=r[1]) for r in run)
            sizes.extend([1] * len(run))
        return messages, sizes

    async def _unsent(self) -> Sequence[Any]:
        table = self.outbox.table
        async with self.db.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(table.c.id, table.c.event_id, table.c.routing_key, table.c.body)
                    .where(table.c.sent_at.is_(None))
                    .order_by(table.c.id)
                    .limit(self.batch)
                )
            ).all()
            await session.rollback()
        return rows

    async def _unsent_by_driver(self, driver: Any) -> Sequence[Any]:
        return await driver.fetch(self._unsent_sql, self.batch, self._unmarked)  # type: ignore[no-any-return]

    def _idle_seconds(self) -> float:
        if not self._unmarked:
            return self.poll_seconds
        return max(0.0, min(self.poll_seconds, self._marks_due - clock.monotonic()))

    async def _write_marks(self) -> None:
        """Write sent_at for the rows published since the last time: one UPDATE for all the
        passes of ``MARK_DELAY_SECONDS`` rather than a transaction per pass (at one request at a
        time every pass publishes one access record). Marks not written when the relay loses its
        connection are published again and the consumers' inboxes drop the copies."""
        driver = await self._lock_driver()
        if driver is None or not self._unmarked:
            return
        ids, self._unmarked = self._unmarked, []
        await driver.execute(self._mark_sent_sql, clock.now(), ids)

    async def _lock_driver(self) -> Any | None:
        """The asyncpg connection that holds this relay's advisory lock, when it holds it: the
        relay's two statements run on it directly, each its own transaction (a read, and one
        UPDATE). Through a session they were a BEGIN, the statement and a COMMIT or ROLLBACK each,
        through SQLAlchemy's execution layers: a quarter of the gateway's CPU when every request
        commits its own access record (one client). Elsewhere (SQLite, a relay asked to run once
        without the lock) it is the session path."""
        if self._lock_conn is None or self._lock_conn.closed or self._lock_conn.in_transaction():
            return None
        raw = await self._lock_conn.get_raw_connection()
        return raw.driver_connection

    async def pending(self) -> int:
        table = self.outbox.table
        async with self.db.sessionmaker() as session:
            count = (await session.execute(select(func.count()).where(table.c.sent_at.is_(None)))).scalar_one()
            await session.rollback()
        count = max(0, int(count) - len(self._unmarked))  # published, their sent_at still to write
        OUTBOX_PENDING.labels(self.outbox.service).set(count)
        return count

    async def _purge(self, before: datetime) -> int:
        return await purge_sent(self.db, self.outbox.table, before, batch=self.purge_batch)

    async def _hold_lock(self) -> bool:
        """One relay per database: replicas of a part wait while another holds the lock."""
        if self.db.dialect != "postgresql":
            return True
        if self._lock_conn is not None and not self._lock_conn.closed:
            return True
        conn = await self.db.engine.connect()
        key = zlib.crc32(f"lienthong-relay:{self.outbox.service}".encode())
        got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
        await conn.commit()
        if got:
            self._lock_conn = conn
            return True
        await conn.close()
        return False

    async def _release_lock(self) -> None:
        with contextlib.suppress(Exception):  # a connection gone: the copies are dropped downstream
            await asyncio.wait_for(self._write_marks(), 2.0)
        self._unmarked = []
        if self._lock_conn is not None:
            with contextlib.suppress(Exception):
                await self._lock_conn.close()
            self._lock_conn = None

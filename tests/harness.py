"""A tiny producer/consumer pair built only from shared/, and the checker every bus and fault
test uses: nothing lost, nothing applied twice, order kept per aggregate, outbox drained."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database, counter_table, new_metadata
from shared.events import CloudEvent
from shared.inbox import Consumer, PoisonEvent, inbox_table
from shared.outbox import Outbox
from tests.servers import temporary_databases

metadata: MetaData = new_metadata()
counters = counter_table(metadata)
inbox = inbox_table(metadata)
outbox = Outbox(metadata, service="ledger")
# No unique constraint on purpose: a double effect must be visible, not prevented here.
applied = Table(
    "applied",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("aggregate", String(200), nullable=False),
    Column("sequence", String(20), nullable=False),
)


async def create_schema(db: Database) -> None:
    # The harness is not a part and has no migrations; parts' schemas come from Alembic.
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def produce(db: Database, *, count: int, aggregates: int = 10, poison_every: int = 0) -> None:
    """Commit ``count`` business changes, each with its event, one transaction each."""
    for i in range(count):
        async with db.sessionmaker() as session:
            poison = poison_every and i % poison_every == poison_every - 1
            await outbox.emit(
                session,
                "ledger.changed",
                {"n": i, "poison": bool(poison)},
                subject=f"poison-{i}" if poison else f"agg-{i % aggregates}",
            )
            await session.commit()


async def apply_change(session: AsyncSession, event: CloudEvent) -> None:
    if event.data.get("poison"):
        raise RuntimeError("this event always fails")
    await session.execute(applied.insert().values(event_id=event.id, aggregate=event.subject, sequence=event.sequence))


async def reject_poison(session: AsyncSession, event: CloudEvent) -> None:
    if event.data.get("poison"):
        raise PoisonEvent("never applicable")
    await apply_change(session, event)


def ledger_consumer(*, with_inbox: bool = True, name: str = "ledger", internal: bool = False) -> Consumer:
    """The ledger's consumer; ``with_inbox=False`` takes its inbox away, to show what the inbox
    prevents; ``internal=True`` binds it on the internal exchange too, as audit is."""
    return Consumer(
        name=name,
        handlers={"ledger.*": apply_change},
        inbox=inbox if with_inbox else None,
        internal=("ledger.#",) if internal else (),
    )


@dataclass
class Report:
    committed: int
    applied_rows: int
    lost: set[str] = field(default_factory=set)
    applied_twice: dict[str, int] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)
    out_of_order: list[str] = field(default_factory=list)
    unsent: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.applied_twice or self.unknown or self.out_of_order or self.unsent)

    def __str__(self) -> str:
        return (
            f"committed={self.committed} applied={self.applied_rows} lost={len(self.lost)} "
            f"applied_twice={len(self.applied_twice)} unknown={len(self.unknown)} "
            f"out_of_order={self.out_of_order[:5]} unsent={self.unsent}"
        )


async def check(producer: Database, consumer: Database, *, expected_poison: set[str] | None = None) -> Report:
    """Compare what producers committed with what the consumer applied."""
    async with producer.sessionmaker() as s:
        rows = (
            await s.execute(select(outbox.table.c.event_id, outbox.table.c.aggregate, outbox.table.c.sent_at))
        ).all()
    committed = {r.event_id for r in rows if not r.aggregate.startswith("poison-")}
    unsent = sum(1 for r in rows if r.sent_at is None)
    async with consumer.sessionmaker() as s:
        done = (await s.execute(select(applied).order_by(applied.c.id))).all()
    counts: dict[str, int] = defaultdict(int)
    last: dict[str, str] = {}
    out_of_order = []
    for row in done:
        counts[row.event_id] += 1
        if counts[row.event_id] == 1:
            if row.aggregate in last and row.sequence <= last[row.aggregate]:
                out_of_order.append(f"{row.aggregate}:{last[row.aggregate]}>{row.sequence}")
            last[row.aggregate] = row.sequence
    return Report(
        committed=len(committed),
        applied_rows=len(done),
        lost=committed - set(counts),
        applied_twice={k: v for k, v in counts.items() if v > 1},
        unknown=set(counts) - committed,
        out_of_order=out_of_order,
        unsent=unsent,
    )


async def wait_until_applied(consumer: Database, expected: int, *, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        async with consumer.sessionmaker() as s:
            count = (await s.execute(select(func.count(func.distinct(applied.c.event_id))))).scalar_one()
        if count >= expected:
            return count
        await asyncio.sleep(0.2)
    return count


def sqlite_url(path: Path, name: str) -> str:
    return f"sqlite+aiosqlite:///{path}/{name}.sqlite"


@asynccontextmanager
async def producer_and_consumer(kind: str, tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    """The ledger's producer and consumer databases, schema made: SQLite files under ``tmp_path``
    (``kind`` "sqlite") or fresh PostgreSQL databases, dropped afterwards ("postgresql")."""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            urls = {name: sqlite_url(tmp_path, name) for name in ("producer", "consumer")}
        else:
            urls = stack.enter_context(temporary_databases(["producer", "consumer"]))
        producer, consumer = Database(urls["producer"]), Database(urls["consumer"])
        try:
            await create_schema(producer)
            await create_schema(consumer)
            yield producer, consumer
        finally:
            await producer.dispose()
            await consumer.dispose()

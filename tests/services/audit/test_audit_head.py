"""The head row appenders start from: two appenders with their own connections, a batch rolled
back, the migration that computes the head of an existing log, and the self-check watching it.

Whatever the appenders did, the log must be one RFC 9162 tree: entries 0…n-1 each once, and every
inclusion and consistency proof checked by the independent reference in ``test_audit_merkle``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, select, update

from services.audit.app import MIGRATIONS
from services.audit.canonical import leaf_hash
from services.audit.handlers import AuditConsumer
from services.audit.handlers import consumer as audit_consumer
from services.audit.jobs import check_head
from services.audit.merkle import MemoryNodeStore, MerkleLog, frontier_keys
from services.audit.models import AuditEntry, log_head, merkle_node
from services.audit.store import append_new, record_of, tree
from shared.db import Database
from shared.migrations import upgrade, upgrade_async
from tests.servers import temporary_databases
from tests.services.audit.running import event
from tests.services.audit.test_audit_capture import FakeDelivery
from tests.services.audit.test_audit_merkle import ReferenceTree, verify_consistency, verify_inclusion

BEFORE_HEAD = "e8bbb94e8c0c"  # the revision before the head row


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/audit.sqlite"
        return
    with temporary_databases(["audit"]) as urls:
        yield urls["audit"]


async def assert_one_log(db: Database, expected_event_ids: set[str]) -> None:
    """Entries 0…n-1, each event once; the head is the stored tree's; every proof verifies."""
    async with db.sessionmaker() as session:
        rows = (
            await session.execute(
                select(AuditEntry.index, AuditEntry.event_id, AuditEntry.leaf).order_by(AuditEntry.index)
            )
        ).all()
        size = len(rows)
        assert [r.index for r in rows] == list(range(size)), "a gap or a duplicate index"
        assert sorted(r.event_id for r in rows) == sorted(expected_event_ids), "an event missing or twice"
        reference = ReferenceTree([leaf_hash(bytes(r.leaf)) for r in rows])
        log = tree(session)
        assert await log.size() == size
        head = (await session.execute(select(log_head.c.size, log_head.c.frontier))).one()
        assert head.size == size
        frontier = await session.execute(select(merkle_node.c.level, merkle_node.c.idx, merkle_node.c.hash))
        nodes = {(level, idx): bytes(value) for level, idx, value in frontier}
        assert bytes(head.frontier) == b"".join(nodes[key] for key in frontier_keys(size))
        root = await log.root(size)
        assert root == reference.mth(0, size)
        proofs = await log.inclusion_proofs(list(range(size)), size)
        for index, proof in enumerate(proofs):
            assert verify_inclusion(index, size, reference.leaves[index], proof, root), f"leaf {index}"
        for old in sorted({1, 2, 3, size // 3, size // 2, size - 1, size}):
            if 0 < old <= size:
                proof = await log.consistency_proof(old, size)
                assert verify_consistency(old, size, reference.mth(0, old), root, proof), f"{old} -> {size}"


async def test_two_appenders_with_their_own_connections_make_one_log(url: str) -> None:
    await upgrade_async(MIGRATIONS, url, service="audit")
    # two engines: as two processes, no pool or lock in common but the database's
    engines = [Database(url), Database(url)]
    events = [event("dossier.received", subject=f"s-{i}", n=i) for i in range(240)]
    bodies = [e.to_bytes() for e in events]
    rng = random.Random(14)
    # batches of one or two, as at the desk-day mix's rate, and a tenth of them delivered again
    batches, i = [], 0
    while i < len(bodies):
        step = rng.choice((1, 2))
        batches.append(bodies[i : i + step])
        i += step
    batches += rng.sample(batches, len(batches) // 10)
    rng.shuffle(batches)
    consumers = [AuditConsumer(name="audit", handlers=audit_consumer.handlers, inbox=None) for _ in engines]
    deliveries = [[FakeDelivery(b) for b in batch] for batch in batches]

    async def appender(k: int) -> None:
        for batch in deliveries[k::2]:
            await consumers[k].handle_batch(engines[k], batch)

    try:
        await asyncio.gather(appender(0), appender(1))
        assert all(d.outcome == "ack" for batch in deliveries for d in batch)
        assert sum(c.applied for c in consumers) == len(events)
        await assert_one_log(engines[0], {e.id for e in events})
    finally:
        for db in engines:
            await db.dispose()


async def test_a_batch_rolled_back_leaves_the_head_where_it_was(url: str) -> None:
    await upgrade_async(MIGRATIONS, url, service="audit")
    db = Database(url)
    try:
        first = [event("dossier.received", subject=f"a-{i}") for i in range(5)]
        await audit_consumer.handle_batch(db, [FakeDelivery(e.to_bytes()) for e in first])
        lost = [event("dossier.received", subject=f"b-{i}") for i in range(3)]

        class Crash(Exception):
            pass

        with pytest.raises(Crash):
            async with db.sessionmaker() as session:
                appended = await append_new(session, [record_of(e) for e in lost])
                assert len(appended) == 3
                raise Crash  # the process dies between the append and the commit
        async with db.sessionmaker() as session:
            head = (await session.execute(select(log_head.c.size))).scalar_one()
        assert head == 5
        # redelivered, and more after them: they continue the log at 5, not after a hole
        later = [event("dossier.received", subject=f"c-{i}") for i in range(4)]
        await audit_consumer.handle_batch(db, [FakeDelivery(e.to_bytes()) for e in lost + later])
        await assert_one_log(db, {e.id for e in first + lost + later})
    finally:
        await db.dispose()


async def test_the_migration_computes_the_head_of_an_existing_log(url: str) -> None:
    await asyncio.to_thread(upgrade, MIGRATIONS, url, service="audit", revision=BEFORE_HEAD)
    records = [record_of(event("dossier.received", subject=f"old-{i}", n=i)) for i in range(37)]
    # a log written before the head row existed: its nodes, as the appender then wrote them
    memory = MemoryNodeStore()
    await MerkleLog(memory).append_many([r.leaf for r in records])
    keys = [(level, idx) for level in range(7) for idx in range(37 >> level)]
    nodes = await memory.get_many(keys)
    db = Database(url)
    try:
        async with db.sessionmaker() as session:
            await session.execute(
                insert(merkle_node), [{"level": lvl, "idx": i, "hash": h} for (lvl, i), h in nodes.items()]
            )
            await session.execute(
                insert(AuditEntry.__table__),
                [
                    {"index": n, "leaf": r.leaf, "recorded_at": r.columns["time"], **r.columns}
                    for n, r in enumerate(records)
                ],
            )
            await session.commit()
        await upgrade_async(MIGRATIONS, url, service="audit")
        async with db.sessionmaker() as session:
            head = (await session.execute(select(log_head.c.size, log_head.c.frontier))).one()
            indexes = await session.run_sync(
                lambda s: {ix["name"] for ix in inspect(s.connection()).get_indexes("audit_entry")}
            )
        assert head.size == 37
        assert bytes(head.frontier) == b"".join(nodes[key] for key in frontier_keys(37))
        assert "ix_audit_entry_agency" not in indexes and "ix_audit_entry_subject" in indexes
        more = [event("dossier.received", subject=f"new-{i}") for i in range(10)]
        await audit_consumer.handle_batch(db, [FakeDelivery(e.to_bytes()) for e in more])
        await assert_one_log(db, {r.columns["event_id"] for r in records} | {e.id for e in more})
    finally:
        await db.dispose()


async def test_the_self_check_names_a_head_that_does_not_match_the_tree(url: str) -> None:
    await upgrade_async(MIGRATIONS, url, service="audit")
    db = Database(url)
    try:
        events = [event("dossier.received", subject=f"h-{i}") for i in range(6)]
        await audit_consumer.handle_batch(db, [FakeDelivery(e.to_bytes()) for e in events])
        assert await check_head(db) == []
        async with db.sessionmaker() as session:
            await session.execute(update(log_head).values(size=9))  # as someone with database access
            await session.commit()
        [finding] = await check_head(db)
        assert finding.key == "head" and "size 9" in finding.detail  # ahead: the next append would leave a gap
        async with db.sessionmaker() as session:
            await session.execute(update(log_head).values(size=4))
            await session.commit()
        [finding] = await check_head(db)
        assert finding.key == "head" and "size 4" in finding.detail  # behind: it would fork the tree
    finally:
        await db.dispose()

"""Audit benchmark on PostgreSQL: sustained appends through the consumer, and proof generation time.

``python -m bench.audit [--events 20000] [--sizes 10000,100000,1000000]`` creates a scratch database
(``LIENTHONG_BENCH_PG``, default postgres@127.0.0.1), runs audit's migrations and reports:

- appends/s through ``AuditConsumer.handle_batch`` (batches of 100 deliveries, one transaction
  each: duplicates looked up, leaves, tree nodes, entry rows), from one consumer and from two concurrent ones;
- median and p99 time to produce an inclusion proof and a consistency proof from the SQL node
  store at each tree size (one session, as an HTTP request uses).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import subprocess
import time
import uuid

from bench.common import percentile, write
from services.audit.app import MIGRATIONS
from services.audit.handlers import AuditConsumer
from services.audit.handlers import consumer as audit_consumer
from services.audit.store import tree
from shared.bus import Delivery
from shared.db import Database, session_scope
from shared.events import CloudEvent, event_type
from shared.migrations import upgrade_async

SERVER = os.environ.get("LIENTHONG_BENCH_PG", "postgres@127.0.0.1")


class BenchDelivery(Delivery):
    def __init__(self, body: bytes) -> None:
        self.body, self.routing_key, self.message_id, self.delivery_count = body, "dossier.received", None, 1

    async def ack(self) -> None:
        pass

    async def reject(self, *, requeue: bool) -> None:
        raise RuntimeError("a benchmark event was refused")


def psql(sql: str) -> None:
    user, host = SERVER.split("@")
    subprocess.run(["psql", "-h", host, "-U", user, "-d", "postgres", "-q", "-c", sql], check=True)


def events(n: int) -> list[bytes]:
    return [
        CloudEvent(source="urn:lienthong:intake", type=event_type("dossier.received"),
                   subject=f"000.00.12.H56-260101-{i:06d}", agency="000.00.12.H56",
                   data={"actor": "desk-officer-7", "procedure": "1.001234", "applicant": "Trần Văn Bình",
                         "channel": "online", "n": i}).to_bytes()
        for i in range(n)
    ]


async def bench_appends(db: Database, n: int, replicas: int) -> tuple[float, float]:
    """(appends per second of wall time, this process's CPU seconds per 1,000 appends)."""
    bodies = events(n)
    batches = [[BenchDelivery(b) for b in bodies[i : i + 100]] for i in range(0, n, 100)]
    consumers = [AuditConsumer(name="audit", handlers=audit_consumer.handlers, inbox=None) for _ in range(replicas)]

    async def run(k: int) -> None:
        for batch in batches[k::replicas]:
            await consumers[k].handle_batch(db, batch)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(run(k) for k in range(replicas)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert sum(c.applied for c in consumers) == n
    return n / elapsed, cpu * 1_000_000 / n


async def grow_to(db: Database, size: int) -> None:
    """Add leaves straight to the tree (no entry rows: proofs read only nodes)."""
    async with session_scope(db) as session:
        current = await tree(session).size()
    while current < size:
        step = min(50_000, size - current)
        hashes = [hashlib.sha256(f"leaf {i}".encode()).digest() for i in range(current, current + step)]
        async with session_scope(db) as session:
            await tree(session).append_leaf_hashes(hashes)
        current += step


async def time_proofs(db: Database, size: int, samples: int = 300) -> tuple[list[float], list[float]]:
    rng = random.Random(size)
    inclusion, consistency = [], []
    async with db.sessionmaker() as session:
        log = tree(session)
        for _ in range(samples):
            index = rng.randrange(size)
            t = time.perf_counter()
            await log.inclusion_proof(index, size)
            inclusion.append((time.perf_counter() - t) * 1000)
            old = rng.randint(1, size)
            t = time.perf_counter()
            await log.consistency_proof(old, size)
            consistency.append((time.perf_counter() - t) * 1000)
    return inclusion, consistency


def summary(ms: list[float]) -> str:
    return f"median {statistics.median(ms):.2f} ms, p99 {percentile(ms, 99):.2f} ms"


async def main(n_events: int = 20_000, sizes: list[int] | None = None) -> None:
    sizes = sizes or [10_000, 100_000, 1_000_000]
    figures: dict[str, object] = {"load_average_before": os.getloadavg()[0], "appends": [], "proofs": []}
    user, host = SERVER.split("@")
    name = f"lt_bench_audit_{uuid.uuid4().hex[:8]}"
    psql(f'CREATE DATABASE "{name}"')
    try:
        for replicas in (1, 2):
            url = f"postgresql+asyncpg://{user}@{host}/{name}"
            if replicas == 2:
                psql(f'DROP DATABASE "{name}" WITH (FORCE)')
                psql(f'CREATE DATABASE "{name}"')
            await upgrade_async(MIGRATIONS, url, service="audit")
            db = Database(url)
            rate, cpu_ms = await bench_appends(db, n_events, replicas)
            print(f"appends through the consumer, {replicas} replica(s), batches of 100: {rate:,.0f}/s "
                  f"({n_events:,} events; {cpu_ms:.0f} ms of this process's CPU per 1,000)",
                  flush=True)
            figures["appends"].append({"replicas": replicas, "events": n_events, "per_second": round(rate),  # type: ignore[union-attr]
                                       "cpu_ms_per_1000": round(cpu_ms, 1)})
            await db.dispose()
        db = Database(url)
        try:
            for size in sizes:
                t = time.perf_counter()
                await grow_to(db, size)
                grown = time.perf_counter() - t
                inclusion, consistency = await time_proofs(db, size)
                print(f"tree of {size:>9,}: inclusion proof {summary(inclusion)}; "
                      f"consistency proof {summary(consistency)}  (grown in {grown:.0f}s)", flush=True)
                figures["proofs"].append({  # type: ignore[union-attr]
                    "size": size, "inclusion_ms_median": round(statistics.median(inclusion), 3),
                    "inclusion_ms_p99": round(percentile(inclusion, 99), 3),
                    "consistency_ms_median": round(statistics.median(consistency), 3),
                    "consistency_ms_p99": round(percentile(consistency, 99), 3)})
        finally:
            await db.dispose()
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    figures["load_average_after"] = os.getloadavg()[0]
    print(f"written to {write('audit', figures)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    asyncio.run(main(args.events, [int(s) for s in args.sizes.split(",")]))

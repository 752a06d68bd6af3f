"""Audit benchmark on PostgreSQL: sustained appends through the consumer, and proof generation time.

``python -m bench.audit [--events 20000] [--sizes 10000,100000,1000000]`` creates a scratch database
(``LIENTHONG_BENCH_PG``, default postgres@127.0.0.1), runs audit's migrations and reports:

- appends/s through ``AuditConsumer.handle_batch`` (batches of 100 deliveries, one transaction
  each: duplicates looked up, leaves, tree nodes, entry rows), from one consumer and from two concurrent ones;
- CPU per event in small batches (1 and 2 deliveries, what the consumer gets at the desk-day mix's
  rate) and with events offered at a steady 500/s, batched by the bus's own ``Batching`` without
  a linger and with audit's (alternated, twice each): this process's CPU and the PostgreSQL
  backends' CPU, each per event, and how long an event waited to be handled;
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

from sqlalchemy import text

from bench.common import percentile, write
from services.audit.app import MIGRATIONS
from services.audit.handlers import LINGER_SECONDS, AuditConsumer
from services.audit.handlers import consumer as audit_consumer
from services.audit.store import tree
from shared.bus import Batching, Delivery
from shared.db import Database, session_scope
from shared.events import CloudEvent, event_type
from shared.migrations import upgrade_async

PHASES = ("appends", "small", "paced", "proofs")

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


def events(n: int, tag: str = "") -> list[bytes]:
    return [
        CloudEvent(
            source="urn:lienthong:intake",
            type=event_type("dossier.received"),
            subject=f"000.00.12.H56-260101-{i:06d}",
            agency="000.00.12.H56",
            data={
                "actor": "desk-officer-7",
                "procedure": "1.001234",
                "applicant": "Trần Văn Bình",
                "channel": "online",
                "n": i,
                "run": tag,
            },
        ).to_bytes()
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


def _backend_cpu_ms(pids: list[int]) -> float:
    """CPU (user + system) the given PostgreSQL backends have used, in ms (0 for one not readable)."""
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / os.sysconf("SC_CLK_TCK")


async def _backends(db: Database, name: str) -> list[int]:
    async with db.sessionmaker() as session:
        rows = await session.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :name"), {"name": name})
        return [pid for (pid,) in rows]


async def bench_small_batches(db: Database, name: str, n: int, batch: int) -> dict[str, float]:
    """CPU per event when every transaction carries ``batch`` events (one consumer)."""
    bodies = events(n + 50, tag=f"small-{batch}")
    consumer = AuditConsumer(name="audit", handlers=audit_consumer.handlers, inbox=None)
    for i in range(0, 50, batch):  # warm-up: connection opened, statements prepared
        await consumer.handle_batch(db, [BenchDelivery(b) for b in bodies[i : i + batch]])
    pids = await _backends(db, name)
    start, cpu, pg = time.perf_counter(), time.process_time(), _backend_cpu_ms(pids)
    for i in range(50, n + 50, batch):
        await consumer.handle_batch(db, [BenchDelivery(b) for b in bodies[i : i + batch]])
    elapsed, cpu, pg = time.perf_counter() - start, time.process_time() - cpu, _backend_cpu_ms(pids) - pg
    assert consumer.applied == n + 50
    return {
        "batch": batch,
        "events": n,
        "per_second": round(n / elapsed),
        "consumer_cpu_ms_per_event": round(cpu * 1000 / n, 3),
        "postgresql_cpu_ms_per_event": round(pg / n, 3),
    }


async def bench_paced(db: Database, name: str, rate: int, seconds: float, linger: float = 0.0) -> dict[str, float]:
    """CPU per event with events offered at ``rate`` per second; the consumer's batches are made
    by the bus's own ``Batching`` (what has arrived, up to 100, as from the broker's prefetch),
    with ``linger`` as the consumer is configured (0: no waiting, as before audit lingered)."""
    n = int(rate * seconds)
    bodies = events(n, tag=f"paced-{rate}-{linger}")
    consumer = AuditConsumer(name="audit", handlers=audit_consumer.handlers, inbox=None)
    await consumer.handle_batch(db, [BenchDelivery(b) for b in events(20, tag=f"paced-warm-up-{linger}")])
    pids = await _backends(db, name)
    batching: Batching[bytes | None] = Batching(100, linger=linger)
    batches: list[int] = []
    waits: list[float] = []  # from an event's arrival to its batch's handling
    arrivals: dict[int, float] = {}

    async def offer() -> None:
        loop, begin = asyncio.get_running_loop(), asyncio.get_running_loop().time()
        sent = 0
        while sent < n:
            due = min(n, int((loop.time() - begin) * rate) + 1)
            for i in range(sent, due):
                arrivals[i] = time.perf_counter()
                batching.arrived(bodies[i])
            sent = due
            await asyncio.sleep(0.002)
        batching.arrived(None)

    async def take() -> None:
        done, taken = False, 0
        while not done:
            batch = await batching.next()
            if batch[-1] is None:
                batch.pop()
                done = True
            if batch:
                now = time.perf_counter()
                waits.extend(now - arrivals[i] for i in range(taken, taken + len(batch)))
                taken += len(batch)
                batches.append(len(batch))
                await consumer.handle_batch(db, [BenchDelivery(b) for b in batch if b is not None])

    start, cpu, pg = time.perf_counter(), time.process_time(), _backend_cpu_ms(pids)
    await asyncio.gather(offer(), take())
    elapsed, cpu, pg = time.perf_counter() - start, time.process_time() - cpu, _backend_cpu_ms(pids) - pg
    assert consumer.applied == n + 20
    return {
        "offered_per_s": rate,
        "linger_ms": linger * 1000,
        "events": n,
        "achieved_per_s": round(n / elapsed),
        "mean_batch": round(statistics.mean(batches), 2),
        "wait_ms_p50": round(statistics.median(waits) * 1000, 2),
        "wait_ms_p99": round(percentile([w * 1000 for w in waits], 99), 2),
        "consumer_cpu_ms_per_event": round(cpu * 1000 / n, 3),
        "postgresql_cpu_ms_per_event": round(pg / n, 3),
    }


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


async def main(
    n_events: int = 20_000,
    sizes: list[int] | None = None,
    phases: tuple[str, ...] = PHASES,
    small_events: int = 2_000,
    paced_seconds: float = 10.0,
) -> None:
    sizes = sizes or [10_000, 100_000, 1_000_000]
    figures: dict[str, object] = {
        "load_average_before": os.getloadavg()[0],
        "appends": [],
        "small_batches": [],
        "paced": [],
        "proofs": [],
    }
    user, host = SERVER.split("@")
    name = f"lt_bench_audit_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+asyncpg://{user}@{host}/{name}"

    async def fresh_database() -> Database:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        psql(f'CREATE DATABASE "{name}"')
        await upgrade_async(MIGRATIONS, url, service="audit")
        return Database(url)

    try:
        if "appends" in phases:
            for replicas in (1, 2):
                db = await fresh_database()
                rate, cpu_ms = await bench_appends(db, n_events, replicas)
                print(
                    f"appends through the consumer, {replicas} replica(s), batches of 100: {rate:,.0f}/s "
                    f"({n_events:,} events; {cpu_ms:.0f} ms of this process's CPU per 1,000)",
                    flush=True,
                )
                figures["appends"].append(
                    {
                        "replicas": replicas,
                        "events": n_events,
                        "per_second": round(rate),  # type: ignore[union-attr]
                        "cpu_ms_per_1000": round(cpu_ms, 1),
                    }
                )
                await db.dispose()
        if "small" in phases or "paced" in phases:
            # a log that already holds entries, as in service: the right edge is not trivially short
            db = await fresh_database()
            try:
                await bench_appends(db, 10_000, 1)
                runs = []
                if "small" in phases:
                    runs += [bench_small_batches(db, name, small_events, batch) for batch in (1, 2)]
                for run in runs:
                    result = await run
                    print(
                        f"batches of {result['batch']}: {result['per_second']:,}/s, CPU per event: consumer "
                        f"{result['consumer_cpu_ms_per_event']:.3f} ms, PostgreSQL "
                        f"{result['postgresql_cpu_ms_per_event']:.3f} ms",
                        flush=True,
                    )
                    figures["small_batches"].append(result)  # type: ignore[union-attr]
                # before (no linger) and after (audit's), alternated so the machine's drift hits both
                lingers = (0.0, LINGER_SECONDS, 0.0, LINGER_SECONDS) if "paced" in phases else ()
                for linger in lingers:
                    result = await bench_paced(db, name, 500, paced_seconds, linger)
                    print(
                        f"offered 500/s, linger {linger * 1000:.0f} ms: took {result['achieved_per_s']:,}/s in batches "
                        f"of {result['mean_batch']} on average, CPU per event: consumer "
                        f"{result['consumer_cpu_ms_per_event']:.3f} ms, "
                        f"PostgreSQL {result['postgresql_cpu_ms_per_event']:.3f} ms; wait to be handled "
                        f"p50 {result['wait_ms_p50']} ms, p99 {result['wait_ms_p99']} ms "
                        f"(load {os.getloadavg()[0]:.2f})",
                        flush=True,
                    )
                    figures["paced"].append(result)  # type: ignore[union-attr]
            finally:
                await db.dispose()
        if "proofs" in phases:
            db = await fresh_database()
            try:
                for size in sizes:
                    t = time.perf_counter()
                    await grow_to(db, size)
                    grown = time.perf_counter() - t
                    inclusion, consistency = await time_proofs(db, size)
                    print(
                        f"tree of {size:>9,}: inclusion proof {summary(inclusion)}; "
                        f"consistency proof {summary(consistency)}  (grown in {grown:.0f}s)",
                        flush=True,
                    )
                    figures["proofs"].append(
                        {  # type: ignore[union-attr]
                            "size": size,
                            "inclusion_ms_median": round(statistics.median(inclusion), 3),
                            "inclusion_ms_p99": round(percentile(inclusion, 99), 3),
                            "consistency_ms_median": round(statistics.median(consistency), 3),
                            "consistency_ms_p99": round(percentile(consistency, 99), 3),
                        }
                    )
            finally:
                await db.dispose()
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    figures["load_average_after"] = os.getloadavg()[0]
    if set(phases) == set(PHASES):
        print(f"written to {write('audit', figures)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--phases", default=",".join(PHASES), help="which of " + ", ".join(PHASES))
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(
        main(
            args.events,
            [int(s) for s in args.sizes.split(",")],
            tuple(args.phases.split(",")),
            paced_seconds=args.paced_seconds,
        )
    )

"""A small HTTP load generator for the benchmarks (N concurrent aiohttp workers for a fixed time
or a fixed number of requests, 127.0.0.1 only), and the distributed suite they run against."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from bench.common import percentile
from shared.settings import PARTS
from tests import suites

# What a benchmark run changes in the parts' configuration, and why: the defaults protect a
# province's gateway from one noisy client, and 50 bench workers share one token and one
# address, so with them the bench would measure the limiter (50 requests/s per client), not
# the suite. Everything else stays as shipped (pool sizes, timeouts, access log, consumers).
BENCH_ENV: dict[str, str] = {
    "LIENTHONG_GATEWAY_RATE_CLIENT": '{"rate": 1000000, "burst": 1000000}',
    "LIENTHONG_GATEWAY_RATE_PUBLIC": '{"rate": 1000000, "burst": 1000000}',
    "LIENTHONG_INTAKE_LOOKUP_RATE_PER_MINUTE": "100000000",
    # the look-up's own limit (guessing a receipt's secret) now lives at the gateway, per route
    "LIENTHONG_GATEWAY_RATE_ROUTES": '{"GET /api/intake/lookup": {"rate": 1000000, "burst": 1000000}}',
}

# A worker is an infinite loop in spirit; this caps it whatever the clock says.
MAX_REQUESTS_PER_WORKER = 1_000_000

Operation = Callable[[aiohttp.ClientSession], Awaitable[int]]
"""One request: sends it, reads the whole answer, returns the HTTP status."""


def env_int(name: str, default: int) -> int:
    """A scale knob of ``make bench`` (``BENCH_…``), e.g. ``BENCH_DOSSIERS=100000`` for a quick run."""
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class OperationFigures:
    count: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)


@dataclass
class LoadResult:
    """What one load run measured; latencies in seconds."""

    concurrency: int
    elapsed: float
    by_operation: dict[str, OperationFigures]
    exceptions: Counter[str] = field(default_factory=Counter)

    @property
    def latencies(self) -> list[float]:
        return [v for f in self.by_operation.values() for v in f.latencies]

    @property
    def requests(self) -> int:
        return sum(f.count for f in self.by_operation.values())

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.by_operation.values())

    @property
    def per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def summary(self) -> dict[str, Any]:
        latencies = self.latencies
        return {
            "concurrency": self.concurrency,
            "seconds": round(self.elapsed, 3),
            "requests": self.requests,
            "errors": self.errors,
            "requests_per_s": round(self.per_second, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2),
            "exceptions": dict(self.exceptions),
        }

    def breakdown(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "requests": f.count,
                "errors": f.errors,
                "statuses": {str(k): v for k, v in sorted(f.statuses.items())},
                "p50_ms": round(percentile(f.latencies, 50) * 1000, 2),
                "p99_ms": round(percentile(f.latencies, 99) * 1000, 2),
            }
            for name, f in sorted(self.by_operation.items())
        }


def _local_only(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the load generator only talks to this machine, not {host}")


async def run_load(
    choose: Callable[[random.Random], tuple[str, Operation]],
    *,
    base_url: str,
    concurrency: int,
    seconds: float | None = None,
    requests: int | None = None,
    seed: int = 1,
    request_timeout: float = 30.0,
) -> LoadResult:
    """``concurrency`` workers each repeatedly ask ``choose`` for a named operation and run it,
    until ``seconds`` have passed or ``requests`` have been started. A status ≥ 400 or an
    exception counts as an error; every request's latency is kept, errors included."""
    _local_only(base_url)
    if (seconds is None) == (requests is None):
        raise ValueError("give either seconds or requests")
    figures: dict[str, OperationFigures] = {}
    exceptions: Counter[str] = Counter()
    remaining = requests if requests is not None else MAX_REQUESTS_PER_WORKER * concurrency
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(
        base_url=base_url, connector=connector, timeout=aiohttp.ClientTimeout(total=request_timeout)
    ) as http:
        start = time.perf_counter()
        deadline = start + seconds if seconds is not None else float("inf")

        async def worker(n: int) -> None:
            nonlocal remaining
            rng = random.Random(seed * 1000 + n)
            for _ in range(MAX_REQUESTS_PER_WORKER):
                if remaining <= 0 or time.perf_counter() >= deadline:
                    return
                remaining -= 1
                name, operation = choose(rng)
                began = time.perf_counter()
                try:
                    status = await operation(http)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = 0
                    exceptions[type(exc).__name__] += 1
                took = time.perf_counter() - began
                f = figures.setdefault(name, OperationFigures())
                f.count += 1
                f.latencies.append(took)
                f.statuses[status] += 1
                if status == 0 or status >= 400:
                    f.errors += 1

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - start
    return LoadResult(concurrency=concurrency, elapsed=elapsed, by_operation=figures, exceptions=exceptions)


async def run_open_loop(
    choose: Callable[[random.Random], tuple[str, Operation]],
    *,
    base_url: str,
    per_second: float,
    seconds: float,
    seed: int = 1,
    request_timeout: float = 30.0,
    max_in_flight: int = 2000,
) -> LoadResult:
    """An open loop: requests arrive as a Poisson process of ``per_second`` for ``seconds``,
    each sent when it arrives whatever is still in flight (as the public would), and its latency
    counted from its arrival time, so a server that falls behind shows it in the latencies
    instead of slowing the arrivals (a closed loop measures its own queue)."""
    _local_only(base_url)
    figures: dict[str, OperationFigures] = {}
    exceptions: Counter[str] = Counter()
    rng = random.Random(seed)
    connector = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=max_in_flight)
    async with aiohttp.ClientSession(
        base_url=base_url, connector=connector, timeout=aiohttp.ClientTimeout(total=request_timeout)
    ) as http:

        async def one(name: str, operation: Operation, arrived: float) -> None:
            try:
                status = await operation(http)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = 0
                exceptions[type(exc).__name__] += 1
            f = figures.setdefault(name, OperationFigures())
            f.count += 1
            f.latencies.append(time.perf_counter() - arrived)
            f.statuses[status] += 1
            if status == 0 or status >= 400:
                f.errors += 1

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        arrival = start
        while True:
            arrival += rng.expovariate(per_second)
            if arrival - start >= seconds:
                break
            delay = arrival - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            name, operation = choose(rng)
            task = asyncio.create_task(one(name, operation, arrival))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return LoadResult(concurrency=0, elapsed=elapsed, by_operation=figures, exceptions=exceptions)


def weighted(choices: Sequence[tuple[str, float, Operation]]) -> Callable[[random.Random], tuple[str, Operation]]:
    """A ``choose`` for ``run_load`` picking named operations by weight."""
    names = [(name, op) for name, _, op in choices]
    weights = [w for _, w, _ in choices]

    def choose(rng: random.Random) -> tuple[str, Operation]:
        return rng.choices(names, weights)[0]

    return choose


def only(name: str, operation: Operation) -> Callable[[random.Random], tuple[str, Operation]]:
    return lambda _rng: (name, operation)


async def expect(response: aiohttp.ClientResponse) -> int:
    """Read the whole body (the client's share of the work) and give the status."""
    await response.read()
    return response.status


# ------------------------------------------------------------------ the suite under load


@asynccontextmanager
async def distributed_suite(
    tmp_path: Path, extra_env: dict[str, str] | None = None, workers: dict[str, int] | None = None
) -> AsyncIterator[suites.Running]:
    """``tests.suites.distributed`` with ``BENCH_ENV``, ``extra_env`` and ``BENCH_SETTINGS``
    added to every part's environment: each part its own process (``workers``: several for some
    parts) on fresh PostgreSQL databases and a RabbitMQ vhost."""
    env = {**BENCH_ENV, **(extra_env or {}), **bench_settings(os.environ.get("BENCH_SETTINGS", ""))}
    async with suites.distributed(tmp_path, extra_env=env, workers=workers) as running:
        yield running


def bench_settings(text: str) -> dict[str, str]:
    """``"LIENTHONG_GATEWAY_RELAY_COALESCE_SECONDS=0,LIENTHONG_CONSUMER_BATCH=50"``: settings of
    the parts for one run, to measure one against another (the suite does not pass the shell's
    own ``LIENTHONG_…`` variables to its parts)."""
    settings: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, equals, value = item.partition("=")
        if not name.startswith("LIENTHONG_") or not equals:
            raise SystemExit(f"BENCH_SETTINGS: {item!r} is not LIENTHONG_NAME=value")
        settings[name] = value
    return settings


def parse_workers(text: str) -> dict[str, int]:
    """``"intake=2,gateway=2"`` → ``{"intake": 2, "gateway": 2}`` (a layout of worker processes)."""
    layout: dict[str, int] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        part, _, count = item.partition("=")
        if part not in PARTS or not count.isdigit() or int(count) < 1:
            raise SystemExit(f"BENCH_WORKERS: {item!r} is not PART=N with a part of {', '.join(PARTS)}")
        layout[part] = int(count)
    return layout


def worker_processes(pid: int) -> int:
    """How many processes serve a part: its worker processes when ``pid`` supervises several
    (multiprocessing's spawned children, not its resource tracker), else the process itself."""
    workers = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in command:
            workers += 1
    return workers or 1


def asyncpg_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def backlog(running: suites.Running) -> dict[str, int]:
    """Events not yet through: unsent outbox rows per part, and messages waiting in RabbitMQ."""
    waiting: dict[str, int] = {}
    for part in PARTS:
        connection = await asyncpg.connect(asyncpg_url(running.env[f"LIENTHONG_{part.upper()}_DATABASE_URL"]))
        try:
            if await connection.fetchval("SELECT to_regclass('outbox') IS NOT NULL"):
                waiting[f"outbox:{part}"] = await connection.fetchval(
                    "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
                )
        finally:
            await connection.close()
    vhost = urlsplit(running.env["LIENTHONG_AMQP_URL"]).path.lstrip("/")
    listed = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "messages", "--no-table-headers"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    waiting["rabbitmq"] = sum(int(line) for line in listed.stdout.split() if line.strip().isdigit())
    return waiting


async def settle(running: suites.Running, *, within: float = 120.0) -> float:
    """Wait until the events a phase caused are consumed (so the next phase does not pay for
    them); returns the seconds waited. Gives up quietly after ``within`` seconds."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if not any((await backlog(running)).values()):
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - start


def describe(label: str, result: LoadResult) -> str:
    s = result.summary()
    return (
        f"{label}: {s['requests_per_s']:.0f} requests/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, "
        f"{s['errors']} errors of {s['requests']} ({s['concurrency']} clients, {s['seconds']:.1f} s)"
    )


# ------------------------------------------------------------------ where the CPU went

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and every live process under it: a part with several workers is a
    parent process and its workers (a worker that ended is in the parent's own children times)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += process_cpu(current)
        todo.extend(children.get(current, ()))
    return total


def named_cpu(names: tuple[str, ...]) -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith(names):
                total += process_cpu(int(entry.name))
    return total


def _machine_busy() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _TICKS


def cpu_snapshot(running: suites.Running) -> dict[str, float]:
    """CPU seconds used so far by each part, this load generator, PostgreSQL and RabbitMQ (all
    their processes, other users' included), and the whole machine."""
    snapshot = {part: tree_cpu(p.pid) for part, p in running.processes.items()}
    snapshot["load generator"] = process_cpu(os.getpid())
    snapshot["postgresql (all)"] = named_cpu(("postgres",))
    snapshot["rabbitmq (all)"] = named_cpu(("beam.smp",))
    snapshot["machine"] = _machine_busy()
    return snapshot


def cpu_used(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores busy on average between two snapshots (1.0 = one core all the time)."""
    return {k: round((after[k] - before[k]) / seconds, 2) for k in before if seconds > 0}


class ActivitySampler:
    """What a part's database connections are doing during a load, sampled from
    ``pg_stat_activity`` every ``every`` seconds: average connections per state and wait
    (``active/Lock:transactionid`` = waiting for another transaction's row lock)."""

    def __init__(self, database_url: str, *, every: float = 0.25) -> None:
        self.url = asyncpg_url(database_url)
        self.database = urlsplit(self.url).path.lstrip("/")
        self.every = every
        self.totals: Counter[str] = Counter()
        self.samples = 0
        self.most_connections = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        connection = await asyncpg.connect(self.url)
        try:
            while True:
                rows = await connection.fetch(
                    "SELECT coalesce(state, '?') AS state, coalesce(wait_event_type, '') AS type, "
                    "coalesce(wait_event, '') AS event, count(*) AS n FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                    "GROUP BY 1, 2, 3",
                    self.database,
                )
                self.samples += 1
                self.most_connections = max(self.most_connections, sum(r["n"] for r in rows))
                for r in rows:
                    wait = f"{r['type']}:{r['event']}" if r["type"] else "running"
                    self.totals[f"{r['state']}/{wait}"] += r["n"]
                await asyncio.sleep(self.every)
        finally:
            await connection.close()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        return {
            "samples": self.samples,
            "most_connections": self.most_connections,
            "average_connections": {
                k: round(v / self.samples, 2) for k, v in self.totals.most_common() if self.samples
            },
        }

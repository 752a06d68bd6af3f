"""The shared delivery loop: a target that hangs holds its own slots only, and the retry schedule."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from shared.delivery import Budget, DeliveryLoop, backoff, parse_retry_after


async def test_a_hanging_target_keeps_its_share_and_the_others_flow() -> None:
    owed = [("slow", n) for n in range(6)] + [("fast", n) for n in range(6)]
    leased: set[tuple[str, int]] = set()
    delivered: list[tuple[str, int]] = []
    in_flight = {"slow": 0, "fast": 0}
    most_slow = 0
    release = asyncio.Event()

    async def claim(budget: Budget) -> list[tuple[str, int]]:
        # the slow target's rows come first, as the oldest would
        chosen = [m for m in owed if m not in leased and budget.take(m[0])]
        leased.update(chosen)
        return chosen

    async def attempt(item: tuple[str, int]) -> None:
        nonlocal most_slow
        in_flight[item[0]] += 1
        most_slow = max(most_slow, in_flight["slow"])
        try:
            if item[0] == "slow":
                await release.wait()
            delivered.append(item)
        finally:
            in_flight[item[0]] -= 1

    loop = DeliveryLoop(
        name="test",
        claim=claim,
        attempt=attempt,
        target=lambda item: item[0],
        wake=asyncio.Event(),
        poll_seconds=0.01,
        concurrency=4,
        per_target=2,
    )
    runner = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(5):
            while sum(1 for d in delivered if d[0] == "fast") < 6:
                await asyncio.sleep(0.01)
        assert not [d for d in delivered if d[0] == "slow"] and most_slow == 2
        release.set()
        async with asyncio.timeout(5):
            while len(delivered) < 12:
                await asyncio.sleep(0.01)
        assert most_slow == 2
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_cancelling_the_loop_cancels_the_sends_in_flight() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def claim(budget: Budget) -> list[int]:
        return [] if started.is_set() else [1]

    async def attempt(item: int) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = DeliveryLoop(
        name="test",
        claim=claim,
        attempt=attempt,
        target=lambda i: i,
        wake=asyncio.Event(),
        poll_seconds=0.01,
        concurrency=2,
        per_target=1,
    )
    runner = asyncio.create_task(loop.run())
    await asyncio.wait_for(started.wait(), 5)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert cancelled.is_set()


def test_backoff_grows_to_its_ceiling_and_jitter_stays_within_its_share() -> None:
    assert [backoff(n, base=5, max_delay=60) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]
    rng = random.Random(7)
    waits = [backoff(2, base=5, factor=3, max_delay=3600, jitter=0.2, rng=rng) for _ in range(200)]
    assert all(12 <= w <= 18 for w in waits) and len(set(waits)) > 100


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Sun, 01 Mar 2026 08:01:30 GMT", now) == 90
    assert parse_retry_after("Sun, 01 Mar 2026 07:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None

"""Durable outbound delivery over HTTP, shared by notify's webhooks and document's edXML exchange.

The rows to send live in a table of the service. A :class:`DeliveryLoop` claims due rows by
pushing their next attempt a lease ahead (committed at once, so no transaction stays open while
a partner is called), sends them concurrently through the service's one long-lived client, and
lets the service record each outcome in its own short transaction. A worker killed mid-send
leaves the lease to expire and the row is sent again: at-least-once, so receivers deduplicate
on the message's id.

Concurrency is bounded overall and per target (a subscription, a partner agency): the loop hands
``claim`` a :class:`Budget` of free slots, which it asks before leasing each row, so a target
that hangs until its timeout holds at most ``per_target`` slots and every other target's rows
keep flowing. The loop never waits for a whole batch to finish before claiming again, for the
same reason.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("delivery")

T = TypeVar("T")


def backoff(
    attempt: int,
    *,
    base: float,
    max_delay: float,
    factor: float = 2.0,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): ``base · factor^(n-1)``,
    at most ``max_delay``, spread by ±``jitter`` (a fraction) so retries of many rows do not align."""
    delay = min(base * factor ** max(attempt - 1, 0), max_delay)
    spread = jitter * delay
    if not spread:
        return max(0.0, delay)
    return max(0.0, delay + (rng or random).uniform(-spread, spread))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class Budget:
    """The free sending slots while a claim runs: ``take(target)`` before leasing a row for it."""

    def __init__(self, room: int, per_target: int, in_flight: Counter[Hashable] | None = None) -> None:
        self.room = room
        self.per_target = per_target
        self._counts: Counter[Hashable] = Counter(in_flight or {})

    @property
    def full(self) -> frozenset[Hashable]:
        """Targets with no slot left: a claim can leave their rows out of its query."""
        return frozenset(t for t, n in self._counts.items() if n >= self.per_target)

    def take(self, target: Hashable) -> bool:
        if self.room <= 0 or self._counts[target] >= self.per_target:
            return False
        self.room -= 1
        self._counts[target] += 1
        return True


Claim = Callable[[Budget], Awaitable[Sequence[T]]]
"""``claim(budget)``: lease due rows, each one only if ``budget.take(its target)`` allows it."""


class DeliveryLoop(Generic[T]):
    """Claims and sends forever; ``attempt`` sends one claimed row and records its outcome."""

    def __init__(
        self,
        *,
        name: str,
        claim: Claim[T],
        attempt: Callable[[T], Awaitable[None]],
        target: Callable[[T], Hashable],
        wake: asyncio.Event,
        poll_seconds: float,
        concurrency: int,
        per_target: int,
        idle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.claim = claim
        self.attempt = attempt
        self.target = target
        self.wake = wake
        self.poll_seconds = poll_seconds
        self.concurrency = max(1, concurrency)
        self.per_target = max(1, per_target)
        self.idle = idle
        self._in_flight: dict[asyncio.Task[None], Hashable] = {}
        self._finished = asyncio.Event()

    async def _one(self, item: T) -> None:
        try:
            await self.attempt(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lease expires and the row is tried again
            log.warning("delivery_attempt_failed", loop=self.name, error=repr(exc))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._finished.set()

    async def run(self) -> None:
        try:
            while True:
                # cleared before claiming, so a wake-up or a finished send during the claim is not lost
                self.wake.clear()
                self._finished.clear()
                room = self.concurrency - len(self._in_flight)
                claimed: Sequence[T] = ()
                if room > 0:
                    try:
                        budget = Budget(room, self.per_target, Counter(self._in_flight.values()))
                        claimed = await self.claim(budget)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.warning("claim_failed", loop=self.name, error=repr(exc))
                    if claimed:
                        for item in claimed:
                            task = asyncio.create_task(self._one(item))
                            self._in_flight[task] = self.target(item)
                            task.add_done_callback(self._done)
                        continue
                    if not self._in_flight and self.idle is not None:
                        try:
                            await self.idle()
                        except asyncio.CancelledError:
                            raise
                        except Exception as exc:
                            log.warning("idle_failed", loop=self.name, error=repr(exc))
                await self._sleep()
        finally:
            for task in list(self._in_flight):
                task.cancel()
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _sleep(self) -> None:
        """Until woken (new rows committed), a send finished (a slot freed), or the poll interval."""
        waits = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(self._finished.wait())]
        try:
            await asyncio.wait(waits, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def drain(self) -> None:
        """Wait for the sends in flight (tests, and a one-pass run)."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

"""Waiting for an asynchronous effect (a consumer applies an event, a worker sends): poll until
it shows, bounded. Never for time to pass — a test moves the clock with ``clock.advanced``."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]], *, within: float = 10.0, every: float = 0.05, what: str = "the condition"
) -> T:
    """The first truthy result of ``check`` (plain or async); AssertionError after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come within {within} s (last: {result!r})")
        await asyncio.sleep(every)

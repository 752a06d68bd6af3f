"""Small asyncio helpers every part's background loops share.

Why not ``asyncio.wait_for(event.wait(), t)``: on Python 3.11 it swallows a cancellation that
arrives just as the event is set (CPython gh-86296) — the loop around it then runs on, and a
shutdown that awaits it hangs for ever. ``asyncio.timeout`` counts cancellations and does not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog

log = structlog.get_logger("lienthong.aio")


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True if it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
            return True
    return False


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], *, within: float = 10.0) -> None:
    """Cancel background tasks and wait for them, bounded: a task that will not stop is named in
    the log and left behind rather than holding a shutdown for ever."""
    tasks = list(tasks)  # read twice below
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            log.error("tasks_did_not_stop", tasks=sorted(t.get_name() for t in pending))
            return
        _, pending = await asyncio.wait(pending, timeout=min(left, 1.0))
        for task in pending:  # a cancellation lost in a race is asked for again
            task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not warn about it at exit

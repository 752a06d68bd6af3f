"""Background loops stop when asked, even when a cancellation races with their wake-up."""

from __future__ import annotations

import asyncio
import contextlib
import time

from shared.aio import stop_tasks, wait_event


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True


async def test_a_cancel_that_races_with_the_wake_up_still_stops_the_loop() -> None:
    """The race that hung a shutdown on Python 3.11's wait_for: the event is set and the task is
    cancelled in the same turn of the loop."""
    for _ in range(50):
        event = asyncio.Event()
        turns = 0

        async def loop_forever(event: asyncio.Event = event) -> None:
            nonlocal turns
            while True:
                event.clear()
                await wait_event(event, 10)
                turns += 1

        task = asyncio.create_task(loop_forever())
        await asyncio.sleep(0)
        event.set()
        task.cancel()
        await asyncio.wait([task], timeout=1)  # one cancel, not asked again
        assert task.cancelled()


async def test_a_task_that_will_not_stop_does_not_hold_the_shutdown() -> None:
    give_up = asyncio.Event()

    async def stubborn() -> None:
        while not give_up.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    try:
        started = time.monotonic()
        await stop_tasks([task], within=0.3)
        assert time.monotonic() - started < 2
        assert not task.done()
    finally:
        give_up.set()  # leave nothing running behind the test, pass or fail: the loop's close would wait for it
        await stop_tasks([task], within=2)
    assert task.done()

"""A serving process sets start-up's objects aside from the garbage collector once its part has
started, and collects the young generation less often."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI

from shared import heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """This test process's collector as it was: unfrozen, its thresholds back."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def test_the_heap_is_settled_once_the_lifespan_has_started(restored_collector: None) -> None:
    seen: list[tuple[str, int]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        seen.append(("starting", gc.get_freeze_count()))
        yield {"part": "started"}
        seen.append(("stopping", gc.get_freeze_count()))

    gc.unfreeze()
    app = heap.settled(FastAPI(lifespan=lifespan))
    async with app.router.lifespan_context(app) as state:
        assert state == {"part": "started"}  # the part's own lifespan state is passed through
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD
    assert seen[0] == ("starting", 0)  # settled after the part's start, not before
    assert seen[1][1] > 0

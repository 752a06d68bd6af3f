"""A serving process's garbage collector: what start-up built is set aside once the part serves.

CPython's cyclic collector walks, at each full collection, every container object the process
holds: the imports, FastAPI's routes and models, pydantic's validators, the OpenAPI documents,
some hundreds of thousands of objects that live as long as the process. Under load the objects
of requests in flight outlive the young generations and are promoted, so full collections come
often: measured at 50 clients (``make bench ONLY=gateway`` with a ``gc.callbacks`` probe), the
gateway spent 20 % of its CPU collecting, three quarters of it in full collections of ~80 ms
each, and intake 5 %. :func:`gc.freeze` moves what exists into a generation the collector never
walks; full collections then cost what the requests made.

Only the process that serves does this (``lienthong serve``), not a library caller that builds
an app inside its own process (the embedded suite, tests): freezing is a decision about the whole
process's heap, whose start-up objects become garbage the collector no longer sees.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

# Allocations (less deallocations) between collections of the youngest generation; CPython's
# default is 700, which at the gateway's rate is a collection every dozen requests, each walking
# and promoting the objects of the requests in flight. At 10,000 most of those are gone before
# the collection comes: the gateway's collections fell from 10 % of its CPU (frozen, default
# threshold) to 2 % in the same bench. Cycles of garbage wait that much longer to be freed.
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Collect what start-up left behind, freeze the rest out of the collector's sight, and
    collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def settled(app: FastAPI) -> FastAPI:
    """``app`` with :func:`settle` run once its lifespan has started (the part is ready to
    serve: migrations run, state opened, routes built)."""
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with started(app) as state:
            settle()
            yield state

    app.router.lifespan_context = lifespan
    return app

"""The one shape of every part: a FastAPI app built from a :class:`ServiceDefinition`.

The definition says what the part is (settings, tables, routers, consumers, start-up work); this
module adds what every part has the same way: migrations at start, the database, the bus, the
outbox relay, consumers, token verification, problem+json errors, request ids, structured logs,
``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

import structlog
from fastapi import APIRouter, FastAPI, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import MetaData
from starlette.requests import HTTPConnection

from shared.aio import stop_tasks
from shared.auth import KeySource, TokenVerifier, allow, jwks_from_url
from shared.bus import Broker, dead_letter_queue
from shared.bus.amqp import AmqpBroker
from shared.bus.memory import InProcessBroker
from shared.db import Database
from shared.errors import NotFound, ServiceUnavailable, install_error_handlers, problem_responses
from shared.http import BodyLimitMiddleware, MetricsMiddleware, StrictRoute
from shared.inbox import Consumer, keep_inbox_trimmed
from shared.logging import RequestIdMiddleware, configure_logging
from shared.metrics import DEAD_LETTERS
from shared.migrations import upgrade_async
from shared.outbox import Outbox, OutboxRelay
from shared.settings import Settings
from shared.workers import metrics_text, pool_share, worker_label

log = structlog.get_logger("app")


class PartState:
    """What a part keeps for its lifetime beside the database and the bus: its stores, clients,
    caches. Each part declares one dataclass subclass (``IntakeState``, ``GatewayState``…) in its
    ``state.py``; its ``on_start`` returns it and the runtime carries it. Read it back typed with
    ``IntakeState.of(request)`` (or ``.of(runtime)``), never through a string key."""

    @classmethod
    def of(cls, source: HTTPConnection | ServiceRuntime) -> Self:
        runtime = source.app.state.runtime if isinstance(source, HTTPConnection) else source
        state = runtime.state
        if not isinstance(state, cls):
            raise RuntimeError(f"the part holds {type(state).__name__}, not {cls.__name__}: not started?")
        return state


@dataclass
class ServiceDefinition:
    """What a part is. ``on_start`` opens what the part keeps for its lifetime and returns it as
    the part's :class:`PartState` (seeding demo data too, where it does); ``on_stop`` closes it."""

    name: str
    title: str
    description: str
    settings: Settings
    metadata: MetaData
    migrations: Path
    routers: Sequence[APIRouter] = ()
    outbox: Outbox | None = None
    consumers: Sequence[Consumer] = ()
    on_start: Callable[[ServiceRuntime], Awaitable[PartState]] | None = None
    on_stop: Callable[[ServiceRuntime], Awaitable[None]] | None = None
    background: Sequence[Callable[[ServiceRuntime], Awaitable[None]]] = ()
    max_body_bytes: int = 1 * 1024 * 1024
    body_limits: dict[str, int] = field(default_factory=dict)
    readiness_checks: dict[str, Callable[[ServiceRuntime], Awaitable[Any]]] = field(default_factory=dict)


@dataclass
class ServiceRuntime:
    """Everything a request or handler of one part may need, on ``app.state.runtime``."""

    definition: ServiceDefinition
    settings: Settings
    db: Database
    broker: Broker
    verifier: TokenVerifier
    outbox: Outbox | None
    relay: OutboxRelay | None
    consumers: Sequence[Consumer]
    owns_broker: bool
    state: PartState | None = None  # the part's own, typed: ``<Part>State.of(runtime)``
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    consumers_started: asyncio.Event = field(default_factory=asyncio.Event)


def make_broker(settings: Settings) -> Broker:
    if settings.amqp_url:
        return AmqpBroker(settings.amqp_url, delivery_limit=settings.delivery_limit)
    return InProcessBroker(delivery_limit=settings.delivery_limit)


def create_service_app(
    definition: ServiceDefinition,
    *,
    broker: Broker | None = None,
    key_source: KeySource | None = None,
) -> FastAPI:
    """Build the part's app. ``broker`` and ``key_source`` are given by the embedded runner
    (one in-process broker, the identity provider's keys in memory); otherwise from settings."""
    settings = definition.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(level=settings.log_level, json=settings.log_json)
        if settings.is_sqlite:
            settings.var_dir.mkdir(parents=True, exist_ok=True)
        url = settings.resolved_database_url
        if settings.auto_migrate:
            await upgrade_async(definition.migrations, url, service=definition.name)
        db = Database(url, pool_size=pool_share(settings.database_pool_size, settings.workers))
        the_broker = broker or make_broker(settings)
        outbox = definition.outbox
        relay = (
            OutboxRelay(
                db,
                outbox,
                the_broker,
                batch=settings.relay_batch,
                poll_seconds=settings.relay_poll_seconds,
                coalesce_seconds=settings.relay_coalesce_seconds,
                internal_keys=settings.relay_internal_keys,
                retention=timedelta(hours=settings.outbox_retention_hours),
                purge_every=timedelta(seconds=settings.retention_every_seconds),
            )
            if outbox
            else None
        )
        runtime = ServiceRuntime(
            definition=definition,
            settings=settings,
            db=db,
            broker=the_broker,
            verifier=TokenVerifier(
                key_source or jwks_from_url(settings.jwks_url),
                issuer=settings.token_issuer,
                audience=settings.token_audience,
                claim_map=settings.token_claim_map,
            ),
            outbox=outbox,
            relay=relay,
            consumers=definition.consumers,
            owns_broker=broker is None,
        )
        app.state.runtime = runtime
        if definition.on_start:
            runtime.state = await definition.on_start(runtime)
        runtime.tasks.append(asyncio.create_task(_connect_bus(runtime), name=f"bus:{definition.name}"))
        for job in definition.background:
            runtime.tasks.append(asyncio.create_task(_forever(job, runtime), name=f"job:{definition.name}"))
        for inbox in {c.inbox.name: c.inbox for c in definition.consumers if c.inbox is not None}.values():
            trim = keep_inbox_trimmed(
                db,
                inbox,
                retention=timedelta(hours=settings.inbox_retention_hours),
                every_seconds=settings.retention_every_seconds,
            )
            runtime.tasks.append(asyncio.create_task(trim, name=f"retention:{definition.name}"))
        log.info("started", service=definition.name, port=settings.port, database=db.dialect, worker=worker_label())
        try:
            yield
        finally:
            await stop_tasks(runtime.tasks)
            if relay:
                await relay.stop()
            if definition.on_stop:
                await definition.on_stop(runtime)
            if runtime.owns_broker:
                await the_broker.close()
            await db.dispose()
            log.info("stopped", service=definition.name)

    app = FastAPI(
        title=definition.title,
        description=definition.description,
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # served by install_offline_docs, without a CDN
        redoc_url=None,
        # our own Prometheus metrics and request ids cover this; FastAPI's OpenTelemetry layer
        # costs a measurable share of every proxied request at the gateway
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.router.route_class = StrictRoute
    install_error_handlers(app)
    app.include_router(health_router(definition))
    install_offline_docs(app)
    if definition.consumers:
        app.include_router(dead_letter_router())
    for router in definition.routers:
        app.include_router(router)
    # outermost first: request id for everything, then metrics, then the body limit
    app.add_middleware(BodyLimitMiddleware, default=definition.max_body_bytes, limits=definition.body_limits)
    app.add_middleware(MetricsMiddleware, service=definition.name)
    app.add_middleware(RequestIdMiddleware)
    return app


DOCS_ASSETS = "/docs/static"


def install_offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the assets the ``swagger-ui-bundle`` package ships, so the
    documentation works on a machine (or a desk) without internet access."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    async def docs(request: Request) -> Response:
        return get_swagger_ui_html(
            openapi_url=request.scope.get("root_path", "").rstrip("/") + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} — API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")


async def _connect_bus(runtime: ServiceRuntime) -> None:
    """Connect (retrying while the broker is away), then attach consumers and start the relay.

    The part serves requests meanwhile: writes land in the outbox and /readyz says degraded.
    """
    delay = 0.5
    settings = runtime.settings
    while True:
        try:
            if runtime.owns_broker or not runtime.broker.connected:
                await runtime.broker.connect()
            for consumer in runtime.consumers:
                await consumer.attach(
                    runtime.broker, runtime.db, batch=settings.consumer_batch, prefetch=settings.consumer_prefetch
                )
            break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("bus_connect_retry", service=runtime.definition.name, error=repr(exc), delay=delay)
            with contextlib.suppress(Exception):
                await runtime.broker.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    runtime.consumers_started.set()
    if runtime.relay:
        runtime.relay.start()


async def _forever(job: Callable[[ServiceRuntime], Awaitable[None]], runtime: ServiceRuntime) -> None:
    while True:
        try:
            await job(runtime)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("background_job_failed", job=getattr(job, "__name__", "job"), error=repr(exc))
            await asyncio.sleep(2.0)


# Operators scrape readiness and metrics at each part's own port; through the gateway they are
# an admin's or auditor's business (the gateway reads this extension as the route's roles).
GATEWAY_ROLES = "x-gateway-roles"
OPERATORS = ["admin", "auditor"]


async def dead_letter_depths(runtime: ServiceRuntime) -> dict[str, int]:
    """Messages waiting in each of this part's dead-letter queues; also set as metrics."""
    if not runtime.consumers:
        return {}
    depths = await asyncio.wait_for(runtime.broker.queue_depths([c.name for c in runtime.consumers]), 3)
    dead = {}
    for consumer in runtime.consumers:
        queue = dead_letter_queue(consumer.name)
        dead[queue] = depths.get(queue, 0)
        DEAD_LETTERS.labels(queue).set(dead[queue])
    return dead


def health_router(definition: ServiceDefinition) -> APIRouter:
    router = APIRouter(tags=["health"], route_class=StrictRoute)
    operators = {"x-roles": ["public"], GATEWAY_ROLES: OPERATORS}

    @router.get("/healthz", openapi_extra={"x-roles": ["public"]})
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok", "service": definition.name}

    @router.get(
        "/readyz",
        openapi_extra=operators,
        responses={503: {"description": "not ready: the body's checks say why"}},
    )
    async def readyz(request: Request, response: Response) -> dict[str, Any]:
        """Ready: database reachable (503 otherwise). ``degraded`` (still 200, still taking
        writes into the outbox): broker away, a consumer detached, or dead letters waiting.
        Open on the part's own port (probes, scrapers); through the gateway admin or auditor."""
        runtime: ServiceRuntime = request.app.state.runtime
        checks: dict[str, Any] = {}
        ok = True
        try:
            await asyncio.wait_for(runtime.db.ping(), 3)
            checks["database"] = "ok"
        except Exception:
            checks["database"] = "unreachable"
            ok = False
        checks["broker"] = "ok" if runtime.broker.connected else "disconnected"
        attached = runtime.broker.consumers_attached()
        expected = {c.name for c in runtime.consumers}
        checks["consumers"] = {name: ("attached" if attached.get(name) else "detached") for name in expected}
        degraded = checks["broker"] != "ok" or any(v != "attached" for v in checks["consumers"].values())
        if runtime.consumers:
            try:
                checks["dead_letters"] = await dead_letter_depths(runtime)
                degraded = degraded or any(checks["dead_letters"].values())
            except Exception as exc:
                checks["dead_letters"] = f"unknown: {type(exc).__name__}"
                degraded = True
        if runtime.relay and ok:
            try:
                checks["outbox_pending"] = await asyncio.wait_for(runtime.relay.pending(), 3)
            except Exception as exc:
                checks["outbox_pending"] = f"unknown: {type(exc).__name__}"
        for name, check in definition.readiness_checks.items():
            try:
                checks[name] = await check(runtime)
            except Exception as exc:
                checks[name] = f"error: {type(exc).__name__}"
        status = "ok" if ok and not degraded else ("degraded" if ok else "down")
        # Degraded (broker away) still takes writes into the outbox, so it stays in rotation;
        # only a part that cannot reach its database is taken out.
        if status == "down":
            response.status_code = 503
        return {"status": status, "service": definition.name, "checks": checks}

    @router.get("/metrics", openapi_extra=operators, response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus text format. Open on the part's own port; through the gateway admin or auditor."""
        runtime: ServiceRuntime | None = getattr(request.app.state, "runtime", None)
        if runtime is not None and runtime.consumers and runtime.broker.connected:
            with contextlib.suppress(Exception):  # the broker may be reconnecting: last values stand
                await dead_letter_depths(runtime)
        body, media_type = metrics_text()  # with several workers: all of them, whichever answers
        return Response(body, media_type=media_type)

    return router


class DeadLetterOut(BaseModel):
    queue: str = Field(description="the consumer's queue the letter came from")
    message_id: str | None = Field(description="the event's id")
    routing_key: str
    reason: str = Field(description="why it was dead-lettered: delivery_limit, rejected (a poison event), …")
    deliveries: int
    event: Any = Field(description="the CloudEvent as it was published (text if it is not JSON)")


class DeadLetters(BaseModel):
    depths: dict[str, int] = Field(description="messages waiting per dead-letter queue")
    letters: list[DeadLetterOut] = Field(description="the first letters of each queue, oldest first")


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: str | None = Field(default=None, description="one consumer's queue; default: every one of this part")
    message_ids: list[str] | None = Field(
        default=None, max_length=1000, description="replay only these events; default: every dead letter"
    )


class Replayed(BaseModel):
    replayed: dict[str, int] = Field(description="letters put back per consumer queue")


class UnknownQueue(NotFound):
    code, title = "unknown_queue", "This part has no consumer queue of that name"


class BrokerUnavailable(ServiceUnavailable):
    code, title = "broker_unavailable", "The broker is not connected; try again shortly"


def dead_letter_router() -> APIRouter:
    """Looking at and replaying this part's dead letters: an admin's repair tool."""
    router = APIRouter(tags=["dead letters"], route_class=StrictRoute)

    def queues_of(runtime: ServiceRuntime, queue: str | None) -> list[str]:
        names = [c.name for c in runtime.consumers]
        if queue is None:
            return names
        if queue not in names:
            raise UnknownQueue(f"{queue!r} is not one of {', '.join(names)}")
        return [queue]

    def connected(runtime: ServiceRuntime) -> None:
        if not runtime.broker.connected:
            raise BrokerUnavailable("the broker is not connected", headers={"Retry-After": "5"})

    @router.get(
        "/dead-letters",
        response_model=DeadLetters,
        responses=problem_responses(404, 503),
        **allow("admin"),
    )
    async def list_dead_letters(
        request: Request,
        queue: str | None = Query(default=None, max_length=200, description="one consumer's queue"),
        limit: int = Query(default=50, ge=1, le=500, description="letters per queue"),
    ) -> DeadLetters:
        """Events this part's consumers gave up on (delivery limit reached, or a poison event),
        with why. Looking leaves them where they are."""
        runtime: ServiceRuntime = request.app.state.runtime
        names = queues_of(runtime, queue)
        connected(runtime)
        depths = await runtime.broker.queue_depths(names)
        letters = []
        for name in names:
            for letter in await runtime.broker.dead_letters(name, limit=limit):
                letters.append(
                    DeadLetterOut(
                        queue=name,
                        message_id=letter.message_id,
                        routing_key=letter.routing_key,
                        reason=letter.reason,
                        deliveries=letter.deliveries,
                        event=_event_of(letter.body),
                    )
                )
        dead = {dead_letter_queue(n): depths.get(dead_letter_queue(n), 0) for n in names}
        return DeadLetters(depths=dead, letters=letters)

    @router.post(
        "/dead-letters/replay",
        response_model=Replayed,
        responses=problem_responses(404, 503),
        **allow("admin"),
    )
    async def replay_dead_letters(request: Request, body: ReplayRequest) -> Replayed:
        """Put dead letters back into their consumer's queue (only there: the other consumers
        had the event already), e.g. after the fault that killed them is mended. A consumer
        that had applied one already recognises it in its inbox."""
        runtime: ServiceRuntime = request.app.state.runtime
        names = queues_of(runtime, body.queue)
        connected(runtime)
        replayed = {}
        for name in names:
            replayed[name] = await runtime.broker.replay_dead_letters(name, message_ids=body.message_ids)
            log.info("dead_letters_replayed", queue=name, count=replayed[name])
        return Replayed(replayed=replayed)

    return router


def _event_of(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")

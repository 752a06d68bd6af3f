"""Notify: webhooks for integrators (events → signed deliveries, retried for about a day)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from fastapi import FastAPI

from services.notify import endpoints, handlers
from services.notify.config import NotifySettings, get_settings
from services.notify.delivery import Deliverer
from services.notify.models import Base
from services.notify.state import NotifyState
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.bus import BusUnavailable

log = structlog.get_logger("notify")

MIGRATIONS = Path(__file__).parent / "migrations"


async def on_start(runtime: ServiceRuntime, bindings: handlers.QueueBindings) -> NotifyState:
    deliverer = Deliverer(runtime.settings, runtime.db)  # type: ignore[arg-type]
    await deliverer.start()
    return NotifyState(deliverer=deliverer, bindings=bindings)


async def on_stop(runtime: ServiceRuntime) -> None:
    await NotifyState.of(runtime).deliverer.close()


async def deliver(runtime: ServiceRuntime) -> None:
    """Background job: the delivery worker."""
    await NotifyState.of(runtime).deliverer.run()


async def keep_bindings(runtime: ServiceRuntime) -> None:
    """Background job: once the consumer is attached, and then every ``RECONCILE_SECONDS``, the
    queue's bindings made exactly what the subscriptions want (handlers.QueueBindings)."""
    await runtime.consumers_started.wait()
    bindings = NotifyState.of(runtime).bindings
    while True:
        try:
            wanted = await bindings.reconcile(runtime.db, runtime.broker)
            log.debug("notify_bindings", families=wanted)
        except BusUnavailable as exc:  # the broker away: the next round, after it is back
            log.info("notify_bindings_retry", error=str(exc)[:200])
        await asyncio.sleep(handlers.RECONCILE_SECONDS)


def definition(settings: NotifySettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    bindings = handlers.QueueBindings(handlers.bindable_families(settings.withheld_events))

    async def start(runtime: ServiceRuntime) -> NotifyState:
        return await on_start(runtime, bindings)

    return ServiceDefinition(
        name="notify",
        title="lienthong notify",
        description="Webhook subscriptions for integrators: CloudEvents signed per Standard Webhooks, "
        "retried with backoff for about a day, every attempt logged, replays on request.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=[endpoints.router],
        consumers=[
            handlers.consumer(settings, handlers.SubscriptionCache(settings.subscription_cache_seconds), bindings)
        ],
        on_start=start,
        on_stop=on_stop,
        background=[deliver, keep_bindings],
    )


def create_app(settings: NotifySettings | None = None, **kwargs: object) -> FastAPI:
    return create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]

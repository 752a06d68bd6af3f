"""Notify: webhooks for integrators (events → signed deliveries, retried for about a day)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.notify import endpoints, handlers
from services.notify.config import NotifySettings, get_settings
from services.notify.delivery import Deliverer
from services.notify.models import Base
from services.notify.state import NotifyState
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


async def on_start(runtime: ServiceRuntime) -> NotifyState:
    deliverer = Deliverer(runtime.settings, runtime.db)  # type: ignore[arg-type]
    await deliverer.start()
    return NotifyState(deliverer=deliverer)


async def on_stop(runtime: ServiceRuntime) -> None:
    await NotifyState.of(runtime).deliverer.close()


async def deliver(runtime: ServiceRuntime) -> None:
    """Background job: the delivery worker."""
    await NotifyState.of(runtime).deliverer.run()


def definition(settings: NotifySettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    return ServiceDefinition(
        name="notify",
        title="lienthong notify",
        description="Webhook subscriptions for integrators: CloudEvents signed per Standard Webhooks, "
        "retried with backoff for about a day, every attempt logged, replays on request.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=[endpoints.router],
        consumers=[handlers.consumer(settings, handlers.SubscriptionCache(settings.subscription_cache_seconds))],
        on_start=on_start,
        on_stop=on_stop,
        background=[deliver],
    )


def create_app(settings: NotifySettings | None = None, **kwargs: object) -> FastAPI:
    return create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]

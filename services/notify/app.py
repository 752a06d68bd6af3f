"""Notify: webhooks for integrators."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.notify import endpoints
from services.notify.config import NotifySettings, get_settings
from services.notify.models import Base
from shared.app import ServiceDefinition, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def definition(settings: NotifySettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    return ServiceDefinition(
        name="notify",
        title="lienthong notify",
        description="Webhook subscriptions and deliveries for integrators.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=[endpoints.router],
    )


def create_app(settings: NotifySettings | None = None, **kwargs: object) -> FastAPI:
    return create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]

"""Audit: the tamper-evident log of every event and action."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.audit import endpoints
from services.audit.config import AuditSettings, get_settings
from services.audit.handlers import consumer
from services.audit.models import Base
from shared.app import ServiceDefinition, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def definition(settings: AuditSettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    return ServiceDefinition(
        name="audit",
        title="lienthong audit",
        description="Append-only, verifiable log of every event and access; backups.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=[endpoints.router],
        consumers=[consumer],
    )


def create_app(settings: AuditSettings | None = None, **kwargs: object) -> FastAPI:
    return create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]

"""Intake (một cửa, TTHC): the one-stop-shop desk's service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.intake import endpoints
from services.intake.config import IntakeSettings, get_settings
from services.intake.models import Base, outbox
from shared.app import ServiceDefinition, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def definition(settings: IntakeSettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    return ServiceDefinition(
        name="intake",
        title="lienthong intake",
        description="One-stop-shop desk: procedures, dossiers, deadlines, workflow, receipts, look-up.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=[endpoints.router],
        outbox=outbox,
        max_body_bytes=settings.max_file_bytes * 3,
    )


def create_app(settings: IntakeSettings | None = None, **kwargs: object) -> FastAPI:
    return create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]

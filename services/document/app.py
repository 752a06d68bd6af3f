"""Document (QLVB): official documents, registers, numbering, work dossiers, exchange."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.document import endpoints
from services.document.config import DocumentSettings, get_settings
from services.document.handlers import consumer
from services.document.models import Base, outbox
from shared.app import ServiceDefinition, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def definition(settings: DocumentSettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    return ServiceDefinition(
        name="document",
        title="lienthong document",
        description="Official documents, registers and numbering, work dossiers, secrecy, search, exchange.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=[endpoints.router],
        outbox=outbox,
        consumers=[consumer],
    )


def create_app(settings: DocumentSettings | None = None, **kwargs: object) -> FastAPI:
    return create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]

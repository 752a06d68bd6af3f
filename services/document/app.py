"""Document (QLVB): official documents, registers, numbering, work dossiers, exchange."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.document import endpoints
from services.document.config import DocumentSettings, get_settings
from services.document.handlers import make_consumer
from services.document.models import Base, outbox
from services.document.service import build_toolkit
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def definition(settings: DocumentSettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()

    async def on_start(runtime: ServiceRuntime) -> None:
        runtime.extras["toolkit"] = build_toolkit(settings)

    # Uploads stream to disk; only the document routes take large bodies.
    upload_limit = settings.max_file_bytes + 64 * 1024
    return ServiceDefinition(
        name="document",
        title="lienthong document",
        description="Official documents, registers and numbering, work dossiers, secrecy, search, exchange.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=list(endpoints.ROUTERS),
        outbox=outbox,
        consumers=[make_consumer(settings)],
        on_start=on_start,
        body_limits={"/documents/": upload_limit},
    )


def create_app(settings: DocumentSettings | None = None, **kwargs: object) -> FastAPI:
    return create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]

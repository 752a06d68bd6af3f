"""Document (QLVB): official documents, registers, numbering, work dossiers, exchange."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.document import endpoints
from services.document.config import DocumentSettings, get_settings
from services.document.exchange import identity, outbound, worker
from services.document.handlers import make_consumer
from services.document.models import Base, outbox
from services.document.service import build_toolkit
from services.document.state import DocumentState
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def definition(
    settings: DocumentSettings | None = None, *, exchange_client: identity.ClientFactory | None = None
) -> ServiceDefinition:
    """``exchange_client`` makes the HTTP clients that reach partner agencies (tests inject one)."""
    settings = settings or get_settings()

    async def on_start(runtime: ServiceRuntime) -> DocumentState:
        return DocumentState(
            toolkit=build_toolkit(settings),
            exchange=identity.build_kit(settings, client_factory=exchange_client),
        )

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
        consumers=[make_consumer(settings), outbound.make_exchange_consumer(settings)],
        on_start=on_start,
        background=[worker.exchange_worker],
        body_limits={"/documents/": upload_limit, "/exchange/": settings.exchange_max_bytes + 64 * 1024},
    )


def create_app(
    settings: DocumentSettings | None = None,
    *,
    exchange_client: identity.ClientFactory | None = None,
    **kwargs: object,
) -> FastAPI:
    return create_service_app(definition(settings, exchange_client=exchange_client), **kwargs)  # type: ignore[arg-type]

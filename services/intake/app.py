"""Intake (một cửa, TTHC): the one-stop-shop desk's service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.intake import catalogue, handlers
from services.intake.blobs import BlobStore
from services.intake.config import IntakeSettings, get_settings
from services.intake.endpoints import routers
from services.intake.endpoints.submission import files_body_limit, submission_schemas
from services.intake.models import Base, outbox
from services.intake.state import IntakeState
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.db import session_scope

MIGRATIONS = Path(__file__).parent / "migrations"


async def on_start(runtime: ServiceRuntime) -> IntakeState:
    settings: IntakeSettings = runtime.settings  # type: ignore[assignment]
    state = IntakeState(blobs=BlobStore(settings.var_dir / "intake-blobs"), labels=catalogue.VersionLabels())
    state.blobs.root.mkdir(parents=True, exist_ok=True)
    handlers.document_issued.bind(settings, state.blobs, state.labels)
    if settings.demo:
        async with session_scope(runtime.db) as session:
            await catalogue.seed_demo(session)
    return state


def definition(settings: IntakeSettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    # a JSON submission carries base64 (4/3 larger); a multipart one streams the dossier's
    # files, each checked against its own limit as it arrives
    max_body = files_body_limit(settings)
    return ServiceDefinition(
        name="intake",
        title="lienthong intake",
        description="One-stop-shop desk: agencies, procedures, dossiers, deadlines, workflow, forms, look-up.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=routers,
        outbox=outbox,
        consumers=[handlers.consumer],
        on_start=on_start,
        max_body_bytes=1024 * 1024,
        body_limits={"/dossiers": max_body},
    )


def create_app(settings: IntakeSettings | None = None, **kwargs: object) -> FastAPI:
    settings = settings or get_settings()
    app = create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]
    submission_schemas(app, settings)
    return app

"""Audit: the tamper-evident log of every event and action."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.audit import endpoints, events  # noqa: F401 - events registers audit.tampered
from services.audit.config import AuditSettings, get_settings
from services.audit.handlers import consumer
from services.audit.jobs import (
    SelfCheck,
    checkpointer,
    integrity_detail,
    measure,
    monitor,
    selfcheck_loop,
)
from services.audit.models import Base, outbox
from services.audit.state import AuditState
from services.audit.store import load_signer
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


async def on_start(runtime: ServiceRuntime) -> AuditState:
    settings: AuditSettings = runtime.settings  # type: ignore[assignment]
    signer = load_signer(settings)
    return AuditState(signer=signer, selfcheck=SelfCheck(runtime.db, signer, window=settings.selfcheck_window))


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
        outbox=outbox,
        consumers=[consumer],
        on_start=on_start,
        background=[checkpointer, selfcheck_loop, monitor],
        readiness_checks={"log": measure, "integrity": integrity_detail},
    )


def create_app(settings: AuditSettings | None = None, **kwargs: object) -> FastAPI:
    return create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]

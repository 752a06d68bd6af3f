"""Signing: the local Government-CA stand-in, PKCS#11 keys, PAdES signatures, verification."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.signing import endpoints
from services.signing.config import SigningSettings, get_settings
from services.signing.models import Base, outbox
from shared.app import ServiceDefinition, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def definition(settings: SigningSettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    return ServiceDefinition(
        name="signing",
        title="lienthong signing",
        description="Local CA, keys in a PKCS#11 token, PAdES signatures with the Decree 30 stamps, verification.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=[endpoints.router],
        outbox=outbox,
    )


def create_app(settings: SigningSettings | None = None, **kwargs: object) -> FastAPI:
    return create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]

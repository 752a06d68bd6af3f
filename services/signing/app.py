"""Signing (ký số): the local Government-CA stand-in, keys in a PKCS#11 token, PAdES signatures
with the Decree 30 stamps, verification."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from fastapi import FastAPI
from sqlalchemy import select

from services.signing import endpoints, events  # noqa: F401 - events registers the event types
from services.signing.config import SigningSettings, get_settings
from services.signing.keystore import check_can_start, close_keystore, open_keystore
from services.signing.models import Base, Certificate, outbox
from services.signing.service import PinCache, issue_certificate
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.db import session_scope

MIGRATIONS = Path(__file__).parent / "migrations"
log = structlog.get_logger("signing")


async def on_start(runtime: ServiceRuntime) -> None:
    settings: SigningSettings = runtime.settings  # type: ignore[assignment]
    # creating a CA (RSA key generation) and a token takes seconds: not on the event loop
    keystore = await asyncio.to_thread(open_keystore, settings)
    runtime.extras["keystore"] = keystore
    runtime.extras["pins"] = PinCache(settings.pin_cache_seconds)
    if settings.demo:
        await seed_demo(runtime)


async def on_stop(runtime: ServiceRuntime) -> None:
    keystore = runtime.extras.pop("keystore", None)
    if keystore is not None:
        await asyncio.to_thread(close_keystore, keystore)


async def seed_demo(runtime: ServiceRuntime) -> None:
    """The demo leader's certificate and the demo agency's seal (PIN from settings), once."""
    settings: SigningSettings = runtime.settings  # type: ignore[assignment]
    keystore = runtime.extras["keystore"]
    async with session_scope(runtime.db) as session:
        rows = (
            (await session.execute(select(Certificate).where(Certificate.agency == settings.demo_agency)))
            .scalars()
            .all()
        )
        usable = [r for r in rows if r.revoked_at is None]
        if not any(r.kind == "person" and r.owner == settings.demo_leader for r in usable):
            await issue_certificate(
                session,
                keystore,
                kind="person",
                agency=settings.demo_agency,
                agency_name=settings.demo_agency_name,
                issued_by="demo-seed",
                user_id=settings.demo_leader,
                full_name=settings.demo_leader_name,
                position=settings.demo_leader_position,
                pin=settings.demo_pin_secret,
            )
        if not any(r.kind == "organisation" for r in usable):
            await issue_certificate(
                session,
                keystore,
                kind="organisation",
                agency=settings.demo_agency,
                agency_name=settings.demo_agency_name,
                issued_by="demo-seed",
                pin=settings.demo_pin_secret,
            )


async def keystore_readiness(runtime: ServiceRuntime) -> str:
    """Where the signing keys live: ``pkcs11``, or ``software (development only)`` — ready,
    but flagged for whoever looks."""
    keystore = runtime.extras.get("keystore")
    return keystore.token.description if keystore is not None else "not open"


def definition(settings: SigningSettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    check_can_start(settings)
    pdf_limit = settings.max_pdf_bytes
    return ServiceDefinition(
        name="signing",
        title="lienthong signing",
        description="Local CA, keys in a PKCS#11 token, PAdES signatures with the Decree 30 stamps, verification.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=endpoints.routers,
        outbox=outbox,
        on_start=on_start,
        on_stop=on_stop,
        readiness_checks={"keystore": keystore_readiness},
        body_limits={
            "/sign": pdf_limit,
            "/sign/batch": settings.max_batch_bytes,
            "/fill-number": pdf_limit,
            "/verify": pdf_limit,
        },
    )


def create_app(settings: SigningSettings | None = None, **kwargs: object) -> FastAPI:
    return create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]

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
from services.signing.documents import DocumentsClient
from services.signing.keystore import Keystore, check_can_start, close_keystore, open_keystore
from services.signing.models import Base, Certificate, outbox
from services.signing.service import PinCache, issue_certificate
from services.signing.state import SigningState
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.db import session_scope
from shared.demo import DEMO_AGENCIES
from shared.events import Actor

MIGRATIONS = Path(__file__).parent / "migrations"
log = structlog.get_logger("signing")


async def on_start(runtime: ServiceRuntime) -> SigningState:
    settings: SigningSettings = runtime.settings  # type: ignore[assignment]
    # creating a CA (RSA key generation) and a token takes seconds: not on the event loop
    keystore = await asyncio.to_thread(open_keystore, settings)
    if settings.demo:
        await seed_demo(runtime, keystore)
    return SigningState(
        keystore=keystore,
        pins=PinCache(settings.pin_cache_seconds),
        documents=DocumentsClient(settings.resolved_document_api_url),
    )


async def on_stop(runtime: ServiceRuntime) -> None:
    state = SigningState.of(runtime)
    await state.documents.close()
    await asyncio.to_thread(close_keystore, state.keystore)


async def seed_demo(runtime: ServiceRuntime, keystore: Keystore) -> None:
    """Every demo agency's seal and its leader's certificate (PIN ``demo_pin_secret``), once:
    whatever the demo deployment asks an agency to sign, it can."""
    settings: SigningSettings = runtime.settings  # type: ignore[assignment]
    actor = Actor.system("demo seed: every demo agency's seal and leader")
    async with session_scope(runtime.db) as session:
        rows = (await session.execute(select(Certificate).where(Certificate.revoked_at.is_(None)))).scalars().all()
        seals = {r.agency for r in rows if r.kind == "organisation"}
        leaders = {(r.agency, r.owner) for r in rows if r.kind == "person"}
        for agency in DEMO_AGENCIES:
            common = {"agency": agency.code, "agency_name": agency.name, "issued_by": "demo-seed", "actor": actor}
            leader = agency.leader
            if (agency.code, leader.username) not in leaders:
                await issue_certificate(
                    session,
                    keystore,
                    kind="person",
                    user_id=leader.username,
                    full_name=leader.full_name,
                    position=agency.leader_position,
                    pin=settings.demo_pin_secret,
                    **common,
                )
            if agency.code not in seals:
                await issue_certificate(session, keystore, kind="organisation", pin=settings.demo_pin_secret, **common)


async def keystore_readiness(runtime: ServiceRuntime) -> str:
    """Where the signing keys live: ``pkcs11``, or ``software (development only)`` — ready,
    but flagged for whoever looks."""
    state = runtime.state
    return state.keystore.token.description if isinstance(state, SigningState) else "not open"


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

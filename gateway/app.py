"""The gateway: identity, authorization at the edge, rate limits, routing to the parts, one OpenAPI."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from gateway import accounts, identity
from gateway.access import AccessLog, BatchWriter, PostgresWriter, SessionWriter
from gateway.config import GatewaySettings, get_settings
from gateway.edge import Edge
from gateway.models import Base, User, outbox
from gateway.openapi import ApiDocuments
from gateway.proxy import Upstreams
from gateway.ratelimit import DatabaseLimiter, MemoryLimiter
from gateway.state import GatewayState
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.auth import TokenVerifier, jwks_from_url
from shared.db import session_scope
from shared.demo import demo_people
from shared.logging import RequestIdMiddleware

MIGRATIONS = Path(__file__).parent / "migrations"
log = structlog.get_logger("gateway")

DEMO_AGENCY = "000.00.00.H56"
DEMO_USERS = {
    "citizen": ("Nguyễn Thị Hồng Nhung", ["citizen"], None, 0),
    "desk_officer": ("Lê Văn Tiếp", ["desk_officer"], DEMO_AGENCY, 0),
    "specialist": ("Trần Thị Chuyên", ["specialist"], DEMO_AGENCY, 1),
    "leader": ("Phạm Văn Đức", ["leader"], DEMO_AGENCY, 3),
    "clerk": ("Hoàng Thị Thư", ["clerk"], DEMO_AGENCY, 3),
    "admin": ("Đỗ Quản Trị", ["admin"], DEMO_AGENCY, 0),
    "auditor": ("Vũ Kiểm Toán", ["auditor"], DEMO_AGENCY, 0),
    "integrator": ("Cổng dịch vụ công tỉnh", ["integrator"], DEMO_AGENCY, 0),
}
# every other demo agency's people (shared/demo.py: ``leader.41`` at 000.00.41.H56, …): kept
# apart from DEMO_USERS, the one login per role the banner and the role matrix go through
DEMO_AGENCY_USERS = {
    p.username: (p.full_name, [p.role], p.agency, p.clearance) for p in demo_people() if p.username not in DEMO_USERS
}
ALL_DEMO_USERS = {**DEMO_USERS, **DEMO_AGENCY_USERS}
KEYRING_RELOAD_SECONDS = 30.0


class RefusedToStart(RuntimeError):
    pass


async def seed_demo_users(runtime: ServiceRuntime, passwords: identity.Passwords) -> None:
    settings = runtime.settings
    async with session_scope(runtime.db) as session:
        existing = set((await session.execute(select(User.username))).scalars())
        if existing.issuperset(ALL_DEMO_USERS):
            return
        # one hash for all: the demo accounts share their (well-known) password anyway
        password_hash = await passwords.hash_async(settings.demo_password)
        for username, (name, roles, agency, clearance) in ALL_DEMO_USERS.items():
            if username not in existing:
                session.add(
                    User(
                        username=username,
                        full_name=name,
                        password_hash=password_hash,
                        roles=roles,
                        agency=agency,
                        clearance=clearance,
                        active=True,
                        failed_attempts=0,
                        version=1,
                    )
                )


async def refuse_demo_accounts(runtime: ServiceRuntime, passwords: identity.Passwords) -> None:
    """In production no demo account may still open with the demo password."""
    settings = runtime.settings
    async with session_scope(runtime.db) as session:
        users = (
            (await session.execute(select(User).where(User.username.in_(ALL_DEMO_USERS), User.active.is_(True))))
            .scalars()
            .all()
        )
        for user in users:
            if await passwords.verify(user.password_hash, settings.demo_password):
                raise RefusedToStart(
                    f"production with the demo account {user.username!r} still active with the demo password; "
                    "deactivate it or change its password"
                )


def definition(settings: GatewaySettings | None = None, *, own_openapi: Any = None) -> ServiceDefinition:
    settings = settings or get_settings()

    async def on_start(runtime: ServiceRuntime) -> GatewayState:
        s: GatewaySettings = runtime.settings  # type: ignore[assignment]
        passwords = identity.Passwords(s)
        ring: identity.KeyRing | None = None
        if s.identity_provider == "builtin":
            ring = identity.KeyRing(s)
            async with session_scope(runtime.db) as session:
                await ring.load(session)
            runtime.verifier = _own_keys_verifier(runtime, ring)
        else:
            runtime.verifier = TokenVerifier(
                jwks_from_url(s.jwks_url),
                issuer=s.token_issuer,
                audience=s.token_audience,
                claim_map=s.token_claim_map,
                refetch_interval=1.0,
            )
        if s.environment == "production":
            await refuse_demo_accounts(runtime, passwords)
        upstreams = Upstreams(s)
        await upstreams.start()
        state = GatewayState(
            passwords=passwords,
            keyring=ring,
            upstreams=upstreams,
            api=ApiDocuments(s, own_openapi),
            limiter=DatabaseLimiter(runtime.db) if s.rate_limit_store == "database" else MemoryLimiter(),
            access=AccessLog(_access_writer(runtime), batch=s.access_batch),
        )
        if s.demo:
            await seed_demo_users(runtime, passwords)
        return state

    async def on_stop(runtime: ServiceRuntime) -> None:
        state = GatewayState.of(runtime)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await state.access.drain()
        await state.upstreams.close()

    return ServiceDefinition(
        name="gateway",
        title="lienthong",
        description="One API for the one-stop shop, official documents, signatures, audit and webhooks.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=[identity.router, accounts.router],
        outbox=outbox,
        on_start=on_start,
        on_stop=on_stop,
        background=[keep_api_documents, housekeeping],
        max_body_bytes=settings.max_json_body_bytes,
        readiness_checks={"parts_documented": _documented},
    )


def _own_keys_verifier(runtime: ServiceRuntime, ring: identity.KeyRing) -> TokenVerifier:
    s: GatewaySettings = runtime.settings  # type: ignore[assignment]

    async def own_keys() -> dict[str, Any]:
        # a kid this replica has not seen may come from another replica's rotation
        if not ring.from_file and not ring.loaded_within(1.0):
            async with session_scope(runtime.db) as session:
                await ring.load(session)
        return ring.jwks()

    # the keys are at hand, so an unknown kid is looked up at once (no refetch pause)
    return TokenVerifier(own_keys, issuer=s.token_issuer, audience=s.token_audience, refetch_interval=0.0)


async def keep_api_documents(runtime: ServiceRuntime) -> None:
    state = GatewayState.of(runtime)
    await state.api.run(state.upstreams)


def _access_writer(runtime: ServiceRuntime) -> BatchWriter:
    """On PostgreSQL the access log's own connection (see ``gateway.access``); on SQLite a session."""
    if runtime.db.dialect == "postgresql":
        relay = runtime.relay
        return PostgresWriter.for_database(runtime.db, outbox, relay.wake if relay else lambda: None)
    return SessionWriter(runtime.db, outbox)


async def housekeeping(runtime: ServiceRuntime) -> None:
    """Drop full rate buckets; pick up signing keys another replica rotated in."""
    state = GatewayState.of(runtime)
    while True:
        await asyncio.sleep(KEYRING_RELOAD_SECONDS)
        await state.limiter.prune()
        if state.keyring is not None:
            async with session_scope(runtime.db) as session:
                await state.keyring.load(session)


async def _documented(runtime: ServiceRuntime) -> Any:
    missing = GatewayState.of(runtime).api.missing
    return "ok" if not missing else {"not_yet": missing}


def create_app(settings: GatewaySettings | None = None, **kwargs: Any) -> FastAPI:
    settings = settings or get_settings()
    holder: dict[str, FastAPI] = {}
    app = create_service_app(definition(settings, own_openapi=lambda: holder["app"].openapi()), **kwargs)
    holder["app"] = app
    _serve_assembled_openapi(app)
    _install_edge(app, settings)
    return app


def _serve_assembled_openapi(app: FastAPI) -> None:
    async def assembled(request: Request) -> JSONResponse:
        return JSONResponse(GatewayState.of(request).api.assembled)

    for i, route in enumerate(app.router.routes):
        if getattr(route, "path", None) == app.openapi_url:
            app.router.routes[i] = Route(app.openapi_url, assembled, include_in_schema=False)


def _install_edge(app: FastAPI, settings: GatewaySettings) -> None:
    """The edge goes outside the framework's middleware stack, just inside the request-id layer
    (so its problems carry the id), with CORS between them (preflights are answered before
    tokens or limits). A forwarded request then never enters FastAPI at all: its error and
    body-limit layers, routing and dependency machinery cost a measurable share of a proxied
    request, and the edge does those jobs itself. The gateway's own routes (``/api/auth``,
    ``/openapi.json``, health) still run through the whole stack behind the edge."""
    app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestIdMiddleware]
    build_framework_stack = app.build_middleware_stack

    def build_middleware_stack() -> Any:
        stack: Any = Edge(build_framework_stack(), settings=settings)
        if settings.cors_origins:
            stack = CORSMiddleware(
                stack,
                allow_origins=settings.cors_origins,
                allow_credentials=settings.cors_allow_credentials,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match", "X-Request-ID"],
                expose_headers=[
                    "ETag",
                    "Location",
                    "X-Request-ID",
                    "Retry-After",
                    "RateLimit-Limit",
                    "RateLimit-Remaining",
                    "RateLimit-Reset",
                ],
                max_age=600,
            )
        return RequestIdMiddleware(stack)

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]

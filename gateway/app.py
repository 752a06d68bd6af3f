"""The gateway: identity, authorization at the edge, routing to the parts, one OpenAPI."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import select

from gateway import identity, proxy
from gateway.config import GatewaySettings, get_settings
from gateway.models import Base, User
from shared.app import ServiceDefinition, ServiceRuntime, create_service_app
from shared.db import session_scope

MIGRATIONS = Path(__file__).parent / "migrations"

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


async def seed_demo_users(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    async with session_scope(runtime.db) as session:
        existing = set((await session.execute(select(User.username))).scalars())
        for username, (name, roles, agency, clearance) in DEMO_USERS.items():
            if username in existing:
                continue
            session.add(
                User(
                    username=username,
                    full_name=name,
                    password_hash=identity.hash_secret(settings.demo_password),
                    roles=roles,
                    agency=agency,
                    clearance=clearance,
                    failed_attempts=0,
                )
            )


async def on_start(runtime: ServiceRuntime) -> None:
    settings: GatewaySettings = runtime.settings  # type: ignore[assignment]
    ring = identity.KeyRing()
    async with session_scope(runtime.db) as session:
        await ring.load(session, ttl=settings.token_ttl_seconds)
    runtime.extras["keyring"] = ring
    upstreams = proxy.Upstreams(settings)
    await upstreams.start()
    runtime.extras["upstreams"] = upstreams
    if settings.demo:
        await seed_demo_users(runtime)


async def on_stop(runtime: ServiceRuntime) -> None:
    await runtime.extras["upstreams"].close()


def definition(settings: GatewaySettings | None = None) -> ServiceDefinition:
    settings = settings or get_settings()
    return ServiceDefinition(
        name="gateway",
        title="lienthong",
        description="One API for the one-stop shop, official documents, signatures, audit and webhooks.",
        settings=settings,
        metadata=Base.metadata,
        migrations=MIGRATIONS,
        routers=[identity.router, proxy.router],
        on_start=on_start,
        on_stop=on_stop,
        max_body_bytes=250 * 1024 * 1024,
    )


def create_app(settings: GatewaySettings | None = None, **kwargs: object) -> FastAPI:
    app_holder: dict[str, FastAPI] = {}

    async def own_keys() -> dict:
        return app_holder["app"].state.runtime.extras["keyring"].jwks()

    kwargs.setdefault("key_source", own_keys)
    app = create_service_app(definition(settings), **kwargs)  # type: ignore[arg-type]
    app_holder["app"] = app
    return app

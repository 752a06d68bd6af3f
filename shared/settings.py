"""Configuration for every part, read from the environment (prefix ``LIENTHONG_``).

A value can be set for the whole suite (``LIENTHONG_DATABASE_URL``) and overridden for one part
(``LIENTHONG_INTAKE_DATABASE_URL``). Database URLs may contain ``{service}``, so one variable
serves every part in distributed mode: ``postgresql+asyncpg://postgres@127.0.0.1/lienthong_{service}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PARTS = ("gateway", "intake", "document", "signing", "audit", "notify", "console")
DEFAULT_PORTS = {part: 8000 + i for i, part in enumerate(PARTS)}

# Values that are fine on a laptop and must never reach production.
DEVELOPMENT_SECRETS = {"dev-only-secret", "demo"}


class Settings(BaseSettings):
    """Settings every part understands; a part subclasses this to add its own."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", extra="ignore")

    service: str = "lienthong"
    environment: Literal["development", "test", "production"] = "development"
    demo: bool = Field(default=False, description="seed demo data and demo users (never in production)")
    demo_password: str = "demo"

    host: str = "127.0.0.1"
    port: int = 0
    public_base_url: str = "http://127.0.0.1:8000"

    var_dir: Path = Path("var")
    database_url: str = Field(
        default="sqlite+aiosqlite:///{var_dir}/{service}.sqlite",
        description="SQLAlchemy async URL; `{service}` and `{var_dir}` are substituted",
    )
    database_pool_size: int = 20
    auto_migrate: bool = Field(default=True, description="run this part's migrations at start")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="worker processes `serve PART` runs on the part's one port (a dead one is started "
        "again); `LIENTHONG_<PART>_WORKERS` for one part. Distributed mode only: the embedded mode is "
        "always one process. database_pool_size is the part's, shared out among its workers. signing "
        "refuses more than 1; the gateway needs rate_limit_store=database",
    )

    amqp_url: str | None = Field(
        default=None, description="RabbitMQ URL; unset = the in-process broker (embedded mode)"
    )
    delivery_limit: int = Field(default=5, description="deliveries before a message is dead-lettered")
    consumer_prefetch: int = 200
    consumer_batch: int = 100
    relay_batch: int = 500
    relay_poll_seconds: float = 1.0
    relay_coalesce_seconds: float = Field(
        default=0.0,
        ge=0,
        le=5,
        description="once a commit wakes the outbox relay, it waits this long before reading, so the events "
        "committed meanwhile go out in one pass and reach their consumers as one batch (a delay on every "
        "event); the gateway's default is 0.05, its outbox being an access record per request",
    )
    relay_internal_keys: list[str] = Field(
        default_factory=list,
        description="routing keys of events no integrator may read: the outbox relay sends them to the exchange "
        "lienthong.internal (audit's), those that follow each other in the outbox in one message in the "
        "CloudEvents JSON batch format (application/cloudevents-batch+json). The gateway's default is "
        '["access.recorded"]',
    )
    outbox_retention_hours: float = 24 * 7
    inbox_retention_hours: float = Field(
        default=24 * 7,
        description="inbox rows are purged after this: an event redelivered later than that would be applied again",
    )
    retention_every_seconds: float = Field(default=600, description="how often inbox and outbox rows are purged")

    jwks_url: str = "http://127.0.0.1:8000/api/auth/jwks"
    token_issuer: str = "urn:lienthong:identity"
    token_audience: str = "lienthong"
    token_claim_map: dict[str, str] = Field(
        default_factory=dict,
        description="where an external provider puts our claims, dotted paths; Keycloak: "
        '{"roles": "realm_access.roles", "name": "preferred_username", "agency": "agency", '
        '"clearance": "clearance"}',
    )

    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _refuse_development_defaults_in_production(self) -> Settings:
        if self.environment == "production":
            if self.demo:
                raise ValueError("demo mode (demo users and data) is refused in production")
            for name, value in self.model_dump().items():
                if isinstance(value, str) and value in DEVELOPMENT_SECRETS and "secret" in name:
                    raise ValueError(f"{name} still has its development default")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url.format(service=self.service, var_dir=self.var_dir)

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


S = TypeVar("S", bound=Settings)


def load_settings(cls: type[S], service: str, **overrides: object) -> S:
    """Build ``cls`` for one part: ``LIENTHONG_<SERVICE>_X`` beats ``LIENTHONG_X`` beats defaults."""
    prefix = f"LIENTHONG_{service.upper()}_"
    specific: dict[str, object] = {}
    for name in cls.model_fields:
        value = os.environ.get(prefix + name.upper())
        if value is not None:
            # complex values (lists, mappings) come as JSON, as pydantic-settings reads them
            specific[name] = json.loads(value) if value.lstrip()[:1] in ("{", "[") else value
    if "port" not in specific and "port" not in overrides and service in DEFAULT_PORTS:
        specific["port"] = DEFAULT_PORTS[service]
    return cls(service=service, **{**specific, **overrides})

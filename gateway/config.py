"""The gateway's settings (``LIENTHONG_GATEWAY_…`` overrides ``LIENTHONG_…``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import DEFAULT_PORTS, Settings, load_settings

SERVICES = ("intake", "document", "signing", "audit", "notify")


class GatewaySettings(Settings):
    upstreams: dict[str, str] = Field(
        default_factory=lambda: {s: f"http://127.0.0.1:{DEFAULT_PORTS[s]}" for s in SERVICES},
        description="where each part listens, as JSON: {\"intake\": \"http://intake:8001\", …}",
    )
    upstream_timeout_seconds: float = 30.0
    token_ttl_seconds: int = 3600
    lockout_attempts: int = 5
    lockout_minutes: int = 15


def get_settings(**overrides: object) -> GatewaySettings:
    return load_settings(GatewaySettings, "gateway", **overrides)

"""The gateway's settings (``LIENTHONG_GATEWAY_…`` overrides ``LIENTHONG_…``).

Dicts and lists are given as JSON in the environment, e.g.
``LIENTHONG_GATEWAY_CORS_ORIGINS='["https://dichvucong.thanhhoa.gov.vn"]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from gateway import access
from shared.settings import DEFAULT_PORTS, Settings, load_settings

SERVICES = ("intake", "document", "signing", "audit", "notify")
# the web pages: every path outside /api and the gateway's own goes there
CONSOLE = "console"


class RateRule(BaseModel):
    """A token bucket: ``burst`` requests at once, refilled at ``rate`` per second."""

    rate: float = Field(gt=0)
    burst: int = Field(ge=1)


class GatewaySettings(Settings):
    # --- routing -------------------------------------------------------------------------
    upstreams: dict[str, str] = Field(
        default_factory=lambda: {s: f"http://127.0.0.1:{DEFAULT_PORTS[s]}" for s in (*SERVICES, CONSOLE)},
        description='where each part listens, as JSON: {"intake": "http://intake:8001", …}; '
        "without console, the gateway serves no web pages",
    )
    upstream_timeout_seconds: float = Field(
        default=30.0, description="longest wait for an upstream's next byte (read timeout)"
    )
    upstream_timeouts: dict[str, float] = Field(
        default_factory=lambda: {"signing": 120.0},
        description="per-part read timeout overriding upstream_timeout_seconds",
    )
    upstream_connect_timeout_seconds: float = 3.0
    upstream_retries: int = Field(
        default=2, ge=0, description="extra tries of idempotent requests after a connection failure"
    )
    upstream_pool_size: int = Field(default=200, description="pooled connections per part")
    # below uvicorn's default keep-alive (5 s), so the pool never reuses a socket the part is closing
    upstream_keepalive_seconds: float = 4.0
    breaker_failures: int = Field(default=5, ge=1, description="consecutive failures that open a part's circuit")
    breaker_probe_seconds: float = Field(
        default=0.5, gt=0, description="first wait before an open circuit lets one trial request through"
    )
    breaker_open_seconds: float = Field(
        default=10.0,
        gt=0,
        description="longest wait between trials of an open circuit (the waits double from breaker_probe_seconds)",
    )
    openapi_refresh_seconds: float = Field(
        default=300.0, description="how often the parts' OpenAPI documents (route table) are re-read"
    )

    # --- identity ------------------------------------------------------------------------
    identity_provider: Literal["builtin", "oidc"] = Field(
        default="builtin",
        description="builtin: this gateway issues tokens; oidc: an external provider does "
        "(token_issuer, token_audience, jwks_url and token_claim_map name it)",
    )
    token_key_file: Path | None = Field(
        default=None,
        description="PEM file of RSA private keys signing tokens (the last one signs, all verify); "
        "required in production. Unset: keys are generated and kept in the gateway's database.",
    )
    token_ttl_seconds: int = 3600
    lockout_attempts: int = 5
    lockout_minutes: int = 15
    password_min_length: int = 10
    # Argon2id cost (RFC 9106); production refuses less memory than OWASP's 19 MiB floor
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    password_hash_parallelism: int = 4

    # --- edge ----------------------------------------------------------------------------
    max_json_body_bytes: int = Field(default=1 * 1024 * 1024, description="body limit of JSON routes")
    max_upload_bytes: int = Field(
        default=256 * 1024 * 1024, description="body limit of routes taking files (multipart, PDF, octet-stream)"
    )
    route_body_limits: dict[str, int] = Field(
        default_factory=dict,
        description='per-route overrides, "METHOD /api/part/template" → bytes '
        "(a route can also declare x-max-body-bytes in its OpenAPI)",
    )
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed to call the API")
    cors_allow_credentials: bool = False
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of load balancers in front of the gateway whose X-Forwarded-For is believed",
    )
    operator_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="CIDRs whose callers reach the gateway's own /readyz and /metrics without a token "
        "(probes, scrapers); anyone else needs an admin or auditor token",
    )
    rate_limit_store: Literal["memory", "database"] = Field(
        default="memory",
        description="memory: per process (embedded mode; refused with workers > 1); database: shared by "
        "every gateway worker and replica through the gateway's PostgreSQL database",
    )
    rate_client: RateRule = Field(
        default_factory=lambda: RateRule(rate=50, burst=200), description="per authenticated client, all routes"
    )
    rate_public: RateRule = Field(
        default_factory=lambda: RateRule(rate=5, burst=50),
        description="per client address on public (unauthenticated) routes",
    )
    rate_routes: dict[str, RateRule] = Field(
        default_factory=lambda: {
            "POST /api/auth/token": RateRule(rate=0.2, burst=10),
            # guessing a receipt's secret: 30 tries a minute per client address
            "GET /api/intake/lookup": RateRule(rate=0.5, burst=30),
        },
        description='per client and route, "METHOD /api/part/template" → rule (a client is its token\'s '
        "subject, or without a token its real address: see trusted_proxies)",
    )
    access_batch: int = 500
    # the gateway's outbox is its access records, one per request: they go out in a pass per 50 ms
    # (audit then appends them as one batch) rather than a pass, a message confirm and an audit
    # transaction per request; an access record reaches the audit log that much later
    relay_coalesce_seconds: float = Field(default=0.05, ge=0, le=5)
    # and, internal (audit alone reads them), a pass's records go out as one message: RabbitMQ and
    # the relay handle a message per pass rather than per request
    relay_internal_keys: list[str] = Field(default_factory=lambda: [access.ROUTING_KEY])

    @model_validator(mode="after")
    def _production_needs_a_configured_key(self) -> GatewaySettings:
        if self.environment == "production" and self.identity_provider == "builtin" and not self.token_key_file:
            raise ValueError("production needs token_key_file (the PEM key that signs access tokens)")
        if self.environment == "production" and self.password_hash_memory_kib < 19456:
            raise ValueError("password_hash_memory_kib below 19456 is too weak for production")
        if self.environment == "production" and "*" in self.cors_origins and self.cors_allow_credentials:
            raise ValueError("CORS with credentials cannot allow every origin")
        if self.workers > 1 and self.rate_limit_store == "memory":
            # each worker process would keep its own buckets: every limit multiplied by the workers
            raise ValueError(
                f"{self.workers} gateway workers need rate_limit_store=database "
                "(LIENTHONG_GATEWAY_RATE_LIMIT_STORE=database): with memory each worker has its own buckets"
            )
        return self

    def timeout_for(self, part: str) -> float:
        return self.upstream_timeouts.get(part, self.upstream_timeout_seconds)


def get_settings(**overrides: object) -> GatewaySettings:
    return load_settings(GatewaySettings, "gateway", **overrides)

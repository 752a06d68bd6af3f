"""Notify's settings (``LIENTHONG_NOTIFY_…`` overrides ``LIENTHONG_…``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings, load_settings


class NotifySettings(Settings):
    # --- where callbacks may go ----------------------------------------------------------
    callback_schemes: list[str] = Field(default_factory=lambda: ["https"], description="URL schemes a callback may use")
    allow_private_targets: bool = Field(
        default=False,
        description="allow callbacks to private, loopback and link-local addresses (tests, closed networks)",
    )
    # --- how deliveries are sent ---------------------------------------------------------
    delivery_timeout_seconds: float = Field(default=10.0, description="an attempt's whole time budget")
    retry_base_seconds: float = Field(default=5.0, description="wait after the first failed attempt")
    retry_factor: float = Field(default=3.0, ge=1.0, description="each further wait is this much longer")
    retry_max_delay_seconds: float = Field(default=6 * 3600.0, description="no wait is longer than this")
    retry_jitter: float = Field(default=0.2, ge=0, le=0.5, description="each wait varies by up to ±this share")
    retry_horizon_seconds: float = Field(
        default=26 * 3600.0, description="no attempt later than this after the event (about a day)"
    )
    worker_poll_seconds: float = Field(default=1.0, description="how often due deliveries are looked for")
    worker_concurrency: int = Field(default=20, ge=1, description="attempts in flight at once")
    worker_batch: int = Field(default=100, ge=1)
    response_excerpt_bytes: int = Field(default=1024, description="how much of a callback's answer is kept")
    # --- what is offered ------------------------------------------------------------------
    withheld_events: list[str] = Field(
        default_factory=lambda: ["access.#"],
        description="routing-key patterns never delivered to integrators (internal records)",
    )
    secret_overlap_hours: float = Field(
        default=24.0, description="after a secret rotation, the old secret also signs for this long"
    )
    max_subscriptions_per_owner: int = 50
    subscription_cache_seconds: float = Field(
        default=1.0,
        description="how long a process trusts its cached subscriptions before checking their version "
        "(another process's new subscription is owed events from at most this long after)",
    )
    replay_limit: int = Field(default=10_000, description="most deliveries one time-range replay re-sends")
    delivery_retention_days: float = Field(default=30.0, description="finished deliveries are kept this long")


def get_settings(**overrides: object) -> NotifySettings:
    return load_settings(NotifySettings, "notify", **overrides)

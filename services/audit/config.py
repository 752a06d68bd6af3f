"""Audit's settings (``LIENTHONG_AUDIT_…`` overrides ``LIENTHONG_…``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import Settings, load_settings


class AuditSettings(Settings):
    log_origin: str = Field(
        default="audit.lienthong.local/log",
        description="the log's name on its checkpoints (and the name of a generated key)",
    )
    signing_key: str | None = Field(
        default=None,
        description="C2SP signer key string PRIVATE+KEY+<name>+<id>+<key>; its name becomes the "
        "checkpoints' origin. Unset outside production: one is generated under var_dir",
    )
    checkpoint_every_entries: int = Field(
        default=1000, ge=1, description="sign a checkpoint after this many new entries"
    )
    checkpoint_every_seconds: float = Field(default=60.0, gt=0, description="…or when new entries are this old")
    selfcheck_seconds: float = Field(default=300.0, gt=0, description="pause between integrity self-checks")
    selfcheck_window: int = Field(
        default=100_000, ge=1024,
        description="entries one self-check run reads: the newest ones plus a window that rotates over the rest",
    )
    monitor_seconds: float = Field(
        default=15.0, gt=0, description="how often lag, dead letters and checkpoint age are measured"
    )

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> AuditSettings:
        if self.environment == "production" and not self.signing_key:
            raise ValueError("production needs audit signing_key (LIENTHONG_AUDIT_SIGNING_KEY)")
        return self


def get_settings(**overrides: object) -> AuditSettings:
    return load_settings(AuditSettings, "audit", **overrides)

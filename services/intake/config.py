"""Intake's settings (``LIENTHONG_INTAKE_…`` overrides ``LIENTHONG_…``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from shared.settings import Settings, load_settings


class IntakeSettings(Settings):
    max_file_bytes: int = Field(default=20 * 1024 * 1024, description="largest component file accepted")
    max_dossier_bytes: int = Field(
        default=100 * 1024 * 1024, description="largest total of a dossier's component files, all uploads together"
    )
    max_files_per_request: int = 20
    accepted_file_types: list[str] = Field(
        default_factory=lambda: ["application/pdf", "image/jpeg", "image/png", "image/tiff"],
        description="MIME types a component file may be; checked from the file's content",
    )
    lookup_rate_per_minute: int = Field(default=30, description="public look-ups per client address")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="peer addresses (the gateway) whose X-Forwarded-For names the real client",
    )
    lookup_hash_secret: str = Field(
        default="dev-only-secret", description="key of the HMAC that stores look-up secrets"
    )
    lookup_path: str = Field(
        default="/tra-cuu", description="path of the public look-up page (the console's) the receipt's QR code opens"
    )
    code_sequence_reset: Literal["day", "month", "year"] = Field(
        default="day", description="when the dossier code's sequence restarts, per receiving agency"
    )
    office_hours: list[tuple[str, str]] = Field(
        default_factory=lambda: [("07:30", "11:30"), ("13:30", "17:30")],
        description="office periods (Vietnam wall-clock time); their total is one working day",
    )
    timeliness_on_time_band_hours: Decimal = Decimal(8)
    timeliness_on_time_band_share: Decimal = Decimal("0.5")
    # Decision 766/QĐ-TTg (2022) index weights [secondary]; formulas unconfirmed, so raw rates
    # are reported beside these weights, never combined here.
    indicator_weights: dict[str, int] = Field(
        default_factory=lambda: {
            "publicity": 18,
            "progress": 20,
            "online_service": 12,
            "online_payment": 10,
            "satisfaction": 18,
            "digitisation": 22,
        }
    )


def get_settings(**overrides: object) -> IntakeSettings:
    return load_settings(IntakeSettings, "intake", **overrides)

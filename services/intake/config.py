"""Intake's settings (``LIENTHONG_INTAKE_…`` overrides ``LIENTHONG_…``)."""

from __future__ import annotations

from shared.settings import Settings, load_settings


class IntakeSettings(Settings):
    max_file_bytes: int = 20 * 1024 * 1024
    lookup_rate_per_minute: int = 30


def get_settings(**overrides: object) -> IntakeSettings:
    return load_settings(IntakeSettings, "intake", **overrides)

"""Audit's settings (``LIENTHONG_AUDIT_…`` overrides ``LIENTHONG_…``)."""

from __future__ import annotations

from shared.settings import Settings, load_settings


class AuditSettings(Settings):
    pass


def get_settings(**overrides: object) -> AuditSettings:
    return load_settings(AuditSettings, "audit", **overrides)

"""Signing's settings (``LIENTHONG_SIGNING_…`` overrides ``LIENTHONG_…``)."""

from __future__ import annotations

from shared.settings import Settings, load_settings


class SigningSettings(Settings):
    pass


def get_settings(**overrides: object) -> SigningSettings:
    return load_settings(SigningSettings, "signing", **overrides)

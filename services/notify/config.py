"""Notify's settings (``LIENTHONG_NOTIFY_…`` overrides ``LIENTHONG_…``)."""

from __future__ import annotations

from shared.settings import Settings, load_settings


class NotifySettings(Settings):
    pass


def get_settings(**overrides: object) -> NotifySettings:
    return load_settings(NotifySettings, "notify", **overrides)

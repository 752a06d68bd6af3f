"""Document's settings (``LIENTHONG_DOCUMENT_…`` overrides ``LIENTHONG_…``)."""

from __future__ import annotations

from shared.settings import Settings, load_settings


class DocumentSettings(Settings):
    pass


def get_settings(**overrides: object) -> DocumentSettings:
    return load_settings(DocumentSettings, "document", **overrides)

"""Where each part's app factory lives (the only module that knows every part)."""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import FastAPI

from shared.settings import PARTS

FACTORIES = {
    "gateway": "gateway.app",
    "intake": "services.intake.app",
    "document": "services.document.app",
    "signing": "services.signing.app",
    "audit": "services.audit.app",
    "notify": "services.notify.app",
    "console": "services.console.app",
}
assert set(FACTORIES) == set(PARTS)


def module(part: str) -> Any:
    return importlib.import_module(FACTORIES[part])


def create_app(part: str, **overrides: Any) -> FastAPI:
    mod = module(part)
    settings = mod.get_settings(**overrides) if overrides else None
    return mod.create_app(settings)


def load_all_event_modules() -> None:
    """Import every part's events module so the event registry is complete."""
    for part in PARTS:
        try:
            importlib.import_module(FACTORIES[part].rsplit(".", 1)[0] + ".events")
        except ModuleNotFoundError as exc:
            if not exc.name or not exc.name.endswith(".events"):
                raise

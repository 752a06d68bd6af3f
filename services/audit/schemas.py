"""Response bodies of audit's API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class EntryOut(BaseModel):
    index: int
    source: str
    event_id: str
    type: str
    subject: str | None
    agency: str | None
    time: datetime
    record: dict[str, Any]


class EntryPage(BaseModel):
    items: list[EntryOut]
    next: str | None

"""The events intake emits: their ``data`` schemas are the contract (contracts/events/)."""

from __future__ import annotations

from datetime import datetime

from shared.events import EventData, register


@register("dossier.received", service="intake")
class DossierReceived(EventData):
    """A dossier was submitted online (status 1) or received at the desk (status 2)."""

    code: str
    agency: str
    procedure_code: str
    status: int
    channel: str
    received_at: datetime

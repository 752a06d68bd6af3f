"""The events audit emits: an alert when the self-check finds the stored log altered."""

from __future__ import annotations

from pydantic import AwareDatetime

from shared.events import EventData, register


@register("audit.tampered", service="audit")
class AuditTampered(EventData):
    """The periodic self-check found a stored entry or tree node that no longer matches."""

    finding: str
    entry_index: int | None
    detail: str
    detected_at: AwareDatetime

"""Events the gateway emits: one access record per request, for the audit log."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from shared.events import EventData, register


@register("access.recorded", service="gateway")
class AccessRecorded(EventData):
    """Who called what, with which result: never a token, a body or a query string."""

    actor: str | None = Field(description="token subject (user name or client:<id>); absent when anonymous")
    roles: list[str] = Field(default_factory=list)
    agency: str | None = Field(default=None, description="the caller's agency (OrganId)")
    client_ip: str | None = None
    method: str
    route: str = Field(description="route template, e.g. /api/intake/dossiers/{code}")
    status: int
    duration_ms: float
    request_id: str | None = None
    at: AwareDatetime

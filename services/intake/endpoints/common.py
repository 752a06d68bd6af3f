"""What the intake routers share: the request's session and caller, the service context, who
reads dossiers, and the shape of a PDF or a hand-read body."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import Depends, Request, Response

from services.intake.calendar import VN_TZ
from services.intake.config import IntakeSettings
from services.intake.context import Context
from services.intake.state import IntakeState
from shared.auth import current_caller
from shared.db import request_session

Session = Depends(request_session, scope="function")
Me = Depends(current_caller)
STAFF = ("desk_officer", "specialist", "leader", "admin")
DOSSIER_READERS = (*STAFF, "citizen", "integrator", "auditor")
PDF = {"content": {"application/pdf": {}}, "description": "a printable form"}


def settings_of(request: Request) -> IntakeSettings:
    return request.app.state.runtime.settings


async def context(request: Request) -> Context:
    # async, though it awaits nothing: FastAPI runs a plain function dependency in a worker thread
    state = IntakeState.of(request)
    return Context(settings=settings_of(request), blobs=state.blobs, labels=state.labels)


Ctx = Depends(context)


def pdf_response(content: bytes, name: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}.pdf"', **(headers or {})},
    )


def with_body(route: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A route's arguments with its request body written out for the OpenAPI: the route reads
    the body itself (streamed), so the framework cannot describe it."""
    route["openapi_extra"]["requestBody"] = body
    return route


def period_start(day: date) -> datetime:
    """The first instant of a Vietnam calendar day: date filters and periods count in its days."""
    return datetime(day.year, day.month, day.day, tzinfo=VN_TZ)

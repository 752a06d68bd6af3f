"""Tra cứu hồ sơ: the public look-up by code and receipt secret (the gateway limits tries per client)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import lookup_secret
from services.intake.endpoints.common import Session, settings_of
from services.intake.models import Dossier
from services.intake.schemas import LookupOut
from services.intake.workflow import DossierStatus
from shared.auth import public
from shared.db import fetch_rows
from shared.errors import NotFound, problem_responses
from shared.http import StrictRoute

router = APIRouter(tags=["lookup"], route_class=StrictRoute)


_NOT_FOUND = "no dossier with this code and secret"

# what the look-up shows and its check, as a plain row (a public route: kept cheap)
_DOSSIER = Dossier.__table__.c
_LOOKED_UP = select(
    _DOSSIER.code,
    _DOSSIER.status,
    _DOSSIER.received_at,
    _DOSSIER.accepted_at,
    _DOSSIER.due_at,
    _DOSSIER.finished_at,
    _DOSSIER.returned_at,
    _DOSSIER.lookup_hash,
).where(_DOSSIER.code == bindparam("code"))


@router.get("/lookup", response_model=LookupOut, responses=problem_responses(404), **public())
async def public_lookup(
    request: Request,
    code: Annotated[str, Query(max_length=40)],
    secret: Annotated[str, Query(max_length=40)],
    session: AsyncSession = Session,
) -> LookupOut:
    """Tra cứu hồ sơ: status and dates of a dossier for whoever holds its receipt (code and
    secret). A wrong code and a wrong secret get the same 404; the gateway limits tries per
    client address (its ``rate_routes``)."""
    settings = settings_of(request)
    given = lookup_secret.lookup_hash(settings, code, secret.strip().upper())
    found = await fetch_rows(session, _LOOKED_UP, {"code": code})  # on PostgreSQL: no transaction
    dossier = found[0] if found else None
    stored = dossier["lookup_hash"] if dossier is not None and dossier["lookup_hash"] else "0" * 64
    # compare even when there is no dossier, so that timing does not tell codes apart
    if not hmac.compare_digest(given, stored) or dossier is None:
        raise NotFound(_NOT_FOUND)
    return LookupOut(
        code=dossier["code"],
        status=dossier["status"],
        status_label=DossierStatus(dossier["status"]).label_vi,
        received_at=dossier["received_at"],
        accepted_at=dossier["accepted_at"],
        due_at=dossier["due_at"],
        finished_at=dossier["finished_at"],
        returned_at=dossier["returned_at"],
    )

"""Intake's HTTP API (through the gateway at ``/api/intake/…``)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.events import DossierReceived
from services.intake.models import Dossier, counters, outbox
from services.intake.schemas import Applicant, DossierOut, DossierSubmission
from shared.auth import Caller, allow, current_caller
from shared.db import next_value, request_session
from shared.errors import NotFound, problem_responses
from shared.http import StrictRoute

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")

router = APIRouter(prefix="/dossiers", tags=["dossiers"], route_class=StrictRoute)
Session = Depends(request_session, scope="function")


def _out(d: Dossier) -> DossierOut:
    return DossierOut(
        code=d.code,
        agency=d.agency,
        procedure_code=d.procedure_code,
        status=d.status,
        applicant=Applicant.model_validate(d.applicant),
        received_at=d.received_at,
    )


@router.post(
    "",
    status_code=201,
    response_model=DossierOut,
    responses=problem_responses(401, 403, 422),
    **allow("citizen", "desk_officer"),
)
async def submit_dossier(
    body: DossierSubmission, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> DossierOut:
    """Submit a dossier: online by a citizen (status 1) or at the desk (status 2)."""
    if "desk_officer" in caller.roles:
        caller.require_agency(body.agency)
    now = datetime.now(UTC)
    day = now.astimezone(VIETNAM).strftime("%y%m%d")
    number = await next_value(session, counters, f"dossier:{body.agency}:{day}")
    status = 2 if "desk_officer" in caller.roles else 1
    dossier = Dossier(
        code=f"{body.agency}-{day}-{number:04d}",
        agency=body.agency,
        procedure_code=body.procedure_code,
        status=status,
        applicant=body.applicant.model_dump(),
        received_at=now,
    )
    session.add(dossier)
    await session.flush()
    await outbox.emit(
        session,
        "dossier.received",
        DossierReceived(
            code=dossier.code,
            agency=dossier.agency,
            procedure_code=dossier.procedure_code,
            status=status,
            channel="desk" if status == 2 else "online",
            received_at=now,
        ),
        subject=dossier.code,
        agency=dossier.agency,
    )
    return _out(dossier)


@router.get(
    "/{code}",
    response_model=DossierOut,
    responses=problem_responses(401, 403, 404),
    **allow("desk_officer", "specialist", "leader", "admin"),
)
async def get_dossier(
    code: str, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> DossierOut:
    dossier = (await session.execute(select(Dossier).where(Dossier.code == code))).scalar_one_or_none()
    if dossier is None or not caller.acts_in(dossier.agency):
        raise NotFound(f"no dossier {code}")
    return _out(dossier)

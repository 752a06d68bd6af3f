"""Signing's HTTP API (through the gateway at ``/api/signing/…``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.signing.models import Certificate
from shared.auth import Caller, allow, current_caller
from shared.db import request_session
from shared.errors import problem_responses
from shared.http import StrictRoute

router = APIRouter(prefix="/certificates", tags=["certificates"], route_class=StrictRoute)
Session = Depends(request_session, scope="function")


class CertificateOut(BaseModel):
    serial: str
    kind: str
    subject: str
    agency: str
    not_after: datetime
    revoked_at: datetime | None


@router.get("", response_model=list[CertificateOut], responses=problem_responses(401, 403),
            **allow("leader", "clerk", "admin"))
async def list_certificates(
    caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> list[CertificateOut]:
    """Certificates of the caller's agency subtree."""
    rows = (await session.execute(select(Certificate).order_by(Certificate.id))).scalars().all()
    return [CertificateOut.model_validate(r, from_attributes=True) for r in rows if caller.acts_in(r.agency)]

"""Document's HTTP API (through the gateway at ``/api/document/…``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document.models import WorkFile
from shared.auth import Caller, allow, current_caller
from shared.db import request_session
from shared.errors import NotFound, problem_responses
from shared.http import StrictRoute

router = APIRouter(prefix="/workfiles", tags=["work files"], route_class=StrictRoute)
Session = Depends(request_session, scope="function")


class WorkFileOut(BaseModel):
    id: int
    organ_id: str
    file_catalog: int
    file_notation: str
    title: str
    dossier_code: str | None
    status: str
    opened_at: datetime


@router.get(
    "",
    response_model=list[WorkFileOut],
    responses=problem_responses(401, 403),
    **allow("specialist", "leader", "clerk", "admin"),
)
async def list_work_files(
    dossier_code: str | None = Query(default=None, max_length=30),
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> list[WorkFileOut]:
    """Work dossiers of the caller's agency subtree."""
    query = select(WorkFile).order_by(WorkFile.id).limit(200)
    if dossier_code:
        query = query.where(WorkFile.dossier_code == dossier_code)
    rows = (await session.execute(query)).scalars().all()
    return [WorkFileOut.model_validate(r, from_attributes=True) for r in rows if caller.acts_in(r.organ_id)]


@router.get("/{work_file_id}", response_model=WorkFileOut, responses=problem_responses(401, 403, 404),
            **allow("specialist", "leader", "clerk", "admin"))
async def get_work_file(
    work_file_id: int, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> WorkFileOut:
    row = await session.get(WorkFile, work_file_id)
    if row is None or not caller.acts_in(row.organ_id):
        raise NotFound(f"no work file {work_file_id}")
    return WorkFileOut.model_validate(row, from_attributes=True)

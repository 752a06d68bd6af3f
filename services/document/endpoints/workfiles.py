"""Work dossiers (hồ sơ công việc): list, open, read, close."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import paging
from services.document import service as svc
from services.document import workfiles as rules
from services.document.endpoints.common import STAFF, Session
from services.document.models import WorkFile
from services.document.schemas import (
    WorkFileIn,
    WorkFileOut,
    WorkFilePage,
)
from shared.auth import Caller, allow, current_caller
from shared.errors import problem_responses
from shared.events import Actor
from shared.http import StrictRoute

workfiles = APIRouter(prefix="/workfiles", tags=["work files"], route_class=StrictRoute)


@workfiles.get("", response_model=WorkFilePage, responses=problem_responses(400, 401, 403), **allow(*STAFF))
async def list_work_files(
    dossier_code: str | None = Query(default=None, max_length=30),
    status: Literal["open", "closed"] | None = None,
    organ_id: str | None = Query(default=None, max_length=13, description="only this agency's"),
    file_catalog: int | None = Query(default=None, ge=1900, le=2999, description="year of the file code"),
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Work dossiers of the caller's agency subtree, newest first."""
    query = select(WorkFile)
    after = paging.decode(cursor, int)
    if after:
        query = query.where(WorkFile.id < after[0])
    if organ_id:
        query = query.where(WorkFile.organ_id == organ_id)
    if file_catalog is not None:
        query = query.where(WorkFile.file_catalog == file_catalog)
    clause = svc.agency_filter(caller, WorkFile.organ_id)
    if clause is not None:
        query = query.where(clause)
    if dossier_code:
        query = query.where(WorkFile.dossier_code == dossier_code)
    if status:
        query = query.where(WorkFile.status == status)
    rows = (await session.execute(query.order_by(WorkFile.id.desc()).limit(limit + 1))).scalars().all()
    items, next_ = paging.page(rows, limit, lambda w: w.id)
    return {"items": items, "next": next_}


@workfiles.post(
    "",
    status_code=201,
    response_model=WorkFileOut,
    responses=problem_responses(401, 403, 409),
    **allow("specialist", "leader", "clerk"),
)
async def open_work_file(
    body: WorkFileIn, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> WorkFile:
    """Open a work dossier with file code {OrganId, year, notation}."""
    return await rules.open_work_file(session, caller, body)


@workfiles.get(
    "/{work_file_id}", response_model=WorkFileOut, responses=problem_responses(401, 403, 404), **allow(*STAFF)
)
async def get_work_file(
    work_file_id: int, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> WorkFile:
    row = await rules.get_own(session, caller, work_file_id)
    return row


@workfiles.post(
    "/{work_file_id}/close",
    response_model=WorkFileOut,
    responses=problem_responses(401, 403, 404, 409),
    **allow("specialist", "leader", "clerk"),
)
async def close_work_file(
    work_file_id: int, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> WorkFile:
    """Close the dossier when its matter is over; emits ``workfile.closed``."""
    row = await rules.get_own(session, caller, work_file_id)
    await rules.close_work_file(session, row, at=svc.now_utc(), actor=Actor.of(caller))
    return row


ROUTERS = (workfiles,)

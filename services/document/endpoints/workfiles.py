"""Work dossiers (hồ sơ công việc): list, open, read, close."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import paging
from services.document import service as svc
from services.document.endpoints.common import STAFF, Session
from services.document.lifecycle import WorkFileStatus
from services.document.models import WorkFile
from services.document.schemas import (
    WorkFileIn,
    WorkFileOut,
    WorkFilePage,
)
from shared.auth import Caller, allow, current_caller
from shared.errors import Conflict, NotFound, problem_responses
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
    caller.require_agency(body.organ_id)
    year = body.file_catalog or svc.vietnam_today().year
    exists = (
        await session.execute(
            select(WorkFile.id).where(
                WorkFile.organ_id == body.organ_id,
                WorkFile.file_catalog == year,
                WorkFile.file_notation == body.file_notation,
            )
        )
    ).first()
    if exists:
        raise Conflict("a work file with this code already exists")
    row = WorkFile(
        organ_id=body.organ_id,
        file_catalog=year,
        file_notation=body.file_notation,
        title=body.title,
        dossier_code=None,
        status=WorkFileStatus.OPEN,
        opened_at=svc.now_utc(),
    )
    session.add(row)
    await session.flush()
    await svc.emit_opened(session, row, actor=Actor.of(caller))
    return row


@workfiles.get(
    "/{work_file_id}", response_model=WorkFileOut, responses=problem_responses(401, 403, 404), **allow(*STAFF)
)
async def get_work_file(
    work_file_id: int, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> WorkFile:
    row = await session.get(WorkFile, work_file_id)
    if row is None or not caller.acts_in(row.organ_id):
        raise NotFound(f"no work file {work_file_id}")
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
    row = await session.get(WorkFile, work_file_id)
    if row is None or not caller.acts_in(row.organ_id):
        raise NotFound(f"no work file {work_file_id}")
    await svc.close_work_file(session, row, at=svc.now_utc(), actor=Actor.of(caller))
    return row


ROUTERS = (workfiles,)

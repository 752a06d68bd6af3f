"""Documents themselves: start a draft, register an incoming one, search, read, edit a draft."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import incoming, outgoing, paging
from services.document import service as svc
from services.document.endpoints.common import STAFF, Session, etag
from services.document.models import Document
from services.document.schemas import (
    DocumentOut,
    DocumentPage,
    DraftIn,
    DraftPatch,
    IncomingIn,
)
from shared.auth import Caller, allow, current_caller
from shared.errors import problem_responses
from shared.http import IfMatch, StrictRoute, check_if_match, etag_for

documents = APIRouter(prefix="/documents", tags=["documents"], route_class=StrictRoute)


@documents.post(
    "",
    status_code=201,
    response_model=DocumentOut,
    responses=problem_responses(401, 403, 404, 422),
    **allow("specialist", "leader", "clerk"),
)
async def create_draft(
    body: DraftIn, response: Response, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> dict[str, Any]:
    """Start a draft (dự thảo) of an outgoing document, optionally inside a work dossier."""
    doc = await outgoing.create_draft(session, caller, body)
    etag(response, doc)
    return svc.to_out(doc)


@documents.post(
    "/incoming",
    status_code=201,
    response_model=DocumentOut,
    responses=problem_responses(401, 403, 422),
    **allow("clerk"),
)
async def register_incoming(
    body: IncomingIn, response: Response, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> dict[str, Any]:
    """Register an incoming document (văn bản đến): arrival number of the year; a duplicate
    (number, symbol, issuing agency) is reported in ``warnings``, not refused."""
    doc = await incoming.register(session, caller, body)
    etag(response, doc)
    return svc.to_out(doc)


@documents.get("", response_model=DocumentPage, responses=problem_responses(400, 401, 403), **allow(*STAFF, "auditor"))
async def search_documents(
    q: str | None = Query(default=None, max_length=200, description="words, diacritics optional"),
    direction: Literal["incoming", "outgoing"] | None = None,
    status: str | None = Query(default=None, max_length=20),
    type_key: str | None = Query(default=None, max_length=20),
    agency: str | None = Query(default=None, max_length=13),
    urgency: Literal["thuong", "khan", "thuong_khan", "hoa_toc"] | None = None,
    date_from: date | None = Query(default=None, description="issued or arrival date, from"),
    date_to: date | None = None,
    dossier_code: str | None = Query(default=None, max_length=30),
    work_file_id: int | None = None,
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Search and list, newest first; a document above the caller's clearance or outside their
    agency is absent."""
    query = svc.visible_query(caller)
    after = paging.decode(cursor, int)
    if after:
        query = query.where(Document.id < after[0])
    for word in svc.folded_words(q or ""):
        query = query.where(Document.search_text.like(f"%{word}%"))
    if direction:
        query = query.where(Document.direction == direction)
    if status:
        query = query.where(Document.status == status)
    if type_key:
        query = query.where(Document.type_key == type_key)
    if agency:
        query = query.where(Document.agency == agency)
    if urgency:
        query = query.where(Document.urgency == urgency)
    if dossier_code:
        query = query.where(Document.dossier_code == dossier_code)
    if work_file_id is not None:
        query = query.where(Document.work_file_id == work_file_id)
    if date_from:
        query = query.where(or_(Document.issued_date >= date_from, Document.arrival_date >= svc.start_of(date_from)))
    if date_to:
        query = query.where(or_(Document.issued_date <= date_to, Document.arrival_date < svc.end_of(date_to)))
    rows = (await session.execute(query.order_by(Document.id.desc()).limit(limit + 1))).scalars().all()
    items, next_ = paging.page(rows, limit, lambda d: d.id)
    return {"items": [svc.to_out(d) for d in items], "next": next_}


@documents.get(
    "/{document_id}", response_model=DocumentOut, responses=problem_responses(401, 403, 404), **allow(*STAFF, "auditor")
)
async def get_document(
    document_id: int, response: Response, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> dict[str, Any]:
    doc = await svc.get_visible(session, caller, document_id)
    etag(response, doc)
    return svc.to_out(doc)


@documents.patch(
    "/{document_id}",
    response_model=DocumentOut,
    responses=problem_responses(401, 403, 404, 409, 412, 428),
    **allow("specialist", "leader", "clerk"),
)
async def update_draft(
    document_id: int,
    body: DraftPatch,
    response: Response,
    if_match: IfMatch = None,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Change a draft's metadata (If-Match required)."""
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    check_if_match(if_match, etag_for(doc.version))
    await outgoing.edit_draft(session, doc, body)
    etag(response, doc)
    return svc.to_out(doc)


ROUTERS = (documents,)

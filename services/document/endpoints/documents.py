"""Documents themselves: start a draft, register an incoming one, search, read, edit a draft."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import lifecycle, paging
from services.document import service as svc
from services.document.doctypes import Secrecy
from services.document.endpoints.common import STAFF, Session, etag
from services.document.events import DocumentDrafted
from services.document.lifecycle import Status, Step
from services.document.models import Document, WorkFile, outbox
from services.document.numbering import parse_code
from services.document.schemas import (
    DocumentOut,
    DocumentPage,
    DraftIn,
    DraftPatch,
    IncomingIn,
)
from shared.auth import Caller, allow, current_caller
from shared.errors import Forbidden, NotFound, Unprocessable, problem_responses
from shared.events import Actor
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
    caller.require_agency(body.agency)
    kind = svc.doc_type(body.type_key)
    secrecy = Secrecy.from_code(body.secrecy)
    if not caller.may_see_secrecy(secrecy.rank):
        raise Forbidden("you are not cleared for that secrecy level")
    dossier_code = body.dossier_code
    if body.work_file_id is not None:
        work_file = await session.get(WorkFile, body.work_file_id)
        if work_file is None or not caller.acts_in(work_file.organ_id):
            raise NotFound(f"no work file {body.work_file_id}")
        lifecycle.check(Step.FILE_IN_WORK_FILE, work_file)
        if dossier_code and work_file.dossier_code and dossier_code != work_file.dossier_code:
            raise Unprocessable("dossier_code differs from the work file's")
        dossier_code = dossier_code or work_file.dossier_code
    doc = svc.new_document(
        direction="outgoing",
        agency=body.agency,
        status=Status.DRAFT,
        type_key=kind.key,
        type_name=kind.name,
        subject=body.subject,
        secrecy=secrecy.code,
        urgency=body.urgency,
        language=body.language,
        page_amount=body.page_amount,
        unit_abbr=body.unit_abbr,
        signer_position=body.signer.position if body.signer else None,
        signer_name=body.signer.full_name if body.signer else None,
        due_date=body.due_date,
        work_file_id=body.work_file_id,
        dossier_code=dossier_code,
        created_by=caller.sub,
    )
    doc.recipients = [r.model_dump() for r in body.recipients]
    doc.to_places = list(body.to_places)
    session.add(doc)
    await session.flush()
    await outbox.emit(
        session,
        "document.drafted",
        DocumentDrafted(
            id=doc.id,
            agency=doc.agency,
            type_key=doc.type_key,
            type_name=doc.type_name,
            subject=None if secrecy.is_secret else doc.subject,
            secret=secrecy.is_secret,
            urgency=doc.urgency,
            work_file_id=doc.work_file_id,
            dossier_code=doc.dossier_code,
            created_at=doc.created_at,
            actor=Actor.of(caller),
        ),
        subject=f"document:{doc.id}",
        agency=doc.agency,
    )
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
    caller.require_agency(body.agency)
    kind = svc.doc_type(body.type_key)
    secrecy = Secrecy.from_code(body.secrecy)
    if not caller.may_see_secrecy(secrecy.rank):
        raise Forbidden("you are not cleared for that secrecy level")
    code_text = code_notation = None
    code_number = None
    if body.code:
        try:
            code = parse_code(body.code, cong_van=kind.is_cong_van or None, strict=False)
        except ValueError as exc:
            raise Unprocessable(f"code: {exc}") from exc
        code_text, code_number, code_notation = str(code), code.number, code.notation
    doc = svc.new_document(
        direction="incoming",
        agency=body.agency,
        status=Status.RECEIVED,
        type_key=kind.key,
        type_name=kind.name,
        subject=body.subject,
        secrecy=secrecy.code,
        urgency=body.urgency,
        page_amount=body.page_amount,
        code_text=code_text,
        code_number=code_number,
        code_notation=code_notation,
        issued_date=body.issued_date,
        issuing_organ_id=body.issuing_organ.organ_id,
        issuing_organ_name=body.issuing_organ.organ_name,
        signer_position=body.signer.position if body.signer else None,
        signer_name=body.signer.full_name if body.signer else None,
        due_date=body.due_date,
        notes=body.notes,
        created_by=caller.sub,
    )
    session.add(doc)
    await session.flush()
    await svc.register_incoming(session, doc, at=svc.now_utc(), actor=Actor.of(caller))
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
    lifecycle.check(Step.EDIT, doc)
    changes = body.model_dump(exclude_unset=True)
    signer = changes.pop("signer", None)
    if signer is not None:
        doc.signer_position, doc.signer_name = signer["position"], signer["full_name"]
    for name, value in changes.items():
        setattr(doc, name, value)
    svc.touch(doc)
    await session.flush()
    etag(response, doc)
    return svc.to_out(doc)


ROUTERS = (documents,)

"""Document's HTTP API (through the gateway at ``/api/document/…``): documents and their files,
numbering and the issue flow, incoming registration and processing, registers, work dossiers."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import lifecycle, paging
from services.document import publish as publication
from services.document import service as svc
from services.document.doctypes import Secrecy
from services.document.events import DocumentAssigned, DocumentDrafted, DocumentRecalled, Organ
from services.document.lifecycle import AssignmentStatus, Status, Step, WorkFileStatus
from services.document.models import Assignment, Attachment, Comment, ContentVersion, Document, WorkFile, outbox
from services.document.numbering import parse_code
from services.document.schemas import (
    AssignIn,
    AssignmentOut,
    AssignmentPage,
    AttachmentOut,
    AttachmentPage,
    CommentIn,
    CommentOut,
    CommentPage,
    ContentOut,
    ContentPage,
    DocumentOut,
    DocumentPage,
    DraftIn,
    DraftPatch,
    IncomingIn,
    NumberOut,
    PublishIn,
    PublishOut,
    RecallIn,
    WorkFileIn,
    WorkFileOut,
    WorkFilePage,
)
from shared import organ_id
from shared.auth import Caller, allow, current_caller
from shared.db import request_session
from shared.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable, problem_responses
from shared.events import Actor
from shared.http import IfMatch, StrictRoute, check_if_match, etag_for, raw_body_route

Session = Depends(request_session, scope="function")
STAFF = svc.STAFF

router = APIRouter(prefix="/documents", tags=["documents"], route_class=StrictRoute)
workfiles = APIRouter(prefix="/workfiles", tags=["work files"], route_class=StrictRoute)
registers = APIRouter(prefix="/registers", tags=["registers"], route_class=StrictRoute)
assignments = APIRouter(prefix="/assignments", tags=["processing"], route_class=StrictRoute)


def _etag(response: Response, doc: Document) -> None:
    response.headers["ETag"] = etag_for(doc.version)


def _agency_filter(caller: Caller, column: Any) -> Any:
    """The caller's agency subtree as SQL: an OrganId is read right to left, so a subtree is a suffix."""
    if "service" in caller.roles:
        return None
    if caller.agency is None:
        return column.is_(None) & column.is_not(None)  # nothing
    depth = organ_id.level(caller.agency)
    if depth == 4:
        return column == caller.agency
    return column.like("%." + ".".join(caller.agency.split(".")[-depth:]))


def _visible_query(caller: Caller) -> Select[tuple[Document]]:
    query = select(Document).where(Document.secrecy_rank <= caller.clearance)
    clause = _agency_filter(caller, Document.agency)
    return query if clause is None else query.where(clause)


def _require_role(caller: Caller, *roles: str) -> None:
    if not caller.has_any(*roles, "service"):
        raise Forbidden(f"this step needs one of the roles: {', '.join(roles)}")


# --- documents ---------------------------------------------------------------------------------


@router.post(
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
    _etag(response, doc)
    return svc.to_out(doc)


@router.post(
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
    _etag(response, doc)
    return svc.to_out(doc)


@router.get("", response_model=DocumentPage, responses=problem_responses(400, 401, 403), **allow(*STAFF, "auditor"))
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
    query = _visible_query(caller)
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


@router.get(
    "/{document_id}", response_model=DocumentOut, responses=problem_responses(401, 403, 404), **allow(*STAFF, "auditor")
)
async def get_document(
    document_id: int, response: Response, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> dict[str, Any]:
    doc = await svc.get_visible(session, caller, document_id)
    _etag(response, doc)
    return svc.to_out(doc)


@router.patch(
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
    _etag(response, doc)
    return svc.to_out(doc)


# Who may upload the version that puts a document in each stage.
_UPLOADERS: dict[str, tuple[str, ...]] = {
    Status.DRAFT: ("specialist", "leader", "clerk"),
    Status.SIGNED_BY_LEADER: ("leader",),
    Status.NUMBERED: ("clerk",),
    Status.SEALED: ("clerk",),
}


@router.post(
    "/{document_id}/content",
    status_code=201,
    response_model=ContentOut,
    responses=problem_responses(401, 403, 404, 409, 412, 413, 415, 422, 428),
    **raw_body_route("application/pdf", "specialist", "leader", "clerk"),
)
async def upload_content(
    document_id: int,
    request: Request,
    response: Response,
    stage: Literal["draft", "signed_by_leader", "numbered", "sealed"] | None = Query(
        default=None, description="the state this version puts the document in; default: unchanged"
    ),
    filename: str = Query(default="van-ban.pdf", max_length=200),
    if_match: IfMatch = None,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> ContentVersion:
    """A new version of the main file, the raw PDF as the body (If-Match required).

    ``signed_by_leader``: the leader's signed PDF (≥ 1 signature). ``numbered``: the PDF with the
    number written in; ``sealed``: with the organisation's signature. After the leader has signed,
    every version must append to the previous one (incremental update) so that signature stays valid.
    """
    kit = svc.toolkit(request)
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    check_if_match(if_match, etag_for(doc.version))
    step = Step.UPLOAD if stage is None else lifecycle.UPLOADS[stage]
    lifecycle.check(step, doc)
    target = stage or doc.status
    _require_role(caller, *_UPLOADERS[target])
    previous = await svc.latest_content(session, doc)
    staged = await svc.spool_upload(request, kit)
    svc.require_pdf(staged)
    try:
        signatures = svc.count_signatures(staged.path)
        if target == Status.SIGNED_BY_LEADER and signatures < 1:
            raise Unprocessable("the leader's version must carry a signature")
        if target == Status.SEALED and (previous is None or signatures <= previous.signatures):
            raise Unprocessable("the sealed version must add the organisation's signature")
        if doc.status != Status.DRAFT and previous is not None and kit.settings.require_incremental_updates:
            if not svc.starts_with_blob(kit, previous, staged.path):
                raise Unprocessable(
                    "this version does not append to the previous one (incremental update): it would "
                    "invalidate the signatures already made"
                )
    except BaseException:
        staged.discard()
        raise
    blob = svc.commit_blob(kit, staged, secret=svc.secrecy_of(doc).is_secret)
    doc.content_version += 1
    version = ContentVersion(
        document_id=doc.id,
        number=doc.content_version,
        sha256=staged.sha256,
        blob=blob,
        size=staged.size,
        media_type="application/pdf",
        filename=filename,
        signatures=signatures,
        stage=target,
        uploaded_by=caller.sub,
        uploaded_at=svc.now_utc(),
    )
    session.add(version)
    lifecycle.move(step, doc)
    svc.touch(doc)
    await session.flush()
    _etag(response, doc)
    return version


@router.get(
    "/{document_id}/versions",
    response_model=ContentPage,
    responses=problem_responses(400, 401, 403, 404),
    **allow(*STAFF, "auditor"),
)
async def list_versions(
    document_id: int,
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """The main file's versions, oldest first."""
    doc = await svc.get_visible(session, caller, document_id)
    query = select(ContentVersion).where(ContentVersion.document_id == doc.id)
    after = paging.decode(cursor, int)
    if after:
        query = query.where(ContentVersion.number > after[0])
    rows = (await session.execute(query.order_by(ContentVersion.number).limit(limit + 1))).scalars().all()
    items, next_ = paging.page(rows, limit, lambda v: v.number)
    return {"items": items, "next": next_}


def _download(kit: svc.Toolkit, blob: str, *, media_type: str, filename: str, sha256: str) -> Response:
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(filename)}",
        "ETag": f'"{sha256}"',
        "Cache-Control": "private, no-store",
    }
    if blob.endswith(".enc"):
        # AES-GCM authenticates the whole file, so a secret file is decrypted whole, then sent.
        return Response(svc.read_blob(kit, blob), media_type=media_type, headers=headers)
    return StreamingResponse(kit.blobs.iter_chunks(blob), media_type=media_type, headers=headers)


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@router.get(
    "/{document_id}/content",
    response_class=Response,
    responses=problem_responses(401, 403, 404),
    **allow(*STAFF, "auditor", "desk_officer"),
)
async def download_content(
    document_id: int,
    request: Request,
    version: int | None = Query(default=None, ge=1),
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Response:
    """The main file (latest version unless ``version``), streamed.

    The one-stop-shop desk hands results to citizens, so a desk officer may fetch issued
    documents of their agency — and nothing still in drafting."""
    doc = await svc.get_visible(session, caller, document_id)
    if not caller.has_any(*STAFF, "auditor") and doc.status != Status.ISSUED:
        raise NotFound(f"no document {document_id}")
    number = version or doc.content_version
    row = (
        await session.execute(
            select(ContentVersion).where(ContentVersion.document_id == doc.id, ContentVersion.number == number)
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("no such content version")
    return _download(
        svc.toolkit(request), row.blob, media_type=row.media_type, filename=row.filename, sha256=row.sha256
    )


@router.post(
    "/{document_id}/attachments",
    status_code=201,
    response_model=AttachmentOut,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
    **raw_body_route("application/octet-stream", "specialist", "leader", "clerk"),
)
async def add_attachment(
    document_id: int,
    request: Request,
    name: str = Query(min_length=1, max_length=200),
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Attachment:
    """An attachment (the raw file as the body); its type is detected from the bytes."""
    import filetype

    kit = svc.toolkit(request)
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    lifecycle.check(Step.ATTACH, doc)
    staged = await svc.spool_upload(request, kit)
    with staged.path.open("rb") as f:
        kind = filetype.guess(f.read(8192))
    media_type = kind.mime if kind else "application/octet-stream"
    blob = svc.commit_blob(kit, staged, secret=svc.secrecy_of(doc).is_secret)
    row = Attachment(
        document_id=doc.id,
        name=name,
        sha256=staged.sha256,
        blob=blob,
        size=staged.size,
        media_type=media_type,
        uploaded_by=caller.sub,
        uploaded_at=svc.now_utc(),
    )
    session.add(row)
    svc.touch(doc)
    await session.flush()
    return row


@router.get(
    "/{document_id}/attachments",
    response_model=AttachmentPage,
    responses=problem_responses(400, 401, 403, 404),
    **allow(*STAFF, "auditor"),
)
async def list_attachments(
    document_id: int,
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    doc = await svc.get_visible(session, caller, document_id)
    query = select(Attachment).where(Attachment.document_id == doc.id)
    after = paging.decode(cursor, int)
    if after:
        query = query.where(Attachment.id > after[0])
    rows = (await session.execute(query.order_by(Attachment.id).limit(limit + 1))).scalars().all()
    items, next_ = paging.page(rows, limit, lambda a: a.id)
    return {"items": items, "next": next_}


@router.get(
    "/{document_id}/attachments/{attachment_id}",
    response_class=Response,
    responses=problem_responses(401, 403, 404),
    **allow(*STAFF, "auditor"),
)
async def download_attachment(
    document_id: int,
    attachment_id: int,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Response:
    doc = await svc.get_visible(session, caller, document_id)
    row = await session.get(Attachment, attachment_id)
    if row is None or row.document_id != doc.id:
        raise NotFound("no such attachment")
    return _download(svc.toolkit(request), row.blob, media_type=row.media_type, filename=row.name, sha256=row.sha256)


@router.post(
    "/{document_id}/number",
    response_model=NumberOut,
    responses=problem_responses(401, 403, 404, 409, 422),
    **allow("clerk"),
)
async def number_document(
    document_id: int,
    request: Request,
    response: Response,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> NumberOut:
    """Assign the number (cấp số) of the document's series: only once, after the leader signed.
    The answer is what the signing service writes into the PDF's prepared field."""
    kit = svc.toolkit(request)
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    await svc.number_once(session, doc, settings=kit.settings, actor=Actor.of(caller))
    _etag(response, doc)
    code = doc.code_text or ""
    notation = doc.code_notation or ""
    return NumberOut(
        id=doc.id,
        number=doc.code_number or 0,
        code=code,
        code_number=code[: len(code) - len(notation) - 1],
        code_notation=notation,
        series=doc.series_key or "",
        issued_date=doc.issued_date or svc.vietnam_today(),
        version=doc.version,
    )


@router.post(
    "/{document_id}/issue",
    response_model=DocumentOut,
    responses=problem_responses(401, 403, 404, 409),
    **allow("clerk"),
)
async def issue_document(
    document_id: int,
    response: Response,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Issue (ban hành): needs the number and a version uploaded after numbering (the number
    written in, the organisation's signature). Emits ``document.issued``."""
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    await svc.issue(session, doc, actor=Actor.of(caller))
    _etag(response, doc)
    return svc.to_out(doc)


@router.post(
    "/{document_id}/publish",
    response_model=PublishOut,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 423, 503),
    **allow("clerk"),
)
async def publish_document(
    document_id: int,
    request: Request,
    response: Response,
    body: PublishIn | None = None,
    pin: str = Header(
        alias=publication.PIN_HEADER, min_length=1, max_length=64, description="the PIN of the agency's seal"
    ),
    idempotency_key: str | None = Header(
        default=None, alias="Idempotency-Key", min_length=1, max_length=200,
        description="a replay with the same key answers the first call's result",
    ),
    caller: Caller = Depends(current_caller),
) -> dict[str, Any]:
    """The clerk's one call (ban hành): for a document the leader signed, take its number,
    have signing write the number in and apply the agency's seal (with your token and PIN),
    store both versions and issue it (``document.issued``).

    Resumable: if it stops after numbering (a wrong PIN, signing unreachable), the document
    keeps its number and the next call continues from there — never a second number. Not yet
    signed by the leader, already issued, no usable seal: 4xx and nothing changed. The single
    steps (``/number``, ``/content``, ``/issue``) stay available."""
    kit = svc.toolkit(request)
    signing = publication.SigningApi(
        base_url=kit.settings.resolved_signing_url,
        authorization=request.headers.get("authorization", ""),
        timeout=kit.settings.signing_timeout_seconds,
    )
    req = publication.Request(
        document_id=document_id,
        caller=caller,
        pin=pin,
        seal_certificate=body.seal_certificate if body else None,
        idempotency_key=idempotency_key,
    )
    async with signing:
        answer, etag = await publication.publish(db=request.app.state.runtime.db, kit=kit, signing=signing, req=req)
    response.headers["ETag"] = etag
    return answer


@router.post(
    "/{document_id}/recall",
    response_model=DocumentOut,
    responses=problem_responses(401, 403, 404, 409),
    **allow("clerk", "leader"),
)
async def recall_document(
    document_id: int,
    body: RecallIn,
    response: Response,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Recall (thu hồi) an issued document; receivers in this deployment lose their copy."""
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    lifecycle.move(Step.RECALL, doc)
    now = svc.now_utc()
    doc.recalled_at = now
    svc.touch(doc)
    await session.flush()
    await outbox.emit(
        session,
        "document.recalled",
        DocumentRecalled(
            id=doc.id,
            agency=doc.agency,
            code=doc.code_text,
            recipients=[Organ(**r) for r in doc.recipients],
            reason=None if svc.secrecy_of(doc).is_secret else body.reason,
            recalled_at=now,
            actor=Actor.of(caller),
        ),
        subject=f"document:{doc.id}",
        agency=doc.agency,
    )
    _etag(response, doc)
    return svc.to_out(doc)


# --- processing ------------------------------------------------------------------------------


def _assignment_out(row: Assignment, today: date) -> dict[str, Any]:
    data = {c.key: getattr(row, c.key) for c in Assignment.__table__.columns}
    data["overdue"] = row.status == AssignmentStatus.OPEN and row.due_date < today
    return data


@router.post(
    "/{document_id}/assignments",
    status_code=201,
    response_model=AssignmentOut,
    responses=problem_responses(401, 403, 404, 409),
    **allow("leader"),
)
async def assign(
    document_id: int,
    body: AssignIn,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Assign an incoming document (giao xử lý) with a due date; without one, the urgency's
    configured number of working days from today."""
    kit = svc.toolkit(request)
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    lifecycle.check(Step.ASSIGN, doc)
    today = svc.vietnam_today()
    due = body.due_date or kit.calendar.add_working_days(today, kit.settings.processing_days.get(doc.urgency, 10))
    if due < today:
        raise Unprocessable("the due date is in the past")
    row = Assignment(
        document_id=doc.id,
        agency=doc.agency,
        assignee=body.assignee,
        assignee_name=body.assignee_name or body.assignee,
        role=body.role,
        assigned_by=caller.sub,
        note=body.note,
        due_date=due,
        status=AssignmentStatus.OPEN,
        assigned_at=svc.now_utc(),
    )
    session.add(row)
    lifecycle.move(Step.ASSIGN, doc)
    svc.touch(doc)
    await session.flush()
    secret = svc.secrecy_of(doc).is_secret
    await outbox.emit(
        session,
        "document.assigned",
        DocumentAssigned(
            id=row.id,
            document_id=doc.id,
            agency=doc.agency,
            assignee=row.assignee,
            role=row.role,
            due_date=due,
            urgency=doc.urgency,
            subject=None if secret else doc.subject,
            actor=Actor.of(caller),
        ),
        subject=f"document:{doc.id}",
        agency=doc.agency,
    )
    return _assignment_out(row, today)


@router.get(
    "/{document_id}/assignments",
    response_model=AssignmentPage,
    responses=problem_responses(400, 401, 403, 404),
    **allow(*STAFF),
)
async def document_assignments(
    document_id: int,
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    doc = await svc.get_visible(session, caller, document_id)
    query = select(Assignment).where(Assignment.document_id == doc.id)
    after = paging.decode(cursor, int)
    if after:
        query = query.where(Assignment.id > after[0])
    rows = (await session.execute(query.order_by(Assignment.id).limit(limit + 1))).scalars().all()
    items, next_ = paging.page(rows, limit, lambda a: a.id)
    today = svc.vietnam_today()
    return {"items": [_assignment_out(r, today) for r in items], "next": next_}


@router.post(
    "/{document_id}/comments",
    status_code=201,
    response_model=CommentOut,
    responses=problem_responses(401, 403, 404),
    **allow(*STAFF),
)
async def add_comment(
    document_id: int, body: CommentIn, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> Comment:
    """An opinion on the document (ý kiến xử lý)."""
    doc = await svc.get_visible(session, caller, document_id)
    row = Comment(
        document_id=doc.id, author=caller.sub, author_name=caller.name, text=body.text, created_at=svc.now_utc()
    )
    session.add(row)
    await session.flush()
    return row


@router.get(
    "/{document_id}/comments",
    response_model=CommentPage,
    responses=problem_responses(400, 401, 403, 404),
    **allow(*STAFF),
)
async def list_comments(
    document_id: int,
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    doc = await svc.get_visible(session, caller, document_id)
    query = select(Comment).where(Comment.document_id == doc.id)
    after = paging.decode(cursor, int)
    if after:
        query = query.where(Comment.id > after[0])
    rows = (await session.execute(query.order_by(Comment.id).limit(limit + 1))).scalars().all()
    items, next_ = paging.page(rows, limit, lambda c: c.id)
    return {"items": items, "next": next_}


@assignments.get("", response_model=AssignmentPage, responses=problem_responses(400, 401, 403), **allow(*STAFF))
async def list_assignments(
    mine: bool = Query(default=False, description="only those assigned to me"),
    overdue: bool = Query(default=False, description="only open ones past their due date"),
    status: Literal["open", "completed"] | None = None,
    assignee: str | None = Query(default=None, max_length=100, description="user id (sub) of the assignee"),
    document_id: int | None = None,
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Processing work in the caller's agency, soonest due first; ``overdue=true`` is the
    overdue list."""
    today = svc.vietnam_today()
    query = (
        select(Assignment)
        .join(Document, Document.id == Assignment.document_id)
        .where(Document.secrecy_rank <= caller.clearance)
    )
    clause = _agency_filter(caller, Assignment.agency)
    if clause is not None:
        query = query.where(clause)
    if mine:
        query = query.where(Assignment.assignee == caller.sub)
    if overdue:
        query = query.where(Assignment.status == AssignmentStatus.OPEN, Assignment.due_date < today)
    elif status:
        query = query.where(Assignment.status == status)
    if assignee:
        query = query.where(Assignment.assignee == assignee)
    if document_id is not None:
        query = query.where(Assignment.document_id == document_id)
    after = paging.decode(cursor, str, int)
    if after:
        try:
            due = date.fromisoformat(after[0])
        except ValueError:
            raise BadRequest("not a cursor this API gave out") from None
        query = query.where(
            or_(Assignment.due_date > due, and_(Assignment.due_date == due, Assignment.id > after[1]))
        )
    rows = (
        (await session.execute(query.order_by(Assignment.due_date, Assignment.id).limit(limit + 1))).scalars().all()
    )
    items, next_ = paging.page(rows, limit, lambda a: (a.due_date.isoformat(), a.id))
    return {"items": [_assignment_out(r, today) for r in items], "next": next_}


@assignments.post(
    "/{assignment_id}/complete",
    response_model=AssignmentOut,
    responses=problem_responses(401, 403, 404, 409),
    **allow(*STAFF),
)
async def complete_assignment(
    assignment_id: int, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> dict[str, Any]:
    """The assignee (or a leader) marks the work done."""
    row = await session.get(Assignment, assignment_id)
    if row is None:
        raise NotFound(f"no assignment {assignment_id}")
    doc = await svc.get_visible(session, caller, row.document_id, lock=True)
    if row.assignee != caller.sub and not caller.has_any("leader", "service"):
        raise Forbidden("only the assignee or a leader completes this")
    lifecycle.move(Step.COMPLETE_ASSIGNMENT, row)
    row.completed_at = svc.now_utc()
    open_left = (
        await session.execute(
            select(Assignment.id).where(
                Assignment.document_id == doc.id,
                Assignment.status == AssignmentStatus.OPEN,
                Assignment.role == "main",
                Assignment.id != row.id,
            )
        )
    ).first()
    if open_left is None and row.role == "main":
        lifecycle.move(Step.COMPLETE, doc)
        svc.touch(doc)
    await session.flush()
    return _assignment_out(row, svc.vietnam_today())


# --- registers (annex IV) ---------------------------------------------------------------------

OUTGOING_COLUMNS = (
    ("so_ky_hieu", "Số, ký hiệu văn bản"),
    ("ngay_thang", "Ngày tháng văn bản"),
    ("ten_loai_trich_yeu", "Tên loại và trích yếu nội dung"),
    ("nguoi_ky", "Người ký"),
    ("noi_nhan", "Nơi nhận văn bản"),
    ("don_vi_luu", "Đơn vị, người nhận bản lưu"),
    ("so_luong_ban", "Số lượng bản"),
    ("ngay_chuyen", "Ngày chuyển"),
    ("ghi_chu", "Ghi chú"),
)
INCOMING_COLUMNS = (
    ("ngay_den", "Ngày đến"),
    ("so_den", "Số đến"),
    ("tac_gia", "Tác giả"),
    ("so_ky_hieu", "Số, ký hiệu"),
    ("ngay_thang", "Ngày tháng"),
    ("ten_loai_trich_yeu", "Tên loại và trích yếu nội dung"),
    ("don_vi_nguoi_nhan", "Đơn vị hoặc người nhận"),
    ("ngay_chuyen", "Ngày chuyển"),
    ("ghi_chu", "Ghi chú"),
)


def _vn_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = svc.vietnam_today(value)
    return value.strftime("%d/%m/%Y")


def _register_response(
    rows: list[dict[str, str]], columns: tuple[tuple[str, str], ...], fmt: str, name: str, next_: str | None
) -> Any:
    if fmt == "json":
        return {"columns": [{"key": k, "title": t} for k, t in columns], "rows": rows, "next": next_}
    out = io.StringIO()
    out.write("\ufeff")  # so that spreadsheet programs read the Vietnamese as UTF-8
    writer = csv.writer(out)
    writer.writerow([t for _, t in columns])
    for row in rows:
        writer.writerow([row[k] for k, _ in columns])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# A CSV register is the whole year's book; it is read in keyset batches of this size.
_CSV_BATCH = 1000


async def _register_pages(
    session: AsyncSession, query: Select[tuple[Document]], fmt: str, limit: int, cursor: str | None, order: Any
) -> tuple[list[Document], str | None]:
    """One page of a register (JSON), or every entry of the year (CSV), in register order."""
    docs: list[Document] = []
    after = paging.decode(cursor, *order.types) if fmt == "json" else None
    batch = limit if fmt == "json" else _CSV_BATCH
    while True:
        page_query = query if after is None else query.where(order.after(after))
        rows = (await session.execute(page_query.order_by(*order.columns).limit(batch + 1))).scalars().all()
        items, next_ = paging.page(rows, batch, order.key)
        docs.extend(items)
        if fmt == "json" or next_ is None:
            return docs, next_
        after = order.key(items[-1])


class _OutgoingOrder:
    """Sổ văn bản đi: by series, then number."""

    types = (str, int)
    columns = (Document.series_key, Document.code_number)

    @staticmethod
    def key(d: Document) -> tuple[str, int]:
        return (d.series_key or "", d.code_number or 0)

    @staticmethod
    def after(key: tuple[Any, ...]) -> Any:
        return or_(
            Document.series_key > key[0], and_(Document.series_key == key[0], Document.code_number > key[1])
        )


class _IncomingOrder:
    """Sổ văn bản đến: by arrival number."""

    types = (int,)
    columns = (Document.arrival_number,)

    @staticmethod
    def key(d: Document) -> tuple[int]:
        return (d.arrival_number or 0,)

    @staticmethod
    def after(key: tuple[Any, ...]) -> Any:
        return Document.arrival_number > key[0]


@registers.get(
    "/outgoing", responses=problem_responses(400, 401, 403), **allow("clerk", "leader", "admin", "auditor")
)
async def outgoing_register(
    agency: str = Query(max_length=13),
    year: int = Query(ge=1900, le=2999),
    format: Literal["json", "csv"] = "json",
    limit: int = Query(default=500, ge=1, le=1000, description="rows per page (JSON; CSV is the whole year)"),
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Any:
    """Sổ đăng ký văn bản đi of one agency and year, in number order: JSON pages
    (``{columns, rows, next}``) or the whole year as CSV."""
    caller.require_agency(agency)
    query = _visible_query(caller).where(
        Document.agency == agency,
        Document.direction == "outgoing",
        Document.code_number.is_not(None),
        Document.series_key.like(f"{year}/%"),
    )
    docs, next_ = await _register_pages(session, query, format, limit, cursor, _OutgoingOrder)
    rows = []
    for d in docs:
        rows.append(
            {
                "so_ky_hieu": d.code_text or "",
                "ngay_thang": _vn_date(d.issued_date),
                "ten_loai_trich_yeu": f"{d.type_name}: {d.subject}",
                "nguoi_ky": d.signer_name or "",
                "noi_nhan": "; ".join(r.get("organ_name") or r["organ_id"] for r in d.recipients)
                or "; ".join(d.to_places),
                "don_vi_luu": d.unit_abbr or "",
                "so_luong_ban": "1",
                "ngay_chuyen": _vn_date(d.issued_at),
                "ghi_chu": "Đã thu hồi"
                if d.status == Status.RECALLED
                else ("" if d.status == Status.ISSUED else "Chưa ban hành"),
            }
        )
    return _register_response(rows, OUTGOING_COLUMNS, format, f"so-van-ban-di-{year}", next_)


@registers.get(
    "/incoming", responses=problem_responses(400, 401, 403), **allow("clerk", "leader", "admin", "auditor")
)
async def incoming_register(
    agency: str = Query(max_length=13),
    year: int = Query(ge=1900, le=2999),
    format: Literal["json", "csv"] = "json",
    limit: int = Query(default=500, ge=1, le=1000, description="rows per page (JSON; CSV is the whole year)"),
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Any:
    """Sổ đăng ký văn bản đến of one agency and year, in arrival-number order: JSON pages
    (``{columns, rows, next}``) or the whole year as CSV."""
    caller.require_agency(agency)
    query = _visible_query(caller).where(
        Document.agency == agency,
        Document.direction == "incoming",
        Document.arrival_series == f"{year}/{svc.ARRIVAL_SERIES}",
    )
    docs, next_ = await _register_pages(session, query, format, limit, cursor, _IncomingOrder)
    assigned: dict[int, list[Assignment]] = {}
    if docs:
        rows_a = await session.execute(select(Assignment).where(Assignment.document_id.in_([d.id for d in docs])))
        for a in rows_a.scalars():
            assigned.setdefault(a.document_id, []).append(a)
    rows = []
    for d in docs:
        work = assigned.get(d.id, [])
        rows.append(
            {
                "ngay_den": _vn_date(d.arrival_date),
                "so_den": str(d.arrival_number or ""),
                "tac_gia": d.issuing_organ_name or d.issuing_organ_id or "",
                "so_ky_hieu": d.code_text or "",
                "ngay_thang": _vn_date(d.issued_date),
                "ten_loai_trich_yeu": f"{d.type_name}: {d.subject}",
                "don_vi_nguoi_nhan": "; ".join(a.assignee_name for a in work),
                "ngay_chuyen": _vn_date(min((a.assigned_at for a in work), default=None)),
                "ghi_chu": "; ".join(svc.duplicate_warning(d)) or ("Đã thu hồi" if d.status == Status.RECALLED else ""),
            }
        )
    return _register_response(rows, INCOMING_COLUMNS, format, f"so-van-ban-den-{year}", next_)


# --- work dossiers -------------------------------------------------------------------------------


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
    clause = _agency_filter(caller, WorkFile.organ_id)
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


ROUTERS = (router, workfiles, registers, assignments)

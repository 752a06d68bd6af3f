"""A document's files: versions of the main file (the PDF that moves it through its stages) and attachments."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import paging, storage
from services.document import service as svc
from services.document.endpoints.common import STAFF, Session, etag, rows_of_document
from services.document.lifecycle import Status
from services.document.models import Attachment, ContentVersion
from services.document.schemas import (
    AttachmentOut,
    AttachmentPage,
    ContentOut,
    ContentPage,
)
from shared.auth import Caller, allow, current_caller
from shared.errors import NotFound, problem_responses
from shared.http import IfMatch, StrictRoute, check_if_match, etag_for, raw_body_route

content = APIRouter(prefix="/documents", tags=["documents"], route_class=StrictRoute)


@content.post(
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
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    check_if_match(if_match, etag_for(doc.version))
    version = await storage.add_version(
        session, svc.toolkit(request), request, caller, doc, stage=stage, filename=filename
    )
    etag(response, doc)
    return version


@content.get(
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
    items, next_ = await rows_of_document(
        session, caller, document_id, ContentVersion.number, limit=limit, cursor=cursor
    )
    return {"items": items, "next": next_}


def _download(kit: svc.Toolkit, blob: str, *, media_type: str, filename: str, sha256: str) -> Response:
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(filename)}",
        "ETag": f'"{sha256}"',
        "Cache-Control": "private, no-store",
    }
    if blob.endswith(".enc"):
        # AES-GCM authenticates the whole file, so a secret file is decrypted whole, then sent.
        return Response(storage.read_blob(kit, blob), media_type=media_type, headers=headers)
    return StreamingResponse(kit.blobs.iter_chunks(blob), media_type=media_type, headers=headers)


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@content.get(
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


@content.post(
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
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    return await storage.add_attachment(session, svc.toolkit(request), request, caller, doc, name=name)


@content.get(
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
    items, next_ = await rows_of_document(session, caller, document_id, Attachment.id, limit=limit, cursor=cursor)
    return {"items": items, "next": next_}


@content.get(
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


ROUTERS = (content,)

"""The issue flow of an outgoing document: number, issue, the clerk's one-call publish, recall."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import outgoing
from services.document import publish as publication
from services.document import service as svc
from services.document.endpoints.common import Session, etag
from services.document.schemas import (
    DocumentOut,
    NumberOut,
    PublishIn,
    PublishOut,
    RecallIn,
)
from shared.auth import Caller, allow, current_caller
from shared.errors import problem_responses
from shared.events import Actor
from shared.http import StrictRoute

issuing = APIRouter(prefix="/documents", tags=["documents"], route_class=StrictRoute)


@issuing.post(
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
    await outgoing.number_once(session, doc, settings=kit.settings, actor=Actor.of(caller))
    etag(response, doc)
    code_number, code_notation = outgoing.split_code(doc)
    return NumberOut(
        id=doc.id,
        number=doc.code_number or 0,
        code=doc.code_text or "",
        code_number=code_number,
        code_notation=code_notation,
        series=doc.series_key or "",
        issued_date=doc.issued_date or svc.vietnam_today(),
        version=doc.version,
    )


@issuing.post(
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
    await outgoing.issue(session, doc, actor=Actor.of(caller))
    etag(response, doc)
    return svc.to_out(doc)


@issuing.post(
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
        default=None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
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


@issuing.post(
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
    await outgoing.recall(session, doc, reason=body.reason, actor=Actor.of(caller))
    etag(response, doc)
    return svc.to_out(doc)


ROUTERS = (issuing,)

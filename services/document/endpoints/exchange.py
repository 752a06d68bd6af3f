"""Exchange API: other agencies' systems post edXML documents and status messages here; our
users see each document's deliveries and statuses and return misaddressed documents.

``/exchange/edxml`` and ``/exchange/status`` take no bearer token: the partner is another
deployment or the national axis, which holds no token of ours. The XML signature, checked against
the configured partner certificates (and bound to the ``From`` agency), is the authentication.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import edxml
from services.document import service as svc
from services.document.endpoints.common import STAFF, Session
from services.document.exchange import identity, inbound, outbound
from services.document.schemas import ExchangeMessageOut, ExchangeOut, RefuseIn, StatusRecorded
from services.document.state import DocumentState
from shared.auth import Caller, allow, current_caller, public
from shared.errors import Conflict, problem_responses
from shared.http import StrictRoute

exchange = APIRouter(prefix="/exchange", tags=["exchange"], route_class=StrictRoute)
documents = APIRouter(prefix="/documents", tags=["exchange"], route_class=StrictRoute)


def kit_of(request: Request) -> identity.ExchangeKit:
    return DocumentState.of(request).exchange


def _xml_body() -> dict[str, Any]:
    kwargs = public()
    kwargs["openapi_extra"]["requestBody"] = {
        "required": True,
        "content": {identity.EDXML_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
    return kwargs


async def _read(request: Request, kit: identity.ExchangeKit) -> bytes:
    body = await request.body()
    if len(body) > kit.limits.max_bytes:
        raise inbound.as_problem(edxml.EnvelopeTooLarge(f"{len(body)} bytes, over {kit.limits.max_bytes}"))
    return body


@exchange.post(
    "/edxml",
    response_class=Response,
    responses={
        200: {"content": {identity.EDXML_MEDIA_TYPE: {}}, "description": "signed status 01 (arrived)"},
        **problem_responses(400, 403, 409, 413, 422),
    },
    **_xml_body(),
)
async def receive_edxml(request: Request, session: AsyncSession = Session) -> Response:
    """Receive a signed edXML document: it is registered as incoming (arrival number) for each
    recipient agency of this deployment, and answered with a signed status ``01``. A malformed,
    oversized, unsigned or untrusted message, or a ``DocumentId`` already received, is refused
    and nothing is stored."""
    kit = kit_of(request)
    data = await _read(request, kit)
    try:
        _, answer = await inbound.receive_envelope(session, kit, svc.toolkit(request), data)
    except IntegrityError:
        raise Conflict("this DocumentId was already received") from None
    return Response(answer, media_type=identity.EDXML_MEDIA_TYPE)


@exchange.post(
    "/status", response_model=StatusRecorded, responses=problem_responses(400, 403, 404, 413, 422), **_xml_body()
)
async def receive_status(request: Request, session: AsyncSession = Session) -> StatusRecorded:
    """Receive a signed status message about a document we sent (recorded on it), or a sender's
    recall request (``13``) for a document it sent us (withdrawn here, answered ``15``)."""
    kit = kit_of(request)
    data = await _read(request, kit)
    try:
        parsed = await asyncio.to_thread(edxml.parse_status, data, cert_validator=kit.all_trusted(), limits=kit.limits)
        kit.require_partner_signed(parsed.status.from_.organ_id, parsed.signer_certificate, parsed.certificates[1:])
    except edxml.EdxmlError as exc:
        raise inbound.as_problem(exc) from None
    row = await inbound.record_status(session, kit, parsed)
    return StatusRecorded(recorded=row is not None or parsed.status.status_code is edxml.StatusCode.RECALL_REQUESTED)


@documents.get(
    "/{document_id}/exchange",
    response_model=ExchangeOut,
    responses=problem_responses(401, 403, 404),
    **allow(*STAFF, "auditor"),
)
async def document_exchange(
    document_id: int, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> dict[str, Any]:
    """Deliveries to partner agencies and the statuses they sent back (or, for a received
    document, the sender and the statuses we sent)."""
    doc = await svc.get_visible(session, caller, document_id)
    return await outbound.exchange_view(session, doc)


@documents.post(
    "/{document_id}/exchange/refuse",
    response_model=ExchangeMessageOut,
    responses=problem_responses(401, 403, 404, 409),
    **allow("clerk", "leader"),
)
async def refuse_document(
    document_id: int,
    body: RefuseIn,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Any:
    """Return a document received by edXML to its sender (status ``02`` with the reason)."""
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    return await inbound.refuse(session, kit_of(request), doc, reason=body.reason)


ROUTERS = (exchange, documents)

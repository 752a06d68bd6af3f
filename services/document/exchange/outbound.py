"""What we send to partner agencies: the signed envelope of an issued document, status
messages about documents they sent us, queued as :class:`~services.document.models.ExchangeMessage`
rows (outbox-driven: the worker delivers them), and what a document's deliveries look like."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import edxml, storage
from services.document import service as svc
from services.document.config import DocumentSettings
from services.document.doctypes import Urgency
from services.document.exchange.identity import ExchangeKit, is_partner
from services.document.lifecycle import AssignmentStatus, Status
from services.document.models import (
    Assignment,
    Attachment,
    Comment,
    Document,
    ExchangeInbound,
    ExchangeMessage,
    ExchangeStatus,
)
from shared import clock, eventdata
from shared.eventdata.document import DocumentIssued, DocumentRecalled
from shared.events import CloudEvent
from shared.inbox import Consumer, PoisonEvent

# Which status a received document's processing reports; the order is the order of the codes.
PROGRESS = (
    edxml.StatusCode.ARRIVED,
    edxml.StatusCode.REGISTERED,
    edxml.StatusCode.ASSIGNED,
    edxml.StatusCode.IN_PROGRESS,
    edxml.StatusCode.COMPLETED,
)


def exchange_id_for(doc: Document) -> str:
    """The ``DocumentId`` of an issued document of ours (the SDK's ``OrganId,Date,Code``)."""
    if doc.issued_date is None or doc.code_text is None:
        raise ValueError("only a numbered document has an exchange id")
    number, notation = doc.code_text.split("/", 1)
    return edxml.make_document_id(doc.agency, doc.issued_date, edxml.DocumentCode(number, notation))


def _response_for(doc: Document, exchange_id: str) -> edxml.ResponseFor:
    # Our own document (a recall) or one a partner sent us: the document's issuer either way.
    organ = doc.agency if doc.direction == "outgoing" else (doc.issuing_organ_id or "")
    return edxml.ResponseFor(
        organ_id=organ,
        code=doc.code_text or "",
        promulgation_date=doc.issued_date or svc.vietnam_today(doc.created_at),
        document_id=exchange_id,
    )


async def build_document_envelope(
    session: AsyncSession, kit: ExchangeKit, blobs: svc.Toolkit, doc: Document, message: ExchangeMessage
) -> bytes:
    """The signed envelope of an issued document for one recipient: the annex VI metadata in
    the header, the issued PDF first in the manifest, then the attachments."""
    profile = kit.settings.agencies.get(doc.agency)
    recipient = next((r for r in doc.recipients if r.get("organ_id") == message.partner), {"organ_id": message.partner})
    number, notation = (doc.code_text or "").split("/", 1)
    header = edxml.MessageHeader(
        from_=edxml.Organization(organ_id=doc.agency, organ_name=profile.name if profile else ""),
        to=(edxml.Organization(organ_id=message.partner, organ_name=recipient.get("organ_name", "")),),
        code=edxml.DocumentCode(number, notation),
        promulgation_info=edxml.PromulgationInfo(place="", promulgation_date=doc.issued_date or clock.vn_today()),
        document_type=edxml.DocumentType(type=doc.type_key, type_name=doc.type_name),
        subject=doc.subject,
        document_id=message.exchange_id,
        signer_info=edxml.SignerInfo(position=doc.signer_position or "", full_name=doc.signer_name or ""),
        due_date=doc.due_date,
        to_places=tuple(doc.to_places),
        other_info=edxml.OtherInfo(
            priority=edxml.PRIORITY_BY_URGENCY[Urgency.from_code(doc.urgency)], page_amount=doc.page_amount or 0
        ),
    )
    files: list[edxml.Attachment] = []
    content = await storage.latest_content(session, doc)
    if content is not None:
        files.append(
            edxml.Attachment(
                payload=storage.read_blob(blobs, content.blob),
                content_type=content.media_type,
                name=content.filename,
                description="Văn bản chính",
            )
        )
    rows = await session.execute(select(Attachment).where(Attachment.document_id == doc.id).order_by(Attachment.id))
    for a in rows.scalars():
        files.append(
            edxml.Attachment(
                payload=storage.read_blob(blobs, a.blob),
                content_type=a.media_type,
                name=a.name,
                description="Phụ lục",
            )
        )
    return edxml.build_envelope(
        header,
        files,
        signing_key=kit.identity.key,
        certificate=kit.identity.certificate,
        chain=kit.identity.chain,
        limits=kit.limits,
    )


def build_status_message(kit: ExchangeKit, doc: Document, message: ExchangeMessage) -> bytes:
    profile = kit.settings.agencies.get(doc.agency)
    status = edxml.StatusMessage(
        from_=edxml.Organization(organ_id=doc.agency, organ_name=profile.name if profile else ""),
        response_for=_response_for(doc, message.exchange_id),
        status_code=edxml.StatusCode(message.status_code or ""),
        timestamp=message.event_at,
        description=message.description or edxml.STATUS_CODES[edxml.StatusCode(message.status_code or "")].meaning,
    )
    return edxml.build_status(
        status, signing_key=kit.identity.key, certificate=kit.identity.certificate, chain=kit.identity.chain
    )


def queue(
    session: AsyncSession,
    *,
    doc: Document,
    kind: str,
    partner: str,
    exchange_id: str,
    status_code: edxml.StatusCode | None = None,
    description: str | None = None,
    state: str = "pending",
    last_error: str | None = None,
) -> ExchangeMessage:
    now = svc.now_utc()
    row = ExchangeMessage(
        document_id=doc.id,
        kind=kind,
        partner=partner,
        exchange_id=exchange_id,
        status_code=status_code.value if status_code else None,
        description=description,
        state=state,
        attempts=0,
        next_attempt_at=now,
        last_error=last_error,
        event_at=now,
        created_at=now,
    )
    session.add(row)
    return row


def make_exchange_consumer(settings: DocumentSettings) -> Consumer:
    """Queues edXML messages for partner agencies when a document is issued or recalled."""
    from services.document.models import inbox

    async def on_issued(session: AsyncSession, event: CloudEvent) -> None:
        issued = eventdata.read(event, DocumentIssued)
        doc = await session.get(Document, issued.id)
        if doc is None:
            raise PoisonEvent("document.issued for an unknown document")
        exchange_id = exchange_id_for(doc)
        for recipient in doc.recipients:
            organ = recipient.get("organ_id")
            if not is_partner(settings, organ):
                continue
            if svc.secrecy_of(doc).is_secret:
                # State secrets do not travel over the exchange network: sent by hand, on paper.
                queue(
                    session,
                    doc=doc,
                    kind="envelope",
                    partner=organ,
                    exchange_id=exchange_id,
                    state="not_sent",
                    last_error="a secret document is not sent by electronic exchange",
                )
                continue
            queue(session, doc=doc, kind="envelope", partner=organ, exchange_id=exchange_id)

    async def on_recalled(session: AsyncSession, event: CloudEvent) -> None:
        recalled = eventdata.read(event, DocumentRecalled)
        doc = await session.get(Document, recalled.id)
        if doc is None:
            raise PoisonEvent("document.recalled for an unknown document")
        rows = await session.execute(
            select(ExchangeMessage).where(ExchangeMessage.document_id == doc.id, ExchangeMessage.kind == "envelope")
        )
        for sent in rows.scalars():
            if sent.state == "pending":
                sent.state = "cancelled"  # never reached the partner: nothing to take back
            elif sent.state == "delivered":
                queue(
                    session,
                    doc=doc,
                    kind="status",
                    partner=sent.partner,
                    exchange_id=sent.exchange_id,
                    status_code=edxml.StatusCode.RECALL_REQUESTED,
                    description=recalled.reason,
                )

    return Consumer(
        name="document-exchange",
        handlers={"document.issued": on_issued, "document.recalled": on_recalled},  # type: ignore[dict-item]
        inbox=inbox,
    )


async def progress_code(session: AsyncSession, doc: Document) -> edxml.StatusCode | None:
    """Where a received document stands, as a status code (None: nothing to report)."""
    if doc.status in (Status.REFUSED, Status.RECALLED):
        return None
    if doc.status == Status.COMPLETED:
        return edxml.StatusCode.COMPLETED
    if doc.status == Status.ASSIGNED:
        # Someone has worked on it: a comment, or a supporting assignment done.
        worked = (await session.execute(select(Comment.id).where(Comment.document_id == doc.id).limit(1))).first()
        if worked is None:
            worked = (
                await session.execute(
                    select(Assignment.id)
                    .where(Assignment.document_id == doc.id, Assignment.status == AssignmentStatus.COMPLETED)
                    .limit(1)
                )
            ).first()
        return edxml.StatusCode.IN_PROGRESS if worked else edxml.StatusCode.ASSIGNED
    return edxml.StatusCode.REGISTERED


async def queue_progress(session: AsyncSession) -> int:
    """Queue a status for each received document whose processing moved since the last report;
    every step between is reported too, so the sender sees 03, 04, 05, 06 in order."""
    queued = 0
    rows = await session.execute(
        select(ExchangeInbound, Document)
        .join(Document, Document.id == ExchangeInbound.document_id)
        .where(ExchangeInbound.reported.in_([c.value for c in PROGRESS[:-1]]))
    )
    for inbound, doc in rows.all():
        code = await progress_code(session, doc)
        if code is None:
            continue
        last = PROGRESS.index(edxml.StatusCode(inbound.reported))
        now_at = PROGRESS.index(code)
        for step in PROGRESS[last + 1 : now_at + 1]:
            queue(
                session,
                doc=doc,
                kind="status",
                partner=inbound.sender,
                exchange_id=inbound.exchange_id,
                status_code=step,
            )
            queued += 1
        if now_at > last:
            inbound.reported = code.value
    return queued


async def exchange_view(session: AsyncSession, doc: Document) -> dict[str, Any]:
    """What ``GET /documents/{id}/exchange`` shows: per-recipient deliveries and statuses."""
    messages = (
        (
            await session.execute(
                select(ExchangeMessage).where(ExchangeMessage.document_id == doc.id).order_by(ExchangeMessage.id)
            )
        )
        .scalars()
        .all()
    )
    statuses = (
        (
            await session.execute(
                select(ExchangeStatus)
                .where(ExchangeStatus.document_id == doc.id)
                .order_by(ExchangeStatus.timestamp, ExchangeStatus.id)
            )
        )
        .scalars()
        .all()
    )
    inbound = (
        await session.execute(select(ExchangeInbound).where(ExchangeInbound.document_id == doc.id))
    ).scalar_one_or_none()
    return {
        "document_id": doc.id,
        "exchange_id": inbound.exchange_id if inbound else (messages[0].exchange_id if messages else None),
        "received_from": inbound.sender if inbound else None,
        "messages": messages,
        "statuses": [
            {
                "from_organ_id": s.from_organ_id,
                "status_code": s.status_code,
                "meaning": edxml.STATUS_CODES[edxml.StatusCode(s.status_code)].meaning,
                "description": s.description,
                "staff": s.staff,
                "timestamp": s.timestamp,
                "received_at": s.received_at,
            }
            for s in statuses
        ],
    }

"""What partner agencies send us: a signed edXML document, registered as incoming for each
recipient agency here, and status messages (about our documents, or recalling one of theirs); a
received document can be sent back. The XML signature, bound to the ``From`` agency, is the
authentication."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import edxml, incoming, lifecycle, storage
from services.document import service as svc
from services.document.blobs import sha256_hex
from services.document.doctypes import DEFAULT_DOC_TYPES, Urgency
from services.document.exchange.identity import ExchangeKit
from services.document.exchange.outbound import queue
from services.document.lifecycle import Status, Step
from services.document.models import (
    Attachment,
    ContentVersion,
    Document,
    ExchangeInbound,
    ExchangeMessage,
    ExchangeStatus,
)
from shared.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, ProblemError, Unprocessable
from shared.events import Actor

SOURCE_PREFIX = "edxml:"


class EdxmlRefused(ProblemError):
    status = 400
    code = "edxml_refused"
    title = "edXML message refused"


class EdxmlUntrusted(Forbidden):
    code = "edxml_untrusted"
    title = "edXML signer not trusted"


def as_problem(exc: edxml.EdxmlError) -> ProblemError:
    detail = str(exc)
    if isinstance(exc, edxml.EnvelopeTooLarge):
        return PayloadTooLarge(detail)
    if isinstance(exc, edxml.UnknownCertificate):
        return EdxmlUntrusted(detail)
    problem = EdxmlRefused(detail, reason=type(exc).__name__)
    return problem


def _doc_type_for(header: edxml.MessageHeader) -> tuple[str, str]:
    for candidate in (header.document_type.type, header.code.code_notation.split("-", 1)[0]):
        if candidate in DEFAULT_DOC_TYPES:
            kind = DEFAULT_DOC_TYPES.get(candidate)
            return kind.key, header.document_type.type_name or kind.name
    return "CV", header.document_type.type_name or "Công văn"


async def receive_envelope(
    session: AsyncSession, kit: ExchangeKit, blobs: svc.Toolkit, data: bytes
) -> tuple[list[Document], bytes]:
    """Check and register a received document for each of its To that is an agency here.

    Returns the incoming documents and the signed ``01`` (arrived) status to answer with.
    Any refusal raises before anything is stored.
    """
    try:
        parsed = await asyncio.to_thread(
            edxml.parse_envelope, data, cert_validator=kit.all_trusted(), limits=kit.limits
        )
        header = parsed.header
        kit.require_partner_signed(header.from_.organ_id, parsed.signer_certificate, parsed.certificates[1:])
    except edxml.EdxmlError as exc:
        raise as_problem(exc) from None
    ours = [t for t in header.to if t.organ_id in kit.settings.agencies]
    if not ours:
        raise Unprocessable("none of the recipients (To) is an agency of this deployment", code_hint="misaddressed")
    source = SOURCE_PREFIX + header.document_id
    if len(source) > 100:
        raise EdxmlRefused("DocumentId is longer than this deployment stores (94 characters)")
    taken = (
        await session.execute(
            select(Document.id).where(
                Document.source_document == source, Document.agency.in_([t.organ_id for t in ours])
            )
        )
    ).first()
    if taken:
        raise Conflict(f"DocumentId {header.document_id} was already received", document_id=header.document_id)
    try:
        urgency = edxml.urgency_for_priority(header.other_info.priority)
    except ValueError:
        urgency = Urgency.NORMAL
    type_key, type_name = _doc_type_for(header)
    code_text = str(header.code)
    now = svc.now_utc()
    main = next((a for a in parsed.attachments if a.payload.startswith(storage.PDF_MAGIC)), None)
    stored: list[tuple[edxml.Attachment, str, str]] = []
    for a in parsed.attachments:
        sha = sha256_hex(a.payload)
        blobs.blobs.put_bytes(sha, a.payload)
        stored.append((a, sha, sha))
    docs: list[Document] = []
    for recipient in ours:
        number = header.code.code_number
        doc = svc.new_document(
            direction="incoming",
            agency=recipient.organ_id,
            status=Status.RECEIVED,
            type_key=type_key,
            type_name=type_name,
            subject=header.subject,
            urgency=urgency.code,
            page_amount=header.other_info.page_amount or None,
            code_text=code_text,
            code_number=int(number) if number.isdigit() else None,
            code_notation=header.code.code_notation,
            issued_date=header.promulgation_info.promulgation_date,
            issuing_organ_id=header.from_.organ_id,
            issuing_organ_name=header.from_.organ_name or None,
            signer_position=header.signer_info.position or None,
            signer_name=header.signer_info.full_name or None,
            due_date=header.due_date,
            source_document=source,
            created_by=f"edxml:{header.from_.organ_id}",
        )
        doc.to_places = list(header.to_places)
        session.add(doc)
        await session.flush()
        for a, sha, blob in stored:
            if a is main:
                doc.content_version = 1
                session.add(
                    ContentVersion(
                        document_id=doc.id,
                        number=1,
                        sha256=sha,
                        blob=blob,
                        size=len(a.payload),
                        media_type="application/pdf",
                        filename=(a.name or "van-ban.pdf")[:200],
                        signatures=_signatures(blobs, blob),
                        stage=Status.RECEIVED,
                        uploaded_by="edxml",
                        uploaded_at=now,
                    )
                )
            else:
                session.add(
                    Attachment(
                        document_id=doc.id,
                        name=(a.name or a.content_id)[:200],
                        sha256=sha,
                        blob=blob,
                        size=len(a.payload),
                        media_type=a.content_type[:100],
                        uploaded_by="edxml",
                        uploaded_at=now,
                    )
                )
        doc.arrival_date = now
        # the partner is authenticated by its XML signature, not by a person's token
        actor = Actor.system(f"edXML {header.document_id} from {header.from_.organ_id}")
        await incoming.emit_received(session, doc, source=source, actor=actor)
        await incoming.register_incoming(session, doc, at=now, actor=actor)
        session.add(
            ExchangeInbound(
                document_id=doc.id,
                exchange_id=header.document_id,
                sender=header.from_.organ_id,
                reported=edxml.StatusCode.REGISTERED.value,
                received_at=now,
            )
        )
        # "01 arrived" is the answer to this request; "03 registered" follows by the worker.
        queue(
            session,
            doc=doc,
            kind="status",
            partner=header.from_.organ_id,
            exchange_id=header.document_id,
            status_code=edxml.StatusCode.REGISTERED,
        )
        docs.append(doc)
    await session.flush()
    first = docs[0]
    answer = edxml.build_status(
        edxml.StatusMessage(
            from_=edxml.Organization(organ_id=first.agency, organ_name=kit.settings.agencies[first.agency].name),
            response_for=edxml.ResponseFor(
                organ_id=header.from_.organ_id,
                code=code_text,
                promulgation_date=header.promulgation_info.promulgation_date,
                document_id=header.document_id,
            ),
            status_code=edxml.StatusCode.ARRIVED,
            timestamp=now,
            description=edxml.STATUS_CODES[edxml.StatusCode.ARRIVED].meaning,
        ),
        signing_key=kit.identity.key,
        certificate=kit.identity.certificate,
        chain=kit.identity.chain,
    )
    kit.wake.set()
    return docs, answer


def _signatures(blobs: svc.Toolkit, blob: str) -> int:
    try:
        return storage.count_signatures(blobs.blobs.path(blob))
    except Unprocessable:
        return 0


async def record_status(session: AsyncSession, kit: ExchangeKit, parsed: edxml.ParsedStatus) -> ExchangeStatus | None:
    """A partner's status about one of our documents, or its request to recall one it sent us."""
    status = parsed.status
    sender = status.from_.organ_id
    rf = status.response_for
    now = svc.now_utc()
    if rf.organ_id in kit.settings.agencies:
        delivery = (
            (
                await session.execute(
                    select(ExchangeMessage).where(
                        ExchangeMessage.kind == "envelope",
                        ExchangeMessage.exchange_id == rf.document_id,
                        ExchangeMessage.partner == sender,
                    )
                )
            )
            .scalars()
            .first()
        )
        if delivery is None:
            raise NotFound(f"{sender} was sent no document {rf.document_id}")
        exists = (
            await session.execute(
                select(ExchangeStatus.id).where(
                    ExchangeStatus.document_id == delivery.document_id,
                    ExchangeStatus.from_organ_id == sender,
                    ExchangeStatus.status_code == status.status_code.value,
                    ExchangeStatus.timestamp == status.timestamp,
                )
            )
        ).first()
        if exists:
            return None  # the partner retried a message we already recorded
        row = ExchangeStatus(
            document_id=delivery.document_id,
            from_organ_id=sender,
            status_code=status.status_code.value,
            description=status.description[:500],
            staff=status.staff_info.staff[:200],
            timestamp=status.timestamp,
            received_at=now,
        )
        session.add(row)
        if status.status_code is edxml.StatusCode.REFUSED:
            delivery.last_error = f"refused by {sender}: {status.description}"[:1000]
        await session.flush()
        return row
    if status.status_code is edxml.StatusCode.RECALL_REQUESTED:
        rows = await session.execute(
            select(ExchangeInbound, Document)
            .join(Document, Document.id == ExchangeInbound.document_id)
            .where(ExchangeInbound.exchange_id == rf.document_id, ExchangeInbound.sender == sender)
        )
        found = False
        for inbound, doc in rows.all():
            found = True
            if not lifecycle.allows(Step.WITHDRAW, doc.status, doc.direction):
                continue
            # Decree 30: the receiver deletes a recalled electronic document and tells the sender.
            lifecycle.move(Step.WITHDRAW, doc)
            doc.recalled_at = now
            doc.content_version = 0
            svc.touch(doc)
            queue(
                session,
                doc=doc,
                kind="status",
                partner=sender,
                exchange_id=inbound.exchange_id,
                status_code=edxml.StatusCode.RECALL_ACCEPTED,
            )
        if not found:
            raise NotFound(f"no document {rf.document_id} was received from {sender}")
        kit.wake.set()
        return None
    raise Unprocessable(f"status {status.status_code.value} is not about a document of this deployment")


async def refuse(session: AsyncSession, kit: ExchangeKit, doc: Document, *, reason: str) -> ExchangeMessage:
    """Return a received document to its sender (trả lại): status 02 with the reason."""
    inbound = (
        await session.execute(select(ExchangeInbound).where(ExchangeInbound.document_id == doc.id))
    ).scalar_one_or_none()
    if inbound is None:
        raise Conflict("only a document received by edXML is refused through the exchange")
    lifecycle.move(Step.REFUSE, doc)
    svc.touch(doc)
    inbound.reported = edxml.StatusCode.REFUSED.value
    row = queue(
        session,
        doc=doc,
        kind="status",
        partner=inbound.sender,
        exchange_id=inbound.exchange_id,
        status_code=edxml.StatusCode.REFUSED,
        description=reason,
    )
    await session.flush()
    kit.wake.set()
    return row

"""Liên thông văn bản: edXML exchange (QCVN 102:2016) with agencies outside this deployment.

Sending is outbox-driven: an issued document's ``document.issued`` event queues one
:class:`~services.document.models.ExchangeMessage` per partner recipient, processing steps of a
received document queue status messages, and :func:`exchange_worker` delivers them over HTTP with
retries and backoff, so a partner being down delays a message but never loses it. Receiving
checks the XML signature against the partners' certificates: that signature is the
authentication of ``POST /exchange/edxml`` and ``/exchange/status``, not a bearer token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import edxml, incoming, lifecycle, storage
from services.document import service as svc
from services.document.blobs import sha256_hex
from services.document.config import DocumentSettings, ExchangePartner
from services.document.doctypes import DEFAULT_DOC_TYPES, Urgency
from services.document.lifecycle import AssignmentStatus, Status, Step
from services.document.models import (
    Assignment,
    Attachment,
    Comment,
    ContentVersion,
    Document,
    ExchangeInbound,
    ExchangeMessage,
    ExchangeStatus,
)
from shared import clock
from shared.aio import wait_event
from shared.db import Database
from shared.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, ProblemError, Unprocessable
from shared.events import Actor, CloudEvent
from shared.inbox import Consumer, PoisonEvent

log = structlog.get_logger("exchange")

EDXML_MEDIA_TYPE = "application/xml"
SOURCE_PREFIX = "edxml:"
# Which status a received document's processing reports; the order is the order of the codes.
PROGRESS = (
    edxml.StatusCode.ARRIVED,
    edxml.StatusCode.REGISTERED,
    edxml.StatusCode.ASSIGNED,
    edxml.StatusCode.IN_PROGRESS,
    edxml.StatusCode.COMPLETED,
)


# --- identity and trust ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeIdentity:
    """The key and certificate this deployment signs edXML messages with."""

    key: PrivateKeyTypes
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


def _load_certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def create_development_identity(directory: Path, *, common_name: str) -> tuple[Path, Path]:
    """A self-signed RSA key and certificate for development, kept in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    if key_path.exists() and cert_path.exists():
        return key_path, cert_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lienthong (development)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = clock.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=5 * 365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def load_identity(settings: DocumentSettings) -> ExchangeIdentity:
    """The configured identity; in development a generated one under ``var_dir/document/exchange``."""
    key_path, cert_path = settings.exchange_key_file, settings.exchange_cert_file
    if key_path is None or cert_path is None:
        if settings.environment == "production":
            raise RuntimeError("exchange_key_file and exchange_cert_file are required in production")
        first = next(iter(settings.agencies.values()), None)
        key_path, cert_path = create_development_identity(
            settings.exchange_dir, common_name=first.name if first else "lienthong"
        )
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise RuntimeError("the exchange key must be RSA (edXML signatures are RSA-SHA256)")
    chain = tuple(c for p in settings.exchange_chain_files for c in _load_certs(p))
    return ExchangeIdentity(key=key, certificate=_load_certs(cert_path)[0], chain=chain)


ClientFactory = Callable[[], httpx.AsyncClient]


@dataclass
class ExchangeKit:
    """What the exchange needs at run time: who we are, whom we trust, how we reach them."""

    settings: DocumentSettings
    identity: ExchangeIdentity
    partners: dict[str, ExchangePartner]
    partner_certs: dict[str, list[x509.Certificate]]
    client_factory: ClientFactory
    limits: edxml.Limits = field(default_factory=edxml.Limits)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def all_trusted(self) -> edxml.CertValidator:
        return edxml.make_cert_validator([c for certs in self.partner_certs.values() for c in certs])

    def require_partner_signed(self, organ: str, signer: x509.Certificate, others: Sequence[x509.Certificate]) -> None:
        """The message's From must be a partner, and the signer that partner's certificate:
        a trusted partner cannot speak for another agency."""
        certs = self.partner_certs.get(organ)
        if certs is None:
            raise edxml.UnknownCertificate(f"{organ} is not an exchange partner of this deployment")
        edxml.make_cert_validator(certs)(signer, others)


def build_kit(settings: DocumentSettings, *, client_factory: ClientFactory | None = None) -> ExchangeKit:
    timeout = settings.exchange_timeout_seconds
    return ExchangeKit(
        settings=settings,
        identity=load_identity(settings),
        partners=dict(settings.exchange_partners),
        partner_certs={organ: _load_certs(p.certificate) for organ, p in settings.exchange_partners.items()},
        client_factory=client_factory or (lambda: httpx.AsyncClient(timeout=timeout)),
        limits=edxml.Limits(max_bytes=settings.exchange_max_bytes),
    )


def is_partner(settings: DocumentSettings, organ: str | None) -> bool:
    return bool(organ) and organ not in settings.agencies and organ in settings.exchange_partners


# --- errors as problems ----------------------------------------------------------------------


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


# --- building what we send -------------------------------------------------------------------


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


# --- reacting to our own events: what to send ------------------------------------------------


def make_exchange_consumer(settings: DocumentSettings) -> Consumer:
    """Queues edXML messages for partner agencies when a document is issued or recalled."""
    from services.document.models import inbox

    async def on_issued(session: AsyncSession, event: CloudEvent) -> None:
        doc = await session.get(Document, event.data.get("id"))
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
        doc = await session.get(Document, event.data.get("id"))
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
                    description=event.data.get("reason"),
                )

    return Consumer(
        name="document-exchange",
        handlers={"document.issued": on_issued, "document.recalled": on_recalled},  # type: ignore[dict-item]
        inbox=inbox,
    )


# --- receiving -----------------------------------------------------------------------------------


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
                        stage="received",
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


# --- progress of received documents ----------------------------------------------------------


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


# --- the worker --------------------------------------------------------------------------------


def _backoff(settings: DocumentSettings, attempts: int) -> timedelta:
    seconds = settings.exchange_retry_base_seconds * (2 ** max(attempts - 1, 0))
    return timedelta(seconds=min(seconds, settings.exchange_retry_max_seconds))


async def _claim(db: Database, kit: ExchangeKit, *, limit: int = 20) -> list[int]:
    """Lease due messages (one per document and partner, oldest first, so statuses keep their
    order); the lease is a later ``next_attempt_at``, so another replica skips them meanwhile."""
    now = svc.now_utc()
    lease = now + timedelta(seconds=kit.settings.exchange_timeout_seconds * 2 + 5)
    async with db.sessionmaker() as session:
        await queue_progress(session)
        query = (
            select(ExchangeMessage).where(ExchangeMessage.state == "pending").order_by(ExchangeMessage.id).limit(500)
        )
        if db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = (await session.execute(query)).scalars().all()
        blocked: set[tuple[int, str]] = set()
        chosen: list[int] = []
        for row in rows:
            key = (row.document_id, row.partner)
            if key in blocked:
                continue
            blocked.add(key)
            if row.next_attempt_at <= now and len(chosen) < limit:
                row.next_attempt_at = lease
                chosen.append(row.id)
        await session.commit()
    return chosen


async def _attempt(db: Database, kit: ExchangeKit, blobs: svc.Toolkit, message_id: int) -> None:
    async with db.sessionmaker() as session:
        message = await session.get(ExchangeMessage, message_id)
        if message is None or message.state != "pending":
            return
        doc = await session.get(Document, message.document_id)
        assert doc is not None
        partner = kit.partners.get(message.partner)
        error: str | None = None
        outcome = "retry"
        answer: httpx.Response | None = None
        if partner is None:
            outcome, error = "rejected", f"{message.partner} is no longer a configured partner"
        else:
            try:
                if message.kind == "envelope":
                    body = await build_document_envelope(session, kit, blobs, doc, message)
                    url = partner.endpoint.rstrip("/") + "/edxml"
                else:
                    body = build_status_message(kit, doc, message)
                    url = partner.endpoint.rstrip("/") + "/status"
            except ValueError as exc:
                outcome, error = "rejected", f"cannot build the message: {exc}"
            else:
                try:
                    async with kit.client_factory() as client:
                        answer = await client.post(url, content=body, headers={"Content-Type": EDXML_MEDIA_TYPE})
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                else:
                    if answer.is_success:
                        outcome = "delivered"
                    elif answer.status_code == 409 and message.kind == "envelope":
                        outcome = "delivered"  # an earlier attempt arrived; its answer was lost
                    elif 400 <= answer.status_code < 500 and answer.status_code not in (408, 429):
                        outcome, error = "rejected", f"{answer.status_code}: {answer.text[:500]}"
                    else:
                        error = f"{answer.status_code}: {answer.text[:300]}"
        message.attempts += 1
        now = svc.now_utc()
        if outcome == "delivered":
            message.state, message.delivered_at, message.last_error = "delivered", now, None
            if message.kind == "envelope" and answer is not None and answer.status_code != 409:
                await _record_answer(session, kit, answer)
        elif outcome == "rejected":
            message.state, message.last_error = "rejected", error
        else:
            message.last_error = error
            message.next_attempt_at = now + _backoff(kit.settings, message.attempts)
        await session.commit()
    log.info(
        "exchange_attempt",
        message=message_id,
        kind=message.kind,
        partner=message.partner,
        outcome=outcome,
        attempts=message.attempts,
        error=error,
    )


async def _record_answer(session: AsyncSession, kit: ExchangeKit, answer: httpx.Response) -> None:
    """The receiver answers an envelope with its signed ``01`` status: keep it like any other."""
    try:
        parsed = edxml.parse_status(answer.content, cert_validator=kit.all_trusted(), limits=kit.limits)
        kit.require_partner_signed(parsed.status.from_.organ_id, parsed.signer_certificate, parsed.certificates[1:])
        await record_status(session, kit, parsed)
    except (edxml.EdxmlError, ProblemError) as exc:
        log.warning("exchange_answer_unreadable", error=str(exc)[:300])


async def run_once(db: Database, kit: ExchangeKit, blobs: svc.Toolkit) -> int:
    """One pass: queue progress statuses, then try every due message. Returns how many were tried."""
    chosen = await _claim(db, kit)
    for message_id in chosen:
        await _attempt(db, kit, blobs, message_id)
    return len(chosen)


async def exchange_worker(runtime: Any) -> None:
    """The background job: a pass every ``exchange_poll_seconds``, or at once when woken."""
    kit: ExchangeKit = runtime.extras["exchange"]
    blobs: svc.Toolkit = runtime.extras["toolkit"]
    while True:
        tried = await run_once(runtime.db, kit, blobs)
        if tried:
            continue
        kit.wake.clear()
        await wait_event(kit.wake, kit.settings.exchange_poll_seconds)


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

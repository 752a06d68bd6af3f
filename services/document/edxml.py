"""edXML (QCVN 102:2016/BTTTT): build and read signed document envelopes and status messages.
Kept whole (about 1000 lines) on purpose: the builders, the signature and the strict parsers are
one wire format, and they stay in step only when read side by side.

Wire layout [secondary: as integrators' code built on the national axis SDK lays it out]::

    <edXML:edXML xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
      <edXML:edXMLEnvelope>
        <edXML:edXMLHeader>
          <edXML:MessageHeader>…</edXML:MessageHeader>   (or <edXML:Status> for a status message)
          <edXML:TraceHeaderList><edXML:TraceHeader>…</edXML:TraceHeader>…</edXML:TraceHeaderList>
          <ds:Signature>…</ds:Signature>                 (XML-DSig, enveloped, with the X.509 cert)
        </edXML:edXMLHeader>
        <edXML:edXMLBody>
          <edXML:edXMLManifest version="1.0">
            <edXML:Reference xlink:href="cid:ID" xlink:type="simple">…</edXML:Reference>…
          </edXML:edXMLManifest>
        </edXML:edXMLBody>
      </edXML:edXMLEnvelope>
      <edXML:AttachmentEncoded>
        <edXML:Attachment><edXML:ContentId>ID</edXML:ContentId>…
          <edXML:ContentTransferEncoded>base64</edXML:ContentTransferEncoded></edXML:Attachment>…
      </edXML:AttachmentEncoded>
    </edXML:edXML>

Attachments travel base64-encoded in the same XML document rather than as SOAP-with-attachments
MIME parts: one byte string is one message, and the signature's reference ``URI=""`` covers the
whole document, so every header field, trace and attachment byte is signed. The price is the
hardened parser's libxml2 limit of 10 MB per text node: one attachment may hold about 7 MB.
A relay that appends a trace header must re-sign.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509 import verification
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    InvalidCertificate,
    InvalidDigest,
    InvalidInput,
    InvalidSignature,
    SignatureConfiguration,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
)
from signxml.algorithms import SignatureConstructionMethod

from services.document.doctypes import Urgency
from shared import clock
from shared import organ_id as organ_ids

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
XLINK_NS = "http://www.w3.org/1999/xlink"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_NSMAP = {"edXML": NS}


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


# --- errors: one class per reason, each with the HTTP status the service should answer -------


class EdxmlError(Exception):
    """An edXML message was refused; ``http_status`` is the suggested 4xx answer."""

    http_status = 400


class MalformedEnvelope(EdxmlError, ValueError):
    """Not well-formed XML, not the edXML structure, a DOCTYPE, or a field out of bounds."""

    http_status = 400


class EnvelopeTooLarge(EdxmlError):
    http_status = 413


class UnsignedEnvelope(EdxmlError):
    http_status = 400


class BadSignature(EdxmlError):
    """The signature does not verify: the message was changed after signing, or forged."""

    http_status = 400


class UnknownCertificate(EdxmlError):
    """The signature verifies but the certificate does not chain to anything the caller trusts."""

    http_status = 403


# --- wire formats and limits (configuration, not constants buried in code) --------------------

VIETNAM_TIME = timezone(timedelta(hours=7), "ICT")


@dataclass(frozen=True)
class WireFormat:
    """How dates and times are written. [secondary] Integrators' code built on the axis SDK
    writes ``2020/05/22`` and ``2020/05/22 14:30:00`` in Vietnam time; other code writes
    ``22/05/2020``, so several forms are read while one is written."""

    date_format: str = "%Y/%m/%d"
    timestamp_format: str = "%Y/%m/%d %H:%M:%S"
    timezone: tzinfo = VIETNAM_TIME
    read_date_formats: tuple[str, ...] = ("%Y/%m/%d", "%Y-%m-%d", "%d/%m/%Y")
    read_timestamp_formats: tuple[str, ...] = (
        "%Y/%m/%d %H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%d/%m/%Y %H:%M:%S",
    )


DEFAULT_WIRE = WireFormat()


@dataclass(frozen=True)
class Limits:
    """What a message may be. Field lengths are Decree 30 annex VI's; OrganId (13) is checked
    in full by :mod:`shared.organ_id`."""

    max_bytes: int = 32 * 1024 * 1024
    max_attachments: int = 50
    # libxml2 refuses a text node over 10 MB without XML_PARSE_HUGE, which we keep off.
    max_attachment_bytes: int = 7_500_000
    max_recipients: int = 1000
    field_lengths: MappingProxyType[str, int] = field(
        default_factory=lambda: MappingProxyType({"CodeNumber": 11, "CodeNotation": 30, "Subject": 500})
    )


DEFAULT_LIMITS = Limits()

# [unverified] Priority numbers for the urgency levels: 0 thường … 3 hỏa tốc.
PRIORITY_BY_URGENCY: MappingProxyType[Urgency, int] = MappingProxyType(
    {Urgency.NORMAL: 0, Urgency.KHAN: 1, Urgency.THUONG_KHAN: 2, Urgency.HOA_TOC: 3}
)


def urgency_for_priority(priority: int) -> Urgency:
    for urgency, number in PRIORITY_BY_URGENCY.items():
        if number == priority:
            return urgency
    raise ValueError(f"no urgency has edXML priority {priority}")


# --- the message header ------------------------------------------------------------------------


@dataclass(frozen=True)
class Organization:
    """An agency as From or To: ``organ_id`` is its 13-character identifier."""

    organ_id: str
    organ_name: str = ""
    organization_in_charge: str = ""
    organ_add: str = ""
    email: str = ""
    telephone: str = ""
    fax: str = ""
    website: str = ""


@dataclass(frozen=True)
class DocumentCode:
    """Số và ký hiệu split as edXML carries it: ``CodeNumber`` ``15``, ``CodeNotation`` ``CT-UBND``.
    :func:`services.document.numbering.edxml_parts` produces the pair from a ``Code``."""

    code_number: str
    code_notation: str

    def __str__(self) -> str:
        return f"{self.code_number}/{self.code_notation}"


@dataclass(frozen=True)
class PromulgationInfo:
    place: str
    promulgation_date: date


@dataclass(frozen=True)
class DocumentType:
    """``type`` is the exchange's type number (unverified list), ``type_name`` the Vietnamese."""

    type: str
    type_name: str


@dataclass(frozen=True)
class SignerInfo:
    competence: str = ""
    position: str = ""
    full_name: str = ""


@dataclass(frozen=True)
class OtherInfo:
    priority: int = 0
    sphere_of_promulgation: str = ""
    typer_notation: str = ""
    promulgation_amount: int = 0
    page_amount: int = 0
    appendixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResponseFor:
    """The document a message answers: its sender, symbol, date and exchange id."""

    organ_id: str
    code: str
    promulgation_date: date
    document_id: str


@dataclass(frozen=True)
class MessageHeader:
    """The document's metadata. ``from_`` is edXML's ``From`` (a Python keyword)."""

    from_: Organization
    to: tuple[Organization, ...]
    code: DocumentCode
    promulgation_info: PromulgationInfo
    document_type: DocumentType
    subject: str
    document_id: str
    content: str = ""
    signer_info: SignerInfo = SignerInfo()
    due_date: date | None = None
    to_places: tuple[str, ...] = ()
    other_info: OtherInfo = OtherInfo()
    response_for: tuple[ResponseFor, ...] = ()
    steering_type: str = ""


def make_document_id(
    organ_id: str, promulgation_date: date, code: DocumentCode, *, wire: WireFormat = DEFAULT_WIRE
) -> str:
    """[secondary] The exchange id as the SDK builds it: ``OrganId,Date,Number/Notation``."""
    return f"{organ_id},{promulgation_date.strftime(wire.date_format)},{code}"


@dataclass(frozen=True)
class TraceHeader:
    """One hop: the agency that handled the message and when."""

    organ_id: str
    timestamp: datetime


@dataclass(frozen=True)
class Attachment:
    """A file carried with the message, referenced from the manifest as ``cid:content_id``."""

    payload: bytes
    content_type: str = "application/octet-stream"
    name: str = ""
    description: str = ""
    content_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class ParsedEnvelope:
    header: MessageHeader
    trace_headers: tuple[TraceHeader, ...]
    attachments: tuple[Attachment, ...]
    signer_certificate: x509.Certificate
    certificates: tuple[x509.Certificate, ...]


# --- status messages ---------------------------------------------------------------------------


class StatusCode(enum.StrEnum):
    """Processing states a receiver reports back. [unverified] All codes: see STATUS_CODES."""

    ARRIVED = "01"
    REFUSED = "02"
    REGISTERED = "03"
    ASSIGNED = "04"
    IN_PROGRESS = "05"
    COMPLETED = "06"
    RECALL_REQUESTED = "13"
    RECALL_ACCEPTED = "15"
    RECALL_REFUSED = "16"


@dataclass(frozen=True)
class StatusCodeInfo:
    meaning: str
    verified: bool


STATUS_CODES: MappingProxyType[StatusCode, StatusCodeInfo] = MappingProxyType(
    {
        StatusCode.ARRIVED: StatusCodeInfo("Đã đến", False),
        StatusCode.REFUSED: StatusCodeInfo("Từ chối tiếp nhận", False),
        StatusCode.REGISTERED: StatusCodeInfo("Đã tiếp nhận (vào sổ)", False),
        StatusCode.ASSIGNED: StatusCodeInfo("Phân công xử lý", False),
        StatusCode.IN_PROGRESS: StatusCodeInfo("Đang xử lý", False),
        StatusCode.COMPLETED: StatusCodeInfo("Hoàn thành", False),
        # Recall/update codes are general knowledge of the national axis, not read in any text.
        StatusCode.RECALL_REQUESTED: StatusCodeInfo("Yêu cầu lấy lại (thu hồi)", False),
        StatusCode.RECALL_ACCEPTED: StatusCodeInfo("Đồng ý thu hồi/cập nhật", False),
        StatusCode.RECALL_REFUSED: StatusCodeInfo("Từ chối thu hồi/cập nhật", False),
    }
)


@dataclass(frozen=True)
class StaffInfo:
    department: str = ""
    staff: str = ""
    email: str = ""
    mobile: str = ""


@dataclass(frozen=True)
class StatusMessage:
    from_: Organization
    response_for: ResponseFor
    status_code: StatusCode
    timestamp: datetime
    description: str = ""
    staff_info: StaffInfo = StaffInfo()


@dataclass(frozen=True)
class ParsedStatus:
    status: StatusMessage
    signer_certificate: x509.Certificate
    certificates: tuple[x509.Certificate, ...]


# --- certificate trust -------------------------------------------------------------------------

CertValidator = Callable[[x509.Certificate, Sequence[x509.Certificate]], None]
"""Called with the signer's certificate and the other certificates the message carried; raises
:class:`UnknownCertificate` when the signer is not trusted."""


def make_cert_validator(trusted: Iterable[x509.Certificate], *, at: datetime | None = None) -> CertValidator:
    """Trust a signer whose certificate is one of ``trusted`` (pinned) or chains to one of them
    (a root CA, such as the Government CA or the local stand-in), valid at ``at`` (default: now).

    No revocation check: plug a validator with CRL/OCSP in as ``cert_validator`` for that.
    """
    anchors = list(trusted)

    def validate(leaf: x509.Certificate, others: Sequence[x509.Certificate]) -> None:
        when = at or clock.now()
        if not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc:
            raise UnknownCertificate("the signer's certificate is not valid at this time")
        _require_signing_usage(leaf)
        if any(leaf == anchor for anchor in anchors):
            return
        if not anchors:
            raise UnknownCertificate("no trusted certificates configured")
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(anchors))
            .time(when)
            .extension_policies(
                # A document-signing certificate is no TLS certificate: no SAN or EKU required.
                ee_policy=verification.ExtensionPolicy.permit_all(),
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            )
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, list(others))
        except verification.VerificationError as exc:
            raise UnknownCertificate(f"signer {leaf.subject.rfc4514_string()} is not trusted: {exc}") from None

    return validate


def _require_signing_usage(cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (usage.digital_signature or usage.content_commitment):
        raise UnknownCertificate("the signer's certificate is not meant for signatures")


# --- building ----------------------------------------------------------------------------------


def _check_lengths(values: dict[str, str], limits: Limits, error: type[Exception]) -> None:
    for name, value in values.items():
        limit = limits.field_lengths.get(name)
        if limit is not None and len(value) > limit:
            raise error(f"{name} is longer than {limit} characters: {value!r}")


def _check_organ_id(value: str, where: str, error: type[Exception]) -> None:
    if not organ_ids.is_valid(value):
        raise error(f"{where} OrganId {value!r} is not an agency identifier")


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _q(name))
    if text is not None:
        element.text = text
    return element


def _timestamp_text(value: datetime, wire: WireFormat) -> str:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    return value.astimezone(wire.timezone).strftime(wire.timestamp_format)


def _organization(parent: etree._Element, name: str, org: Organization) -> None:
    element = _sub(parent, name)
    _sub(element, "OrganId", org.organ_id)
    _sub(element, "OrganizationInCharge", org.organization_in_charge)
    _sub(element, "OrganName", org.organ_name)
    _sub(element, "OrganAdd", org.organ_add)
    _sub(element, "Email", org.email)
    _sub(element, "Telephone", org.telephone)
    _sub(element, "Fax", org.fax)
    _sub(element, "Website", org.website)


def _response_for(parent: etree._Element, rf: ResponseFor, wire: WireFormat) -> None:
    element = _sub(parent, "ResponseFor")
    _sub(element, "OrganId", rf.organ_id)
    _sub(element, "Code", rf.code)
    _sub(element, "PromulgationDate", rf.promulgation_date.strftime(wire.date_format))
    _sub(element, "DocumentId", rf.document_id)


def _message_header(parent: etree._Element, h: MessageHeader, wire: WireFormat) -> None:
    element = _sub(parent, "MessageHeader")
    _organization(element, "From", h.from_)
    for recipient in h.to:
        _organization(element, "To", recipient)
    code = _sub(element, "Code")
    _sub(code, "CodeNumber", h.code.code_number)
    _sub(code, "CodeNotation", h.code.code_notation)
    info = _sub(element, "PromulgationInfo")
    _sub(info, "Place", h.promulgation_info.place)
    _sub(info, "PromulgationDate", h.promulgation_info.promulgation_date.strftime(wire.date_format))
    doc_type = _sub(element, "DocumentType")
    _sub(doc_type, "Type", h.document_type.type)
    _sub(doc_type, "TypeName", h.document_type.type_name)
    _sub(element, "Subject", h.subject)
    _sub(element, "Content", h.content)
    signer = _sub(element, "SignerInfo")
    _sub(signer, "Competence", h.signer_info.competence)
    _sub(signer, "Position", h.signer_info.position)
    _sub(signer, "FullName", h.signer_info.full_name)
    if h.due_date is not None:
        _sub(element, "DueDate", h.due_date.strftime(wire.date_format))
    places = _sub(element, "ToPlaces")
    for place in h.to_places:
        _sub(places, "Place", place)
    other = _sub(element, "OtherInfo")
    _sub(other, "Priority", str(h.other_info.priority))
    _sub(other, "SphereOfPromulgation", h.other_info.sphere_of_promulgation)
    _sub(other, "TyperNotation", h.other_info.typer_notation)
    _sub(other, "PromulgationAmount", str(h.other_info.promulgation_amount))
    _sub(other, "PageAmount", str(h.other_info.page_amount))
    appendixes = _sub(other, "Appendixes")
    for appendix in h.other_info.appendixes:
        _sub(appendixes, "Appendix", appendix)
    for rf in h.response_for:
        _response_for(element, rf, wire)
    _sub(element, "SteeringType", h.steering_type)
    _sub(element, "DocumentId", h.document_id)


_CONTENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+\-]{0,199}$")


def _validate_header(h: MessageHeader, limits: Limits, error: type[Exception]) -> None:
    _check_organ_id(h.from_.organ_id, "From", error)
    if not h.to:
        raise error("a document needs at least one To")
    if len(h.to) > limits.max_recipients:
        raise error(f"more than {limits.max_recipients} recipients")
    for recipient in h.to:
        _check_organ_id(recipient.organ_id, "To", error)
    for rf in h.response_for:
        _check_organ_id(rf.organ_id, "ResponseFor", error)
    _check_lengths(
        {
            "CodeNumber": h.code.code_number,
            "CodeNotation": h.code.code_notation,
            "Subject": h.subject,
        },
        limits,
        error,
    )
    for name, value in (
        ("CodeNumber", h.code.code_number),
        ("CodeNotation", h.code.code_notation),
        ("Subject", h.subject),
        ("DocumentId", h.document_id),
    ):
        if not value.strip():
            raise error(f"{name} must not be empty")
    if h.other_info.priority < 0 or h.other_info.page_amount < 0:
        raise error("Priority and PageAmount cannot be negative")
    if h.other_info.promulgation_amount < 0:
        raise error("PromulgationAmount cannot be negative")


def _validate_attachments(attachments: Sequence[Attachment], limits: Limits, error: type[Exception]) -> None:
    if len(attachments) > limits.max_attachments:
        raise error(f"more than {limits.max_attachments} attachments")
    seen: set[str] = set()
    for a in attachments:
        if not _CONTENT_ID.match(a.content_id):
            raise error(f"content id {a.content_id!r} is not a valid cid")
        if a.content_id in seen:
            raise error(f"content id {a.content_id!r} appears twice")
        if len(a.payload) > limits.max_attachment_bytes:
            raise error(f"attachment {a.name or a.content_id!r} is over {limits.max_attachment_bytes} bytes")
        seen.add(a.content_id)


def _new_document(root_child: Callable[[etree._Element], None]) -> etree._Element:
    root = etree.Element(_q("edXML"), nsmap=_NSMAP)
    envelope = _sub(root, "edXMLEnvelope")
    header = _sub(envelope, "edXMLHeader")
    root_child(header)
    # signxml fills this placeholder, which fixes where the Signature sits.
    etree.SubElement(header, f"{{{DS_NS}}}Signature", Id="placeholder", nsmap={"ds": DS_NS})
    _sub(envelope, "edXMLBody")
    return root


def _sign(
    root: etree._Element,
    signing_key: PrivateKeyTypes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
) -> bytes:
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(root, key=signing_key, cert=[certificate, *chain])
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def build_envelope(
    header: MessageHeader,
    attachments: Sequence[Attachment] = (),
    *,
    signing_key: PrivateKeyTypes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    trace_headers: Sequence[TraceHeader] | None = None,
    wire: WireFormat = DEFAULT_WIRE,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """A signed edXML document envelope as UTF-8 bytes.

    ``trace_headers`` defaults to one hop: the sender, now. ``chain`` adds intermediate CA
    certificates to the signature's KeyInfo after the signer's own.
    """
    _validate_header(header, limits, ValueError)
    _validate_attachments(attachments, limits, ValueError)
    traces = (
        list(trace_headers) if trace_headers is not None else [TraceHeader(header.from_.organ_id, clock.now())]
    )
    for trace in traces:
        _check_organ_id(trace.organ_id, "TraceHeader", ValueError)

    def fill(edxml_header: etree._Element) -> None:
        _message_header(edxml_header, header, wire)
        trace_list = _sub(edxml_header, "TraceHeaderList")
        for trace in traces:
            element = _sub(trace_list, "TraceHeader")
            _sub(element, "OrganId", trace.organ_id)
            _sub(element, "Timestamp", _timestamp_text(trace.timestamp, wire))

    root = _new_document(fill)
    body = root.find(f"{_q('edXMLEnvelope')}/{_q('edXMLBody')}")
    manifest = _sub(body, "edXMLManifest")
    manifest.set("version", "1.0")
    for a in attachments:
        reference = etree.SubElement(manifest, _q("Reference"), nsmap={"xlink": XLINK_NS})
        reference.set(f"{{{XLINK_NS}}}href", f"cid:{a.content_id}")
        reference.set(f"{{{XLINK_NS}}}type", "simple")
        _sub(reference, "ContentId", a.content_id)
        _sub(reference, "ContentType", a.content_type)
        _sub(reference, "Description", a.description)
        _sub(reference, "AttachmentName", a.name)
    if attachments:
        encoded = _sub(root, "AttachmentEncoded")
        for a in attachments:
            element = _sub(encoded, "Attachment")
            _sub(element, "ContentId", a.content_id)
            _sub(element, "ContentType", a.content_type)
            _sub(element, "Description", a.description)
            _sub(element, "AttachmentName", a.name)
            _sub(element, "ContentTransferEncoded", base64.b64encode(a.payload).decode("ascii"))
    data = _sign(root, signing_key, certificate, chain)
    if len(data) > limits.max_bytes:
        raise ValueError(f"the envelope is {len(data)} bytes, over the {limits.max_bytes} limit")
    return data


def build_status(
    status: StatusMessage,
    *,
    signing_key: PrivateKeyTypes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    wire: WireFormat = DEFAULT_WIRE,
) -> bytes:
    """A signed status message (trạng thái xử lý) answering ``status.response_for``."""
    _check_organ_id(status.from_.organ_id, "From", ValueError)
    _check_organ_id(status.response_for.organ_id, "ResponseFor", ValueError)
    code = StatusCode(status.status_code)

    def fill(edxml_header: etree._Element) -> None:
        element = _sub(edxml_header, "Status")
        _response_for(element, status.response_for, wire)
        _organization(element, "From", status.from_)
        _sub(element, "StatusCode", code.value)
        _sub(element, "Description", status.description)
        _sub(element, "Timestamp", _timestamp_text(status.timestamp, wire))
        staff = _sub(element, "StaffInfo")
        _sub(staff, "Department", status.staff_info.department)
        _sub(staff, "Staff", status.staff_info.staff)
        _sub(staff, "Email", status.staff_info.email)
        _sub(staff, "Mobile", status.staff_info.mobile)

    return _sign(_new_document(fill), signing_key, certificate, chain)


# --- parsing -----------------------------------------------------------------------------------


def _hardened_parser() -> etree.XMLParser:
    # No DTD loading, no entity expansion, no network, libxml2's default size guards kept.
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        collect_ids=False,
    )


def _parse_xml(data: bytes, limits: Limits) -> etree._Element:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("an envelope is bytes as received, not text")
    if len(data) > limits.max_bytes:
        raise EnvelopeTooLarge(f"{len(data)} bytes, over the {limits.max_bytes} byte limit")
    try:
        root = etree.fromstring(bytes(data), parser=_hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise MalformedEnvelope(f"not well-formed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise MalformedEnvelope("a DOCTYPE is not allowed in an edXML message")
    for node in root.iter(etree.Entity, etree.ProcessingInstruction):
        raise MalformedEnvelope(f"entities and processing instructions are refused: {node}")
    return root


def _children(parent: etree._Element, name: str) -> list[etree._Element]:
    return parent.findall(_q(name))


def _one(parent: etree._Element, name: str) -> etree._Element:
    found = _children(parent, name)
    if len(found) != 1:
        where = etree.QName(parent).localname
        raise MalformedEnvelope(f"{where} must have exactly one {name}, found {len(found)}")
    return found[0]


def _optional(parent: etree._Element, name: str) -> etree._Element | None:
    found = _children(parent, name)
    if len(found) > 1:
        raise MalformedEnvelope(f"{etree.QName(parent).localname} has {len(found)} {name}")
    return found[0] if found else None


def _text(parent: etree._Element, name: str, *, required: bool = False) -> str:
    element = _one(parent, name) if required else _optional(parent, name)
    if element is None:
        return ""
    if len(element):
        raise MalformedEnvelope(f"{name} must hold text only")
    return element.text or ""


def _int(parent: etree._Element, name: str) -> int:
    text = _text(parent, name).strip()
    if not text:
        return 0
    if not text.isdigit() or len(text) > 9:
        raise MalformedEnvelope(f"{name} must be a small non-negative number, got {text!r}")
    return int(text)


def _date(text: str, name: str, wire: WireFormat) -> date:
    text = text.strip()
    for fmt in wire.read_date_formats:
        try:
            return datetime.strptime(text, fmt).date()  # noqa: DTZ007 - a calendar date, no instant
        except ValueError:
            continue
    raise MalformedEnvelope(f"{name} is not a date: {text!r}")


def _timestamp(text: str, name: str, wire: WireFormat) -> datetime:
    text = text.strip()
    parsed: datetime | None = None
    for fmt in wire.read_timestamp_formats:
        try:
            parsed = datetime.strptime(text, fmt)  # noqa: DTZ007 - a zoneless wire time is Vietnam's, below
            break
        except ValueError:
            continue
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise MalformedEnvelope(f"{name} is not a timestamp: {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=wire.timezone)


def _read_organization(element: etree._Element) -> Organization:
    return Organization(
        organ_id=_text(element, "OrganId", required=True).strip(),
        organization_in_charge=_text(element, "OrganizationInCharge"),
        organ_name=_text(element, "OrganName"),
        organ_add=_text(element, "OrganAdd"),
        email=_text(element, "Email"),
        telephone=_text(element, "Telephone"),
        fax=_text(element, "Fax"),
        website=_text(element, "Website"),
    )


def _read_response_for(element: etree._Element, wire: WireFormat) -> ResponseFor:
    return ResponseFor(
        organ_id=_text(element, "OrganId", required=True).strip(),
        code=_text(element, "Code"),
        promulgation_date=_date(_text(element, "PromulgationDate", required=True), "PromulgationDate", wire),
        document_id=_text(element, "DocumentId", required=True),
    )


def _read_message_header(element: etree._Element, wire: WireFormat) -> MessageHeader:
    code = _one(element, "Code")
    info = _one(element, "PromulgationInfo")
    doc_type = _one(element, "DocumentType")
    signer = _optional(element, "SignerInfo")
    places = _optional(element, "ToPlaces")
    other = _optional(element, "OtherInfo")
    appendixes = _optional(other, "Appendixes") if other is not None else None
    due = _text(element, "DueDate").strip()
    return MessageHeader(
        from_=_read_organization(_one(element, "From")),
        to=tuple(_read_organization(e) for e in _children(element, "To")),
        code=DocumentCode(
            _text(code, "CodeNumber", required=True).strip(),
            _text(code, "CodeNotation", required=True).strip(),
        ),
        promulgation_info=PromulgationInfo(
            place=_text(info, "Place"),
            promulgation_date=_date(_text(info, "PromulgationDate", required=True), "PromulgationDate", wire),
        ),
        document_type=DocumentType(_text(doc_type, "Type"), _text(doc_type, "TypeName")),
        subject=_text(element, "Subject", required=True),
        content=_text(element, "Content"),
        signer_info=SignerInfo(
            competence=_text(signer, "Competence"),
            position=_text(signer, "Position"),
            full_name=_text(signer, "FullName"),
        )
        if signer is not None
        else SignerInfo(),
        due_date=_date(due, "DueDate", wire) if due else None,
        to_places=tuple(p.text or "" for p in _children(places, "Place")) if places is not None else (),
        other_info=OtherInfo(
            priority=_int(other, "Priority"),
            sphere_of_promulgation=_text(other, "SphereOfPromulgation"),
            typer_notation=_text(other, "TyperNotation"),
            promulgation_amount=_int(other, "PromulgationAmount"),
            page_amount=_int(other, "PageAmount"),
            appendixes=tuple(a.text or "" for a in _children(appendixes, "Appendix")) if appendixes is not None else (),
        )
        if other is not None
        else OtherInfo(),
        response_for=tuple(_read_response_for(e, wire) for e in _children(element, "ResponseFor")),
        steering_type=_text(element, "SteeringType"),
        document_id=_text(element, "DocumentId", required=True),
    )


def _read_attachments(root: etree._Element, body: etree._Element) -> tuple[Attachment, ...]:
    manifest = _optional(body, "edXMLManifest")
    references = _children(manifest, "Reference") if manifest is not None else []
    encoded = _optional(root, "AttachmentEncoded")
    payloads: dict[str, bytes] = {}
    for element in _children(encoded, "Attachment") if encoded is not None else []:
        content_id = _text(element, "ContentId", required=True).strip().removeprefix("cid:")
        if content_id in payloads:
            raise MalformedEnvelope(f"attachment {content_id!r} is carried twice")
        raw = "".join(_text(element, "ContentTransferEncoded", required=True).split())
        try:
            payloads[content_id] = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedEnvelope(f"attachment {content_id!r} is not valid base64") from None
    attachments: list[Attachment] = []
    for reference in references:
        href = reference.get(f"{{{XLINK_NS}}}href", "")
        if not href.startswith("cid:"):
            raise MalformedEnvelope(f"a manifest reference must point to cid:, got {href!r}")
        content_id = href.removeprefix("cid:")
        if not _CONTENT_ID.match(content_id):
            raise MalformedEnvelope(f"{href!r} is not a valid cid")
        if content_id not in payloads:
            raise MalformedEnvelope(f"{href} is referenced but not carried")
        attachments.append(
            Attachment(
                payload=payloads.pop(content_id),
                content_type=_text(reference, "ContentType") or "application/octet-stream",
                name=_text(reference, "AttachmentName"),
                description=_text(reference, "Description"),
                content_id=content_id,
            )
        )
    if payloads:
        raise MalformedEnvelope(f"attachments not in the manifest: {sorted(payloads)}")
    return tuple(attachments)


def _envelope_parts(root: etree._Element) -> tuple[etree._Element, etree._Element]:
    if root.tag != _q("edXML"):
        raise MalformedEnvelope(f"the root element must be edXML in {NS}, got {root.tag}")
    envelope = _one(root, "edXMLEnvelope")
    return _one(envelope, "edXMLHeader"), _one(envelope, "edXMLBody")


def _verify(
    root: etree._Element,
    *,
    trusted_certs: Iterable[x509.Certificate] | None,
    cert_validator: CertValidator | None,
) -> tuple[etree._Element, x509.Certificate, tuple[x509.Certificate, ...]]:
    """Check the one signature in edXMLHeader and return what it signed, parsed again."""
    if (trusted_certs is None) == (cert_validator is None):
        raise TypeError("pass exactly one of trusted_certs or cert_validator")
    validator = cert_validator or make_cert_validator(trusted_certs or ())
    edxml_header, _ = _envelope_parts(root)
    signatures = root.findall(f".//{{{DS_NS}}}Signature")
    if not signatures:
        raise UnsignedEnvelope("the message carries no XML signature")
    if len(signatures) > 1 or signatures[0].getparent() is not edxml_header:
        raise MalformedEnvelope("exactly one Signature is allowed, inside edXMLHeader")
    signature = signatures[0]
    references = signature.findall(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference")
    if len(references) != 1 or references[0].get("URI") != "":
        raise BadSignature('the signature must cover the whole message (one Reference URI="")')
    cert_texts = signature.findall(f"{{{DS_NS}}}KeyInfo/{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate")
    if not cert_texts:
        raise BadSignature("the signature carries no X.509 certificate")
    try:
        certs = tuple(
            x509.load_der_x509_certificate(base64.b64decode("".join((c.text or "").split()))) for c in cert_texts
        )
    except (ValueError, binascii.Error):
        raise BadSignature("the signature's certificate cannot be read") from None
    signer_cert, others = certs[0], certs[1:]
    config = SignatureConfiguration(
        require_x509=True,
        location="./*/*/",
        expect_references=1,
        signature_methods=frozenset(
            {
                SignatureMethod.RSA_SHA256,
                SignatureMethod.RSA_SHA384,
                SignatureMethod.RSA_SHA512,
                SignatureMethod.ECDSA_SHA256,
                SignatureMethod.ECDSA_SHA384,
            }
        ),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512}),
    )
    try:
        result: Any = XMLVerifier().verify(root, x509_cert=signer_cert, expect_config=config)
    except (InvalidSignature, InvalidDigest, InvalidCertificate, InvalidInput) as exc:
        raise BadSignature(f"the signature does not verify: {exc}") from None
    # Trust is checked after the maths so that a tampered message reads as tampered.
    validator(signer_cert, others)
    signed = result.signed_xml
    if signed is None or signed.tag != _q("edXML"):
        raise BadSignature("the signature does not cover the edXML document")
    return signed, signer_cert, certs


def parse_envelope(
    data: bytes,
    *,
    trusted_certs: Iterable[x509.Certificate] | None = None,
    cert_validator: CertValidator | None = None,
    wire: WireFormat = DEFAULT_WIRE,
    limits: Limits = DEFAULT_LIMITS,
) -> ParsedEnvelope:
    """Read a received envelope: size, structure, signature and signer trust, in that order.

    Give either ``trusted_certs`` (pinned certificates or root CAs) or a ``cert_validator``.
    Fields are read from the signed content only, never from unsigned parts of the input.
    """
    root = _parse_xml(data, limits)
    _envelope_parts(root)
    signed, signer_cert, certs = _verify(root, trusted_certs=trusted_certs, cert_validator=cert_validator)
    edxml_header, body = _envelope_parts(signed)
    header = _read_message_header(_one(edxml_header, "MessageHeader"), wire)
    _validate_header(header, limits, MalformedEnvelope)
    trace_list = _optional(edxml_header, "TraceHeaderList")
    traces = tuple(
        TraceHeader(
            organ_id=_text(t, "OrganId", required=True).strip(),
            timestamp=_timestamp(_text(t, "Timestamp", required=True), "Timestamp", wire),
        )
        for t in (_children(trace_list, "TraceHeader") if trace_list is not None else [])
    )
    for trace in traces:
        _check_organ_id(trace.organ_id, "TraceHeader", MalformedEnvelope)
    attachments = _read_attachments(signed, body)
    _validate_attachments(attachments, limits, MalformedEnvelope)
    return ParsedEnvelope(header, traces, attachments, signer_cert, certs)


def parse_status(
    data: bytes,
    *,
    trusted_certs: Iterable[x509.Certificate] | None = None,
    cert_validator: CertValidator | None = None,
    wire: WireFormat = DEFAULT_WIRE,
    limits: Limits = DEFAULT_LIMITS,
) -> ParsedStatus:
    """Read a received status message, checked like :func:`parse_envelope`."""
    root = _parse_xml(data, limits)
    _envelope_parts(root)
    signed, signer_cert, certs = _verify(root, trusted_certs=trusted_certs, cert_validator=cert_validator)
    edxml_header, _ = _envelope_parts(signed)
    element = _one(edxml_header, "Status")
    code_text = _text(element, "StatusCode", required=True).strip()
    try:
        code = StatusCode(code_text)
    except ValueError:
        raise MalformedEnvelope(f"unknown StatusCode {code_text!r}") from None
    staff = _optional(element, "StaffInfo")
    status = StatusMessage(
        from_=_read_organization(_one(element, "From")),
        response_for=_read_response_for(_one(element, "ResponseFor"), wire),
        status_code=code,
        description=_text(element, "Description"),
        timestamp=_timestamp(_text(element, "Timestamp", required=True), "Timestamp", wire),
        staff_info=StaffInfo(
            department=_text(staff, "Department"),
            staff=_text(staff, "Staff"),
            email=_text(staff, "Email"),
            mobile=_text(staff, "Mobile"),
        )
        if staff is not None
        else StaffInfo(),
    )
    _check_organ_id(status.from_.organ_id, "From", MalformedEnvelope)
    _check_organ_id(status.response_for.organ_id, "ResponseFor", MalformedEnvelope)
    return ParsedStatus(status, signer_cert, certs)

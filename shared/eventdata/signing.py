"""The events signing emits: their ``data`` schemas are the contract (contracts/events/).

No document content ever travels in them: a document is named by its SHA-256 digest, a
certificate by its serial number (hex), a signer by their user id.
"""

from __future__ import annotations

from pydantic import AwareDatetime

from shared.events import EventData, register


@register("certificate.issued", service="signing")
class CertificateIssued(EventData):
    """The local CA issued a certificate for a person (leader) or an organisation (seal)."""

    serial: str
    kind: str
    agency: str
    owner: str | None
    subject: str
    not_before: AwareDatetime
    not_after: AwareDatetime
    issued_by: str


@register("certificate.revoked", service="signing")
class CertificateRevoked(EventData):
    """A certificate was revoked: OCSP says so at once, the next CRL lists it."""

    serial: str
    kind: str
    agency: str
    owner: str | None
    reason: str
    revoked_at: AwareDatetime
    revoked_by: str


@register("signature.completed", service="signing")
class SignatureCompleted(EventData):
    """A document was signed (person, organisation or attachment)."""

    kind: str
    level: str
    signer: str
    agency: str
    certificate_serial: str
    input_sha256: str
    output_sha256: str
    signed_at: AwareDatetime
    batch_id: str | None


@register("signature.failed", service="signing")
class SignatureFailed(EventData):
    """A signing request was refused (wrong PIN, revoked certificate, bad PDF, …)."""

    kind: str
    signer: str
    agency: str | None
    certificate_serial: str | None
    input_sha256: str | None
    code: str
    status: int
    at: AwareDatetime
    batch_id: str | None

"""Request and response bodies of signing's HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.organ_id import is_valid as is_organ_id

RevocationReasonName = Literal[
    "unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold"
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CertificateRequest(StrictModel):
    """An administrator's request: a person's certificate (a leader: ``user_id`` is their login,
    with full name and position) or an organisation's seal. The key is generated in the token."""

    kind: Literal["person", "organisation"]
    agency: str = Field(description="OrganId of the agency (mã định danh)", examples=["000.00.00.H56"])
    agency_name: str = Field(min_length=1, max_length=64, examples=["Ủy ban nhân dân tỉnh Thanh Hóa"])
    user_id: str | None = Field(default=None, max_length=200, description="person: the gateway username")
    full_name: str | None = Field(default=None, min_length=1, max_length=64)
    position: str | None = Field(default=None, min_length=1, max_length=64, examples=["Chủ tịch"])
    pin: str | None = Field(
        default=None, min_length=6, max_length=64, description="the signer's PIN; generated and returned once if absent"
    )

    @model_validator(mode="after")
    def _complete(self) -> CertificateRequest:
        if not is_organ_id(self.agency):
            raise ValueError("agency must be an OrganId such as 000.00.00.H56")
        if self.kind == "person" and not (self.user_id and self.full_name and self.position):
            raise ValueError("a person's certificate needs user_id, full_name and position")
        if self.kind == "organisation" and (self.user_id or self.full_name or self.position):
            raise ValueError("an organisation's certificate names no person")
        return self


class CertificateOut(BaseModel):
    serial: str
    kind: str
    owner: str | None
    full_name: str | None
    position: str | None
    agency: str
    agency_name: str
    subject: str
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    certificate_pem: str | None = None
    locked: bool | None = Field(default=None, description="locked after too many wrong PINs")


class IssuedCertificateOut(CertificateOut):
    pin: str | None = Field(default=None, description="the generated PIN: shown this once, never stored in clear")


class AgencySignerOut(BaseModel):
    """A person who can sign for the agency: a usable certificate of theirs is in the keystore."""

    user_id: str = Field(description="the gateway username")
    full_name: str | None
    position: str | None
    certificates: list[str] = Field(description="serials (hex) of their usable certificates, newest first")


class AgencySigningOut(BaseModel):
    """What an agency can sign with: its seal(s) and the people with a certificate."""

    organ_id: str
    name: str | None = Field(description="the agency's name as its certificates carry it; null: none issued")
    default_seal: str | None = Field(
        description="serial of the seal a clerk's `kind=organisation` signature uses when none is named; "
        "null: the agency has no usable seal"
    )
    seals: list[CertificateOut] = Field(description="the agency's organisation certificates, newest first")
    signers: list[AgencySignerOut]


class RevokeRequest(StrictModel):
    reason: RevocationReasonName = "unspecified"


class PinReset(StrictModel):
    pin: str | None = Field(default=None, min_length=6, max_length=64, description="generated and returned if absent")


class PinResetOut(BaseModel):
    serial: str
    pin: str | None


class SignatureOut(BaseModel):
    """Headers of a signed PDF, also the per-item result of a batch."""

    certificate_serial: str
    kind: str
    level: str
    input_sha256: str
    output_sha256: str
    signed_at: datetime


class BatchItemOut(BaseModel):
    index: int
    filename: str | None
    ok: bool
    signature: SignatureOut | None = None
    pdf_base64: str | None = None
    error: dict[str, object] | None = Field(default=None, description="problem details of this item")


class BatchOut(BaseModel):
    batch_id: str
    signed: int
    failed: int
    items: list[BatchItemOut]


class CertificateReport(BaseModel):
    subject: str
    common_name: str | None
    title: str | None
    organisation: str | None
    organ_id: str | None
    serial_hex: str
    issuer: str
    not_before: datetime
    not_after: datetime


class TimestampReport(BaseModel):
    time: datetime
    tsa: str
    intact: bool
    trusted: bool


class RevocationReport(BaseModel):
    status: str
    revoked_at: datetime | None
    reason: str | None
    checked_at: datetime | None
    embedded_data: bool
    fetch_errors: list[str]


class ChangesReport(BaseModel):
    later_revisions: int
    level: str
    changed_fields: list[str]
    permitted: bool
    detail: str | None


class SignatureReportOut(BaseModel):
    field_name: str
    signer_name: str | None
    certificate: CertificateReport
    chain: list[str]
    certification: bool
    docmdp_permission: str | None
    intact: bool
    valid: bool
    trusted: bool
    trust_problem: str | None
    revocation: RevocationReport
    signing_time: datetime | None
    timestamp: TimestampReport | None
    coverage: str
    changes: ChangesReport
    error: str | None
    ok: bool


class VerificationOut(BaseModel):
    all_ok: bool
    revisions: int
    number_text: str | None
    sha256: str
    signatures: list[SignatureReportOut]

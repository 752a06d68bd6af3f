"""Request and response bodies of document's API (annex VI names in the descriptions)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.document.doctypes import Secrecy, Urgency
from shared import organ_id

SECRECY_CODES = tuple(s.code for s in Secrecy)
URGENCY_CODES = tuple(u.code for u in Urgency)
SecrecyCode = Literal["none", "mat", "toi_mat", "tuyet_mat"]
UrgencyCode = Literal["thuong", "khan", "thuong_khan", "hoa_toc"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrganRef(Strict):
    """``To{OrganId, OrganName}``."""

    organ_id: str = Field(max_length=13)
    organ_name: str = Field(default="", max_length=200)

    @field_validator("organ_id")
    @classmethod
    def _valid(cls, value: str) -> str:
        if not organ_id.is_valid(value):
            raise ValueError("not an agency identifier (NNN.NN.NN.XNN)")
        return value


class SignerIn(Strict):
    """``SignerInfo{Position, FullName}``."""

    position: str = Field(max_length=100)
    full_name: str = Field(max_length=100)


class DraftIn(Strict):
    """A new draft (dự thảo) of an outgoing document."""

    agency: str = Field(description="OrganId of the issuing agency", max_length=13)
    type_key: str = Field(description="document type, e.g. QĐ, CT, CV (công văn)", max_length=20)
    subject: str = Field(min_length=1, max_length=500, description="Subject (trích yếu)")
    unit_abbr: str | None = Field(default=None, max_length=20, description="drafting unit, needed for a công văn")
    secrecy: SecrecyCode = "none"
    urgency: UrgencyCode = "thuong"
    signer: SignerIn | None = None
    recipients: list[OrganRef] = Field(default_factory=list, max_length=1000)
    to_places: list[str] = Field(default_factory=list, max_length=100, description="Nơi nhận as written")
    page_amount: int | None = Field(default=None, ge=1, le=100000)
    due_date: date | None = None
    language: str = Field(default="vi", max_length=10)
    work_file_id: int | None = None
    dossier_code: str | None = Field(default=None, max_length=30, description="taken from the work file if omitted")


class DraftPatch(Strict):
    """Metadata changes while the document is still a draft."""

    subject: str | None = Field(default=None, min_length=1, max_length=500)
    unit_abbr: str | None = Field(default=None, max_length=20)
    urgency: UrgencyCode | None = None
    signer: SignerIn | None = None
    recipients: list[OrganRef] | None = Field(default=None, max_length=1000)
    to_places: list[str] | None = Field(default=None, max_length=100)
    page_amount: int | None = Field(default=None, ge=1, le=100000)
    due_date: date | None = None


class IncomingIn(Strict):
    """An incoming paper or e-mailed document the clerk registers (văn bản đến)."""

    agency: str = Field(max_length=13, description="the receiving agency")
    type_key: str = Field(max_length=20)
    subject: str = Field(min_length=1, max_length=500)
    code: str | None = Field(default=None, max_length=45, description="number and symbol as written: 15/CT-UBND")
    issued_date: date | None = None
    issuing_organ: OrganRef
    secrecy: SecrecyCode = "none"
    urgency: UrgencyCode = "thuong"
    signer: SignerIn | None = None
    page_amount: int | None = Field(default=None, ge=1, le=100000)
    due_date: date | None = None
    notes: str | None = Field(default=None, max_length=500)


class ContentOut(BaseModel):
    number: int
    sha256: str
    size: int
    media_type: str
    filename: str
    signatures: int
    stage: str
    uploaded_at: datetime


class AttachmentOut(BaseModel):
    id: int
    name: str
    sha256: str
    size: int
    media_type: str
    uploaded_at: datetime


class DocumentOut(BaseModel):
    id: int
    direction: str
    agency: str
    status: str
    version: int
    type_key: str
    type_name: str
    subject: str
    secrecy: str
    urgency: str
    language: str
    page_amount: int | None
    unit_abbr: str | None
    code: str | None = Field(description="number and symbol, e.g. 05/QĐ-UBND")
    code_number: int | None
    code_notation: str | None
    issued_date: date | None
    issuing_organ_id: str | None
    issuing_organ_name: str | None
    signer_position: str | None
    signer_name: str | None
    recipients: list[dict[str, str]]
    to_places: list[str]
    due_date: date | None
    notes: str | None
    arrival_number: int | None
    arrival_date: datetime | None
    duplicate_of: list[int]
    work_file_id: int | None
    dossier_code: str | None
    content_version: int
    issued_at: datetime | None
    recalled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    warnings: list[str] = Field(default_factory=list)


class NumberOut(BaseModel):
    """What the signing service writes into the field prepared in the PDF."""

    id: int
    number: int
    code: str
    code_number: str
    code_notation: str
    series: str
    issued_date: date
    version: int


class AssignIn(Strict):
    assignee: str = Field(min_length=1, max_length=100, description="user id (sub) of the person")
    assignee_name: str = Field(default="", max_length=100)
    role: Literal["main", "support"] = "main"
    note: str | None = Field(default=None, max_length=1000)
    due_date: date | None = Field(default=None, description="omit to use the urgency's working days")


class AssignmentOut(BaseModel):
    id: int
    document_id: int
    agency: str
    assignee: str
    assignee_name: str
    role: str
    assigned_by: str
    note: str | None
    due_date: date
    status: str
    assigned_at: datetime
    completed_at: datetime | None
    overdue: bool = False


class CommentIn(Strict):
    text: str = Field(min_length=1, max_length=4000)


class CommentOut(BaseModel):
    id: int
    document_id: int
    author: str
    author_name: str
    text: str
    created_at: datetime


class RecallIn(Strict):
    reason: str | None = Field(default=None, max_length=500)


class WorkFileIn(Strict):
    organ_id: str = Field(max_length=13)
    file_notation: str = Field(min_length=1, max_length=60)
    title: str = Field(min_length=1, max_length=500)
    file_catalog: int | None = Field(default=None, ge=1900, le=2999, description="year; this year if omitted")


class WorkFileOut(BaseModel):
    id: int
    organ_id: str
    file_catalog: int
    file_notation: str
    title: str
    dossier_code: str | None
    status: str
    opened_at: datetime
    closed_at: datetime | None = None


class SeriesRuleOut(BaseModel):
    """How the agency's head groups document types into number series, from a date."""

    effective_from: date
    in_force: bool = Field(description="the rule numbering uses today")
    administrative: str = Field(description="shared: one series for all administrative types; per_type: one each")
    administrative_groups: dict[str, str]
    secret_apart: bool
    secret_per_group: bool
    copies_apart: bool


class SeriesOut(BaseModel):
    """One number series of the year and the last number it gave."""

    key: str = Field(description="year/group, e.g. 2026/hc or 2026/qppl:QĐ")
    last_number: int


class RegisterOut(BaseModel):
    kind: Literal["outgoing", "incoming"]
    year: int
    entries: int
    path: str = Field(description="the register under the gateway (JSON; add format=csv for CSV)")


class AgencyOut(BaseModel):
    """What one agency can do with documents here: numbering profile, series, registers."""

    organ_id: str
    name: str
    abbreviation: str = Field(description="issuer abbreviation in its symbols, e.g. UBND in 05/QĐ-UBND")
    tier: str
    year: int
    series_rules: list[SeriesRuleOut]
    series: list[SeriesOut] = Field(description="this year's series that gave a number")
    registers: list[RegisterOut]


class ExchangeMessageOut(BaseModel):
    """One edXML message to a partner: a document for one recipient, or a status message."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: Literal["envelope", "status"]
    partner: str = Field(description="OrganId of the agency it goes to")
    exchange_id: str = Field(description="edXML DocumentId")
    status_code: str | None
    description: str | None
    state: Literal["pending", "delivered", "rejected", "cancelled", "not_sent"]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class ExchangeStatusOut(BaseModel):
    from_organ_id: str
    status_code: str = Field(description="01 arrived, 02 refused, 03 registered, 04 assigned, 05 in progress, "
                             "06 completed, 13/15/16 recall (codes unverified)")
    meaning: str
    description: str
    staff: str
    timestamp: datetime
    received_at: datetime


class ExchangeOut(BaseModel):
    """A document's exchange with other agencies: deliveries per recipient and the statuses
    they reported (for a document we sent), or the sender and what we reported (received)."""

    document_id: int
    exchange_id: str | None
    received_from: str | None
    messages: list[ExchangeMessageOut]
    statuses: list[ExchangeStatusOut]


class RefuseIn(Strict):
    """Why a received document goes back to its sender (misaddressed, invalid…)."""

    reason: str = Field(min_length=1, max_length=500)


class StatusRecorded(BaseModel):
    recorded: bool


class _Page(BaseModel):
    next: str | None = Field(description="cursor of the next page; null on the last one")


class DocumentPage(_Page):
    items: list[DocumentOut]


class ContentPage(_Page):
    items: list[ContentOut]


class AttachmentPage(_Page):
    items: list[AttachmentOut]


class CommentPage(_Page):
    items: list[CommentOut]


class AssignmentPage(_Page):
    items: list[AssignmentOut]


class WorkFilePage(_Page):
    items: list[WorkFileOut]


class PublishIn(Strict):
    """Options of the clerk's one call; all may be omitted."""

    seal_certificate: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="serial (hex) of the organisation's certificate; default: the agency's active one",
    )


class PublishOut(DocumentOut):
    """The issued document, with what this call did to get there."""

    seal_certificate: str | None = Field(description="serial of the seal applied (null if it was already sealed)")
    steps: list[Literal["numbered", "number_filled", "sealed", "issued"]] = Field(
        description="what this call did; a call that resumes lists only the remaining steps"
    )

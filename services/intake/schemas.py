"""Request and response bodies of intake's API."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from shared import organ_id
from shared.eventdata.intake import AgencyRecord

ORGAN_PATTERN = r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$"
PROCEDURE_PATTERN = r"^\d\.\d{6}$"


def _valid_organ(value: str) -> str:
    if not organ_id.is_valid(value):
        raise ValueError("not a Decision 20/2020 agency identifier")
    return value


_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_day(value: object) -> object:
    # pydantic's lax mode reads 0 or "0" as a Unix time (1970-01-01): a day is YYYY-MM-DD or nothing
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DAY.match(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_day)]

OrganId = Annotated[str, Field(pattern=ORGAN_PATTERN, examples=["000.00.00.H56"]), AfterValidator(_valid_organ)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ agencies


class AgencyIn(Strict):
    name: str = Field(min_length=1, max_length=300)
    active: StrictBool = True


class AgencyOut(AgencyRecord):
    updated_at: datetime


# ------------------------------------------------------------------ catalogue


class ComponentSpec(Strict):
    """Thành phần hồ sơ of a procedure."""

    name: str = Field(min_length=1, max_length=500)
    copies: int = Field(default=1, ge=1, le=20)
    original_required: StrictBool = True
    required: StrictBool = True


class ComponentSpecOut(ComponentSpec):
    no: int


class ProcedureVersionIn(Strict):
    effective_from: date
    name: str = Field(min_length=1, max_length=500)
    sector: str = Field(min_length=1, max_length=200)
    receiving_agencies: list[OrganId] = Field(min_length=1, max_length=200)
    deciding_agency: OrganId
    processing_hours: Decimal = Field(gt=0, le=100_000, decimal_places=2)
    cutoff: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["15:00"])
    fee_vnd: int = Field(default=0, ge=0)
    components: list[ComponentSpec] = Field(default_factory=list, max_length=100)
    online_level: str = Field(pattern=r"^(full|partial|none)$")


class ProcedureVersionOut(BaseModel):
    code: str
    version: int
    effective_from: date
    name: str
    sector: str
    receiving_agencies: list[str]
    codes_at_agencies: list[str]
    deciding_agency: str
    processing_hours: Decimal
    cutoff: str | None
    fee_vnd: int
    components: list[ComponentSpecOut]
    online_level: str


class ProcedureOut(BaseModel):
    code: str
    current: ProcedureVersionOut | None = Field(description="the version in force today")
    versions: list[ProcedureVersionOut]


# ------------------------------------------------------------------ calendar


class CalendarOverrideIn(Strict):
    working: StrictBool
    reason: str = Field(min_length=1, max_length=500)


class CalendarOverrideOut(BaseModel):
    day: date
    working: bool
    reason: str


class CalendarDay(BaseModel):
    day: date
    name: str


class CalendarYearOut(BaseModel):
    year: int
    days_off: list[CalendarDay]
    working_weekend_days: list[CalendarDay]
    overrides: list[CalendarOverrideOut]


class DueOut(BaseModel):
    accepted_at: datetime
    clock_start: datetime
    hours: Decimal
    cutoff: str | None
    due_at: datetime | None = Field(description="None while a pause has no end")


# ------------------------------------------------------------------ dossiers


class Applicant(Strict):
    full_name: str = Field(min_length=1, max_length=200)
    id_number: str | None = Field(default=None, max_length=20)
    phone: str | None = Field(default=None, max_length=20)
    email: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=500)


class FileIn(Strict):
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=3, max_length=100, examples=["application/pdf"])
    content_base64: str = Field(min_length=1)


class ComponentIn(Strict):
    """A component handed in: ``no`` is its number in the procedure (see GET /procedures).

    At the desk a paper-only component has no ``file``; online every component needs one.
    """

    no: int = Field(ge=1, le=100)
    copies: int | None = Field(default=None, ge=1, le=20)
    original: StrictBool | None = None
    file: FileIn | None = None


class DossierSubmission(Strict):
    agency: OrganId
    procedure_code: str = Field(min_length=3, max_length=40, examples=["1.001193", "1.001193.000.00.41.H56"])
    applicant: Applicant
    components: list[ComponentIn] = Field(default_factory=list, max_length=100)


class ComponentOut(BaseModel):
    no: int
    name: str
    copies: int
    original: bool
    digitised: bool
    sha256: str | None
    size: int | None
    content_type: str | None
    filename: str | None
    supplement: bool


class IssuedResultOut(BaseModel):
    """A result document issued for the dossier (from ``document.issued``)."""

    document_id: int
    number: str | None
    summary: str | None
    issued_at: datetime | None
    download_path: str | None
    learnt_at: datetime


class DossierOut(BaseModel):
    code: str
    agency: str
    procedure_code: str
    procedure_version: int
    procedure_name: str
    channel: str
    status: int
    status_label: str
    paused_from: int | None
    applicant: Applicant
    received_at: datetime
    accepted_at: datetime | None
    due_at: datetime | None
    finished_at: datetime | None
    finished_on_time: bool | None
    returned_at: datetime | None
    components: list[ComponentOut]
    result: dict[str, Any] | None
    pending_results: list[IssuedResultOut] = Field(
        default_factory=list,
        description="documents issued for this dossier while its status could not take them; each is "
        "applied (the dossier finished with it) as soon as the status allows",
    )
    allowed_actions: list[str]


class DossierPage(BaseModel):
    items: list[DossierOut]
    next: str | None = Field(description="cursor of the next page; absent on the last page")


class MissingItemIn(Strict):
    name: str = Field(min_length=1, max_length=500)
    detail: str | None = Field(default=None, max_length=1000)


class ResultIn(Strict):
    """The result a manual finish names: a document issued for this dossier (its number as in
    ``document.issued``); free text is refused."""

    document_number: str = Field(min_length=1, max_length=60, examples=["05/QĐ-UBND"])
    summary: str | None = Field(default=None, max_length=1000)


class ActionRequest(Strict):
    """Body of ``POST /dossiers/{code}/actions/{action}``; which fields each action needs is in
    ``ACTION_FIELDS`` (a field another action uses is refused, not ignored)."""

    note: str | None = Field(default=None, max_length=2000)
    reasons: list[Annotated[str, Field(min_length=1, max_length=1000)]] | None = Field(default=None, max_length=50)
    missing_items: list[MissingItemIn] | None = Field(default=None, max_length=100)
    to_whom: str | None = Field(default=None, min_length=1, max_length=300)
    allotted_hours: Decimal | None = Field(default=None, gt=0, le=100_000)
    amount_vnd: int | None = Field(default=None, ge=0)
    components: list[ComponentIn] | None = Field(default=None, max_length=100)
    result: ResultIn | None = None


class HandoffIn(Strict):
    to_whom: str = Field(min_length=1, max_length=300)
    allotted_hours: Decimal | None = Field(default=None, gt=0, le=100_000)
    note: str | None = Field(default=None, max_length=2000)


class HandoffOut(BaseModel):
    from_whom: str
    to_whom: str
    handed_at: datetime
    allotted_hours: Decimal | None
    step_due_at: datetime | None
    completed_at: datetime | None
    used_hours: Decimal | None
    timeliness: str | None
    note: str | None


class ExtensionIn(Strict):
    new_due_at: AwareDatetime
    reason: str = Field(min_length=1, max_length=2000)
    signer_title: str = Field(default="Trưởng bộ phận", max_length=200)


class DueDateChangeOut(BaseModel):
    at: datetime
    old_due_at: datetime | None
    new_due_at: datetime | None
    cause: str
    reason: str | None
    actor_name: str


class HistoryEntry(BaseModel):
    action: str
    from_status: int | None
    to_status: int
    at: datetime
    actor: str = Field(description="the token subject of who acted, or system")
    actor_name: str
    details: dict[str, Any]


class DossierHistory(BaseModel):
    code: str
    events: list[HistoryEntry]
    due_date_changes: list[DueDateChangeOut]
    handoffs: list[HandoffOut]


class LookupOut(BaseModel):
    """What the public look-up reveals: status and dates, nothing about the applicant."""

    code: str
    status: int
    status_label: str
    received_at: datetime
    accepted_at: datetime | None
    due_at: datetime | None
    finished_at: datetime | None
    returned_at: datetime | None


class IndicatorsOut(BaseModel):
    agency: str
    period_from: date
    period_to: date
    received: int
    received_online: int
    online_share: float | None
    finished_on_time: int
    finished_late: int
    on_time_rate: float | None
    overdue_now: int
    average_processing_hours: float | None
    components_total: int
    components_digitised: int
    digitised_components_share: float | None
    weights: dict[str, int]


class IndicatorsByAgencyOut(BaseModel):
    """An agency's indicators and each of its active direct units', in one answer (a dashboard
    asked once per unit before)."""

    items: list[IndicatorsOut] = Field(description="the agency first, then its units by code")

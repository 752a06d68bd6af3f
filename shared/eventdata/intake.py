"""The events intake emits: their ``data`` schemas are the contract (contracts/events/).

Personal data policy: dossier events carry no applicant data at all — not the name, not the
contacts, not the ID number. They flow into the append-only audit log (which cannot forget) and
out to integrators' webhooks; whoever needs the person asks the API with their own token, where
agency scoping applies. ``owner`` is the applicant's account id (a pseudonymous token subject,
only for online submissions), enough for the notification part to reach the citizen through
their account. Every dossier event names the dossier (``code``, also the CloudEvent subject),
its receiving agency, the procedure and the version it is handled under, the status before and
after, when, and the due date as it stands after the change.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from pydantic import AwareDatetime, BaseModel

from shared.events import Actor, EventData, register


class DossierCode(NamedTuple):
    """Mã hồ sơ, the ``code`` of every dossier event: ``<agency identifier>-<yyMMdd>-<sequence>``
    (four digits or more), e.g. ``000.17.22.H56-210531-0001``. A national format, printed on the
    receipt: intake writes codes with :meth:`prefix`, a consumer reads them with :meth:`parse`."""

    agency: str
    day: str  # yyMMdd, the receiving agency's day (Vietnamese time)
    sequence: str  # as written, zero-padded

    @staticmethod
    def prefix(agency: str, day: date) -> str:
        """What precedes the sequence in the codes of ``agency``'s dossiers received on ``day``."""
        return f"{agency}-{day:%y%m%d}-"

    @classmethod
    def parse(cls, code: str) -> DossierCode | None:
        """The parts of ``code``; None for a code not in the format."""
        found = _DOSSIER_CODE.fullmatch(code)
        return cls(*found.groups()) if found else None


_DOSSIER_CODE = re.compile(r"(.+)-(\d{6})-(\d{4,})")


class IntakeEvent(EventData):
    """Every event intake emits names who caused it: the officer or citizen who acted, or the
    system with its reason (e.g. the issued document it applied); never left out."""

    actor: Actor


@register("dossier.received", service="intake")
class DossierReceived(IntakeEvent):
    """A dossier was submitted online (status 1) or received at the desk (status 2)."""

    code: str
    agency: str
    procedure_code: str
    procedure_version: int
    status: int
    channel: str
    received_at: AwareDatetime
    due_at: AwareDatetime | None
    owner: str | None


class DossierStep(IntakeEvent):
    """What every dossier transition event says."""

    code: str
    agency: str
    procedure_code: str
    procedure_version: int
    channel: str
    owner: str | None
    action: str
    from_status: int
    status: int
    at: AwareDatetime
    due_at: AwareDatetime | None


@register("dossier.accept", service="intake")
class DossierAccepted(DossierStep):
    """An online dossier was accepted by the desk (1 → 2): the clock starts."""

    accepted_at: AwareDatetime


@register("dossier.refuse", service="intake")
class DossierRefused(DossierStep):
    """The desk refused the dossier (→ 3), with reasons (form 03)."""

    reasons: list[str]


@register("dossier.start_processing", service="intake")
class DossierProcessingStarted(DossierStep):
    """The desk transferred the dossier to the competent unit (2 → 4)."""

    to_whom: str | None


@register("dossier.request_supplement", service="intake")
class DossierSupplementRequested(DossierStep):
    """A supplement was requested (→ 5), listing every missing item (form 02); clock paused."""

    missing_items: list[str]


@register("dossier.supplement_received", service="intake")
class DossierSupplementReceived(DossierStep):
    """The supplement arrived: back to the status it was paused from; clock resumes."""

    components_added: int


@register("dossier.request_fees", service="intake")
class DossierFeesRequested(DossierStep):
    """Financial obligations were requested (4 → 6)."""

    amount_vnd: int | None


@register("dossier.fees_paid", service="intake")
class DossierFeesPaid(DossierStep):
    """The applicant paid (6 → 4)."""


@register("dossier.withdraw", service="intake")
class DossierWithdrawn(DossierStep):
    """The applicant withdrew the dossier (→ 7)."""

    reason: str | None


@register("dossier.stop", service="intake")
class DossierStopped(DossierStep):
    """Processing was stopped (→ 8), with reasons."""

    reasons: list[str]


class DossierResult(BaseModel):
    document_id: int | None = None
    number: str | None = None
    content_sha256: str | None = None
    download_path: str | None = None
    summary: str | None = None
    issued_at: AwareDatetime | None = None


@register("dossier.finish", service="intake")
class DossierFinished(DossierStep):
    """The result is ready (4 → 9), by hand or from ``document.issued``; ``on_time`` against
    the due date in force."""

    result: DossierResult | None
    on_time: bool | None
    hours_used: Decimal | None


@register("dossier.return_result", service="intake")
class DossierResultReturned(DossierStep):
    """The result was handed to the applicant (9 → 10)."""


class AddedFile(BaseModel):
    sha256: str
    size: int
    content_type: str


@register("dossier.files_added", service="intake")
class DossierFilesAdded(IntakeEvent):
    """Files were added to a component of a dossier that takes them: before acceptance (1), or
    while a supplement is requested (5; ``supplement`` true)."""

    code: str
    agency: str
    owner: str | None
    status: int
    component_no: int
    files: list[AddedFile]
    supplement: bool
    at: AwareDatetime


@register("dossier.extend", service="intake")
class DossierExtended(IntakeEvent):
    """The due date was moved before it passed, with an apology (form 04)."""

    code: str
    agency: str
    owner: str | None
    old_due_at: AwareDatetime
    new_due_at: AwareDatetime
    reason: str
    at: AwareDatetime


@register("dossier.handoff", service="intake")
class DossierHandedOff(IntakeEvent):
    """A hand-off between units or people (a line of the tracking sheet, form 05)."""

    code: str
    agency: str
    from_whom: str
    to_whom: str
    handed_at: AwareDatetime
    step_due_at: AwareDatetime | None
    previous_step_timeliness: str | None


class AgencyRecord(BaseModel):
    """An agency of the tree as intake keeps it: what ``agency.changed`` carries, and what intake's
    API shows of it (the two say the same thing on purpose)."""

    code: str
    name: str
    parent_code: str | None
    level: int
    active: bool
    version: int


@register("agency.changed", service="intake")
class AgencyChanged(AgencyRecord, IntakeEvent):
    """An agency was created or changed: how every part learns of the agency tree."""


@register("procedure.changed", service="intake")
class ProcedureChanged(IntakeEvent):
    """A procedure version was added to the catalogue."""

    code: str
    version: int
    effective_from: date
    name: str
    sector: str
    receiving_agencies: list[str]
    deciding_agency: str
    processing_hours: Decimal


STEP_EVENTS: dict[str, type[DossierStep]] = {
    "accept": DossierAccepted,
    "refuse": DossierRefused,
    "start_processing": DossierProcessingStarted,
    "request_supplement": DossierSupplementRequested,
    "supplement_received": DossierSupplementReceived,
    "request_fees": DossierFeesRequested,
    "fees_paid": DossierFeesPaid,
    "withdraw": DossierWithdrawn,
    "stop": DossierStopped,
    "finish": DossierFinished,
    "return_result": DossierResultReturned,
}

"""The events document emits. A secret document's events never carry its subject or content."""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel

from shared.events import Actor, EventData, register


class DocumentEvent(EventData):
    """Every fact of this part names who caused it: a person or client, or the system and why."""

    actor: Actor


@register("workfile.opened", service="document")
class WorkFileOpened(DocumentEvent):
    """A work dossier (hồ sơ công việc) was opened, e.g. for a one-stop-shop dossier."""

    id: int
    organ_id: str
    file_catalog: int
    file_notation: str
    dossier_code: str | None


@register("workfile.closed", service="document")
class WorkFileClosed(DocumentEvent):
    """A work dossier was closed: its matter is over."""

    id: int
    organ_id: str
    file_catalog: int
    file_notation: str
    dossier_code: str | None
    closed_at: AwareDatetime


class Organ(BaseModel):
    organ_id: str
    organ_name: str = ""


@register("document.issued", service="document")
class DocumentIssued(DocumentEvent):
    """An outgoing document was issued (ban hành). ``dossier_code`` links it to the one-stop-shop
    dossier whose result it is; ``download_path`` is under the gateway's ``/api/document``."""

    id: int
    agency: str
    code: str
    code_number: str
    code_notation: str
    type_key: str
    type_name: str
    subject: str | None
    secret: bool
    urgency: str
    issued_date: date
    issued_at: AwareDatetime
    signer_name: str | None
    recipients: list[Organ]
    dossier_code: str | None
    work_file_id: int | None
    content_sha256: str
    download_path: str


@register("document.drafted", service="document")
class DocumentDrafted(DocumentEvent):
    """A draft (dự thảo) of an outgoing document was started, possibly inside a work dossier."""

    id: int
    agency: str
    type_key: str
    type_name: str
    subject: str | None
    secret: bool
    urgency: str
    work_file_id: int | None
    dossier_code: str | None
    created_at: AwareDatetime


@register("document.numbered", service="document")
class DocumentNumbered(DocumentEvent):
    """The system gave an outgoing document its number (cấp số) from its series: once, gap-free."""

    id: int
    agency: str
    code: str
    code_number: str
    code_notation: str
    number: int
    series: str
    type_key: str
    secret: bool
    issued_date: date
    numbered_at: AwareDatetime
    dossier_code: str | None
    work_file_id: int | None


@register("document.received", service="document")
class DocumentReceived(DocumentEvent):
    """A document arrived for an agency (from an agency of this deployment or by exchange)."""

    id: int
    agency: str
    code: str | None
    issuing_organ_id: str | None
    source: str | None
    subject: str | None
    secret: bool
    urgency: str
    received_at: AwareDatetime


@register("document.registered", service="document")
class DocumentRegistered(DocumentEvent):
    """An incoming document was entered in the register with its arrival number (số đến)."""

    id: int
    agency: str
    arrival_number: int
    arrival_year: int
    code: str | None
    issuing_organ_id: str | None
    subject: str | None
    secret: bool
    urgency: str
    duplicate_of: list[int]


@register("document.assigned", service="document")
class DocumentAssigned(DocumentEvent):
    """A leader assigned an incoming document to someone, with a due date."""

    id: int
    document_id: int
    agency: str
    assignee: str
    role: str
    due_date: date
    urgency: str
    subject: str | None


@register("document.recalled", service="document")
class DocumentRecalled(DocumentEvent):
    """An issued document was recalled (thu hồi); receivers delete their copy."""

    id: int
    agency: str
    code: str | None
    recipients: list[Organ]
    reason: str | None
    recalled_at: AwareDatetime

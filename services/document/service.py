"""What every document rule rests on: the part's toolkit, Vietnam's day, who sees which
document, a new document row and how one is shown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from fastapi import Request
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document.blobs import FileCipher, LocalBlobStore
from services.document.config import DocumentSettings
from services.document.doctypes import DEFAULT_DOC_TYPES, DocType, Secrecy, Urgency
from services.document.models import Document
from services.document.state import DocumentState
from services.document.workdays import WorkingCalendar
from shared import clock, organ_id
from shared.auth import Caller
from shared.errors import Forbidden, NotFound, Unprocessable
from shared.text import fold, tokens

PDF_MAGIC = b"%PDF-"
# who works on documents inside an agency (read, draft, process); desks and auditors read less
STAFF = ("specialist", "leader", "clerk", "admin")
ARRIVAL_SERIES = "den"


@dataclass
class Toolkit:
    """What the part holds for its requests: settings, the blob store, the cipher, the calendar."""

    settings: DocumentSettings
    blobs: LocalBlobStore
    cipher: FileCipher
    calendar: WorkingCalendar


def build_toolkit(settings: DocumentSettings) -> Toolkit:
    return Toolkit(
        settings=settings,
        blobs=LocalBlobStore(settings.resolved_blob_dir),
        cipher=FileCipher(settings.file_keys, active=settings.file_key_active),
        calendar=WorkingCalendar(country=settings.holiday_country, extra_days_off=settings.extra_holidays),
    )


def toolkit(request: Request) -> Toolkit:
    return DocumentState.of(request).toolkit


def now_utc() -> datetime:
    return clock.now()


def start_of(day: date) -> datetime:
    """Midnight at the start of ``day`` in Vietnam, as an aware datetime."""
    return datetime.combine(day, datetime.min.time(), tzinfo=clock.VN_TZ)


def end_of(day: date) -> datetime:
    return start_of(day + timedelta(days=1))


def vietnam_today(at: datetime | None = None) -> date:
    """The calendar day in Vietnam: numbering years and deadlines follow local dates."""
    return clock.vn_date_of(at or now_utc())


# --- visibility -------------------------------------------------------------------------------


def visible(caller: Caller, doc: Document) -> bool:
    """Inside the caller's agency subtree and within their clearance; otherwise it does not exist."""
    return caller.acts_in(doc.agency) and caller.may_see_secrecy(doc.secrecy_rank)


def agency_filter(caller: Caller, column: Any) -> Any:
    """The caller's agency subtree as SQL: an OrganId is read right to left, so a subtree is a suffix."""
    if "service" in caller.roles:
        return None
    if caller.agency is None:
        return column.is_(None) & column.is_not(None)  # nothing
    depth = organ_id.level(caller.agency)
    if depth == 4:
        return column == caller.agency
    return column.like("%." + ".".join(caller.agency.split(".")[-depth:]))


def visible_query(caller: Caller) -> Select[tuple[Document]]:
    """The documents ``caller`` may see, as a query to narrow further."""
    query = select(Document).where(Document.secrecy_rank <= caller.clearance)
    clause = agency_filter(caller, Document.agency)
    return query if clause is None else query.where(clause)


def require_role(caller: Caller, *roles: str) -> None:
    if not caller.has_any(*roles, "service"):
        raise Forbidden(f"this step needs one of the roles: {', '.join(roles)}")


async def get_visible(session: AsyncSession, caller: Caller, document_id: int, *, lock: bool = False) -> Document:
    query = select(Document).where(Document.id == document_id)
    if lock:
        query = query.with_for_update()
    doc = (await session.execute(query)).scalar_one_or_none()
    if doc is None or not visible(caller, doc):
        raise NotFound(f"no document {document_id}")
    return doc


def doc_type(key: str) -> DocType:
    try:
        return DEFAULT_DOC_TYPES.get(key)
    except KeyError:
        raise Unprocessable(f"unknown document type {key!r}") from None


def classify(caller: Caller, type_key: str, secrecy_code: str) -> tuple[DocType, Secrecy]:
    """The type and secrecy of a new document; 403 for a secrecy above the caller's clearance."""
    kind = doc_type(type_key)
    secrecy = Secrecy.from_code(secrecy_code)
    if not caller.may_see_secrecy(secrecy.rank):
        raise Forbidden("you are not cleared for that secrecy level")
    return kind, secrecy


def search_text_for(doc: Document) -> str:
    """Folded words of everything a user may search by (the subject never leaves the row)."""
    parts = [doc.subject, doc.type_name, doc.code_text or "", doc.issuing_organ_name or "", doc.signer_name or ""]
    return " ".join(tokens(" ".join(parts)))


def touch(doc: Document) -> None:
    doc.version += 1
    doc.updated_at = now_utc()
    doc.search_text = search_text_for(doc)


# --- views ---------------------------------------------------------------------------------------


def secrecy_of(doc: Document) -> Secrecy:
    return Secrecy.from_code(doc.secrecy)


def duplicate_warning(doc: Document) -> list[str]:
    if not doc.duplicate_of:
        return []
    return [
        f"duplicate: incoming document(s) {', '.join(map(str, doc.duplicate_of))} already have number and "
        f"symbol {doc.code_text} from {doc.issuing_organ_id}"
    ]


def to_out(doc: Document, *, warnings: list[str] | None = None) -> dict[str, Any]:
    return {
        **{c.key: getattr(doc, c.key) for c in Document.__table__.columns if c.key != "search_text"},
        "code": doc.code_text,
        "warnings": warnings if warnings is not None else duplicate_warning(doc),
    }


def new_document(**fields: Any) -> Document:
    now = now_utc()
    secrecy = Secrecy.from_code(fields.get("secrecy", "none"))
    Urgency.from_code(fields.get("urgency", "thuong"))
    doc = Document(
        version=1,
        secrecy_rank=secrecy.rank,
        content_version=0,
        recipients=[],
        to_places=[],
        duplicate_of=[],
        created_at=now,
        updated_at=now,
        **fields,
    )
    doc.search_text = search_text_for(doc)
    return doc


def folded_words(query: str) -> list[str]:
    return tokens(fold(query))

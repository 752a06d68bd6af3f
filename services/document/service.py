"""The document rules that endpoints and handlers share: visibility, files, numbering, issue,
registration of incoming documents and delivery inside the deployment."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from sqlalchemy import Select, and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import lifecycle
from services.document.blobs import FileCipher, LocalBlobStore
from services.document.config import DocumentSettings
from services.document.doctypes import DEFAULT_DOC_TYPES, DocType, Secrecy, Urgency
from services.document.events import (
    DocumentIssued,
    DocumentNumbered,
    DocumentReceived,
    DocumentRegistered,
    Organ,
    WorkFileClosed,
    WorkFileOpened,
)
from services.document.lifecycle import AlreadyNumbered, Step
from services.document.models import ContentVersion, Document, WorkFile, counters, outbox
from services.document.numbering import MalformedCode, edxml_parts, format_code, parse_code, series_key_for
from services.document.workdays import WorkingCalendar
from shared import clock, organ_id
from shared.auth import Caller
from shared.db import next_value
from shared.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from shared.events import Actor
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
    return request.app.state.runtime.extras["toolkit"]


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


def search_text_for(doc: Document) -> str:
    """Folded words of everything a user may search by (the subject never leaves the row)."""
    parts = [doc.subject, doc.type_name, doc.code_text or "", doc.issuing_organ_name or "", doc.signer_name or ""]
    return " ".join(tokens(" ".join(parts)))


def touch(doc: Document) -> None:
    doc.version += 1
    doc.updated_at = now_utc()
    doc.search_text = search_text_for(doc)


# --- files ----------------------------------------------------------------------------------


@dataclass
class Staged:
    """An upload spooled to disk while hashed and measured; not yet in the store."""

    path: Path
    sha256: str
    size: int
    head: bytes

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def spool_upload(request: Request, kit: Toolkit) -> Staged:
    """Stream the request body to a temporary file, hashing it; 413 past the size limit."""
    limit = kit.settings.max_file_bytes
    digest = hashlib.sha256()
    size = 0
    head = b""
    spool = kit.blobs.spool()
    path = Path(spool.name)
    try:
        with spool:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"a file may be at most {limit} bytes")
                if len(head) < 8:
                    head = (head + chunk)[:8]
                digest.update(chunk)
                spool.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - a local temporary file, on the error path
        raise
    if size == 0:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - an empty local temporary file
        raise Unprocessable("the file is empty")
    return Staged(path=path, sha256=digest.hexdigest(), size=size, head=head)


def require_pdf(staged: Staged) -> None:
    """The type is read from the bytes, never from the name or the declared content type."""
    if not staged.head.startswith(PDF_MAGIC):
        staged.discard()
        raise UnsupportedMediaType("the file is not a PDF (it does not start with %PDF-)")


def count_signatures(path: Path) -> int:
    """Signature fields that hold a signature, read with pyHanko; a PDF it cannot read is 422."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        with path.open("rb") as f:
            return len(PdfFileReader(f, strict=False).embedded_signatures)
    except Exception as exc:
        raise Unprocessable(f"the PDF cannot be read: {type(exc).__name__}") from exc


def starts_with_blob(kit: Toolkit, version: ContentVersion, path: Path) -> bool:
    """True when the new file appends to the previous version's bytes (incremental update)."""
    previous = read_blob(kit, version.blob)
    if os.path.getsize(path) <= len(previous):
        return False
    with path.open("rb") as f:
        return f.read(len(previous)) == previous


def commit_blob(kit: Toolkit, staged: Staged, *, secret: bool) -> str:
    """Move a staged file into the store; a secret document's file is encrypted first."""
    if not secret:
        kit.blobs.put_file(staged.sha256, staged.path)
        return staged.sha256
    plaintext = staged.path.read_bytes()
    name = f"{staged.sha256}.{kit.cipher.active}.enc"
    kit.blobs.put_bytes(name, kit.cipher.encrypt(plaintext, associated=staged.sha256.encode()))
    staged.discard()
    return name


def read_blob(kit: Toolkit, name: str) -> bytes:
    data = kit.blobs.read(name)
    if name.endswith(".enc"):
        return kit.cipher.decrypt(data, associated=name.split(".", 1)[0].encode())
    return data


async def latest_content(session: AsyncSession, doc: Document) -> ContentVersion | None:
    if not doc.content_version:
        return None
    return (
        await session.execute(
            select(ContentVersion).where(
                ContentVersion.document_id == doc.id, ContentVersion.number == doc.content_version
            )
        )
    ).scalar_one_or_none()


# --- numbering ----------------------------------------------------------------------------------


def secrecy_of(doc: Document) -> Secrecy:
    return Secrecy.from_code(doc.secrecy)


async def assign_number(session: AsyncSession, doc: Document, *, settings: DocumentSettings, today: date) -> str:
    """Take the next number of the document's series, in the caller's transaction (gap-free:
    a rolled-back request gives it back) and write number and symbol on the document."""
    profile = settings.agencies.get(doc.agency)
    if profile is None:
        raise Unprocessable(f"agency {doc.agency} has no numbering profile in this deployment")
    kind = doc_type(doc.type_key)
    rules = [r.to_rule() for r in profile.series]
    try:
        series = series_key_for(kind, secrecy_of(doc), rules, on=today)
    except LookupError as exc:
        raise Unprocessable(str(exc)) from exc
    if kind.is_cong_van and not doc.unit_abbr:
        raise Unprocessable("a công văn needs the drafting unit (unit_abbr) for its symbol")
    number = await next_value(session, counters, f"{doc.agency}:{series}")
    try:
        code = format_code(
            number,
            type_abbr=kind.abbreviation,
            issuer_abbr=profile.abbreviation,
            unit_abbr=doc.unit_abbr if kind.is_cong_van else None,
            year=today.year if kind.is_legal else None,
        )
        _, notation = edxml_parts(parse_code(code, cong_van=kind.is_cong_van))
    except MalformedCode as exc:
        raise Unprocessable(f"cannot write the symbol: {exc}") from exc
    doc.series_key = series
    doc.code_number = number
    doc.code_text = code
    doc.code_notation = notation
    doc.issued_date = today
    doc.issuing_organ_id = doc.agency
    doc.issuing_organ_name = profile.name
    return code


def split_code(doc: Document) -> tuple[str, str]:
    """(``CodeNumber``, ``CodeNotation``) of a numbered document: ``("05", "QĐ-UBND")``."""
    code, notation = doc.code_text or "", doc.code_notation or ""
    return code[: len(code) - len(notation) - 1], notation


async def number_once(session: AsyncSession, doc: Document, *, settings: DocumentSettings, actor: Actor) -> None:
    """Cấp số: the document (locked by the caller, signed by its leader) takes the next number of
    its series, in the caller's transaction, and ``document.numbered`` says so."""
    if doc.code_number is not None:  # an incoming document came with its issuer's number
        raise AlreadyNumbered(f"this document already has its number {doc.code_text}")
    lifecycle.check(Step.NUMBER, doc)
    now = now_utc()
    await assign_number(session, doc, settings=settings, today=vietnam_today(now))
    lifecycle.move(Step.NUMBER, doc)
    doc.numbered_at_version = doc.content_version
    doc.numbered_at = now
    touch(doc)
    await session.flush()
    number, notation = split_code(doc)
    await outbox.emit(
        session,
        "document.numbered",
        DocumentNumbered(
            id=doc.id,
            agency=doc.agency,
            code=doc.code_text or "",
            code_number=number,
            code_notation=notation,
            number=doc.code_number or 0,
            series=doc.series_key or "",
            type_key=doc.type_key,
            secret=secrecy_of(doc).is_secret,
            issued_date=doc.issued_date or vietnam_today(now),
            numbered_at=now,
            dossier_code=doc.dossier_code,
            work_file_id=doc.work_file_id,
            actor=actor,
        ),
        subject=f"document:{doc.id}",
        agency=doc.agency,
    )


def check_issuable(doc: Document) -> None:
    lifecycle.check(Step.ISSUE, doc)
    if doc.code_number is None:
        raise Conflict("only a numbered document can be issued")
    if doc.numbered_at_version is None or doc.content_version <= doc.numbered_at_version:
        raise Conflict("upload the version with the number written in (and sealed) before issuing")


async def issue(session: AsyncSession, doc: Document, *, actor: Actor) -> None:
    """Ban hành: the numbered document (locked by the caller) with its number written in and the
    seal applied becomes issued, and ``document.issued`` tells intake and the recipients."""
    check_issuable(doc)
    content = await latest_content(session, doc)
    assert content is not None
    now = now_utc()
    lifecycle.move(Step.ISSUE, doc)
    doc.issued_at = now
    touch(doc)
    await session.flush()
    secret = secrecy_of(doc).is_secret
    number, notation = split_code(doc)
    await outbox.emit(
        session,
        "document.issued",
        DocumentIssued(
            id=doc.id,
            agency=doc.agency,
            code=doc.code_text or "",
            code_number=number,
            code_notation=notation,
            type_key=doc.type_key,
            type_name=doc.type_name,
            subject=None if secret else doc.subject,
            secret=secret,
            urgency=doc.urgency,
            issued_date=doc.issued_date or vietnam_today(now),
            issued_at=now,
            signer_name=doc.signer_name,
            recipients=[Organ(**r) for r in doc.recipients],
            dossier_code=doc.dossier_code,
            work_file_id=doc.work_file_id,
            content_sha256=content.sha256,
            download_path=f"/api/document/documents/{doc.id}/content?version={content.number}",
            actor=actor,
        ),
        subject=f"document:{doc.id}",
        agency=doc.agency,
    )


# --- work dossiers ------------------------------------------------------------------------------


async def emit_opened(session: AsyncSession, work_file: WorkFile, *, actor: Actor) -> None:
    await outbox.emit(
        session,
        "workfile.opened",
        WorkFileOpened(
            id=work_file.id,
            organ_id=work_file.organ_id,
            file_catalog=work_file.file_catalog,
            file_notation=work_file.file_notation,
            dossier_code=work_file.dossier_code,
            actor=actor,
        ),
        subject=f"workfile:{work_file.id}",
        agency=work_file.organ_id,
    )


async def close_work_file(session: AsyncSession, work_file: WorkFile, *, at: datetime, actor: Actor) -> None:
    lifecycle.move(Step.CLOSE_WORK_FILE, work_file)
    work_file.closed_at = at
    await session.flush()
    await outbox.emit(
        session,
        "workfile.closed",
        WorkFileClosed(
            id=work_file.id,
            organ_id=work_file.organ_id,
            file_catalog=work_file.file_catalog,
            file_notation=work_file.file_notation,
            dossier_code=work_file.dossier_code,
            closed_at=at,
            actor=actor,
        ),
        subject=f"workfile:{work_file.id}",
        agency=work_file.organ_id,
    )


# --- incoming -----------------------------------------------------------------------------------


async def duplicates_of(session: AsyncSession, doc: Document) -> list[int]:
    """Incoming documents of the same agency with the same number, symbol and issuing agency."""
    if not doc.code_text or not doc.issuing_organ_id:
        return []
    rows = await session.execute(
        select(Document.id).where(
            and_(
                Document.agency == doc.agency,
                Document.direction == "incoming",
                Document.code_text == doc.code_text,
                Document.issuing_organ_id == doc.issuing_organ_id,
                Document.id != doc.id,
            )
        )
    )
    return [r for r in rows.scalars()]


def duplicate_warning(doc: Document) -> list[str]:
    if not doc.duplicate_of:
        return []
    return [
        f"duplicate: incoming document(s) {', '.join(map(str, doc.duplicate_of))} already have number and "
        f"symbol {doc.code_text} from {doc.issuing_organ_id}"
    ]


async def register_incoming(session: AsyncSession, doc: Document, *, at: datetime, actor: Actor) -> None:
    """Give the next arrival number of the year (số đến) and note duplicates (a warning only)."""
    year = vietnam_today(at).year
    doc.arrival_series = f"{year}/{ARRIVAL_SERIES}"
    doc.arrival_number = await next_value(session, counters, f"{doc.agency}:{doc.arrival_series}")
    doc.arrival_date = at
    lifecycle.move(Step.REGISTER, doc)
    doc.duplicate_of = await duplicates_of(session, doc)
    touch(doc)
    secret = secrecy_of(doc).is_secret
    await outbox.emit(
        session,
        "document.registered",
        DocumentRegistered(
            id=doc.id,
            agency=doc.agency,
            arrival_number=doc.arrival_number,
            arrival_year=year,
            code=doc.code_text,
            issuing_organ_id=doc.issuing_organ_id,
            subject=None if secret else doc.subject,
            secret=secret,
            urgency=doc.urgency,
            duplicate_of=doc.duplicate_of,
            actor=actor,
        ),
        subject=f"document:{doc.id}",
        agency=doc.agency,
    )


async def emit_received(session: AsyncSession, doc: Document, *, source: str | None, actor: Actor) -> None:
    secret = secrecy_of(doc).is_secret
    await outbox.emit(
        session,
        "document.received",
        DocumentReceived(
            id=doc.id,
            agency=doc.agency,
            code=doc.code_text,
            issuing_organ_id=doc.issuing_organ_id,
            source=source,
            subject=None if secret else doc.subject,
            secret=secret,
            urgency=doc.urgency,
            received_at=doc.arrival_date or now_utc(),
            actor=actor,
        ),
        subject=f"document:{doc.id}",
        agency=doc.agency,
    )


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

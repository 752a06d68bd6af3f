"""The outgoing flow's rules: a draft started and edited, its number taken once after the
leader signed, the issue, the recall."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from services.document import lifecycle, workfiles
from services.document import service as svc
from services.document.config import DocumentSettings
from services.document.events import DocumentDrafted, DocumentIssued, DocumentNumbered, DocumentRecalled, Organ
from services.document.lifecycle import AlreadyNumbered, Status, Step
from services.document.models import Document, counters, outbox
from services.document.numbering import MalformedCode, edxml_parts, format_code, parse_code, series_key_for
from services.document.schemas import DraftIn, DraftPatch
from services.document.service import doc_type, now_utc, secrecy_of, touch, vietnam_today
from services.document.storage import latest_content
from shared.auth import Caller
from shared.db import next_value
from shared.errors import Conflict, Unprocessable
from shared.events import Actor


async def create_draft(session: AsyncSession, caller: Caller, body: DraftIn) -> Document:
    """A draft (dự thảo) of an outgoing document, optionally inside an open work dossier of the
    caller's agency; ``document.drafted`` says so."""
    caller.require_agency(body.agency)
    kind, secrecy = svc.classify(caller, body.type_key, body.secrecy)
    dossier_code = body.dossier_code
    if body.work_file_id is not None:
        work_file = await workfiles.get_own(session, caller, body.work_file_id)
        lifecycle.check(Step.FILE_IN_WORK_FILE, work_file)
        if dossier_code and work_file.dossier_code and dossier_code != work_file.dossier_code:
            raise Unprocessable("dossier_code differs from the work file's")
        dossier_code = dossier_code or work_file.dossier_code
    doc = svc.new_document(
        direction="outgoing",
        agency=body.agency,
        status=Status.DRAFT,
        type_key=kind.key,
        type_name=kind.name,
        subject=body.subject,
        secrecy=secrecy.code,
        urgency=body.urgency,
        language=body.language,
        page_amount=body.page_amount,
        unit_abbr=body.unit_abbr,
        signer_position=body.signer.position if body.signer else None,
        signer_name=body.signer.full_name if body.signer else None,
        due_date=body.due_date,
        work_file_id=body.work_file_id,
        dossier_code=dossier_code,
        created_by=caller.sub,
    )
    doc.recipients = [r.model_dump() for r in body.recipients]
    doc.to_places = list(body.to_places)
    session.add(doc)
    await session.flush()
    await outbox.emit(
        session,
        "document.drafted",
        DocumentDrafted(
            id=doc.id,
            agency=doc.agency,
            type_key=doc.type_key,
            type_name=doc.type_name,
            subject=None if secrecy.is_secret else doc.subject,
            secret=secrecy.is_secret,
            urgency=doc.urgency,
            work_file_id=doc.work_file_id,
            dossier_code=doc.dossier_code,
            created_at=doc.created_at,
            actor=Actor.of(caller),
        ),
        subject=f"document:{doc.id}",
        agency=doc.agency,
    )
    return doc


async def edit_draft(session: AsyncSession, doc: Document, body: DraftPatch) -> None:
    """Change a draft's metadata (``doc`` locked by the caller)."""
    lifecycle.check(Step.EDIT, doc)
    changes = body.model_dump(exclude_unset=True)
    signer = changes.pop("signer", None)
    if signer is not None:
        doc.signer_position, doc.signer_name = signer["position"], signer["full_name"]
    for name, value in changes.items():
        setattr(doc, name, value)
    touch(doc)
    await session.flush()


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


async def recall(session: AsyncSession, doc: Document, *, reason: str | None, actor: Actor) -> None:
    """Thu hồi: the issued document (locked by the caller) is recalled, and ``document.recalled``
    tells receivers in this deployment to withdraw their copies."""
    lifecycle.move(Step.RECALL, doc)
    now = now_utc()
    doc.recalled_at = now
    touch(doc)
    await session.flush()
    await outbox.emit(
        session,
        "document.recalled",
        DocumentRecalled(
            id=doc.id,
            agency=doc.agency,
            code=doc.code_text,
            recipients=[Organ(**r) for r in doc.recipients],
            reason=None if secrecy_of(doc).is_secret else reason,
            recalled_at=now,
            actor=actor,
        ),
        subject=f"document:{doc.id}",
        agency=doc.agency,
    )

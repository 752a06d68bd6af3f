"""Incoming documents' rules: registration with the arrival number of the year, assignment for
processing (giao xử lý), completion."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import lifecycle
from services.document import service as svc
from services.document.events import DocumentAssigned, DocumentReceived, DocumentRegistered
from services.document.lifecycle import AssignmentStatus, Status, Step
from services.document.models import Assignment, Document, counters, outbox
from services.document.numbering import parse_code
from services.document.schemas import AssignIn, IncomingIn
from services.document.service import ARRIVAL_SERIES, Toolkit, now_utc, secrecy_of, touch, vietnam_today
from shared.auth import Caller
from shared.db import next_value
from shared.errors import Forbidden, NotFound, Unprocessable
from shared.events import Actor


async def register(session: AsyncSession, caller: Caller, body: IncomingIn) -> Document:
    """An incoming document (văn bản đến) a clerk registers by hand: a duplicate (number, symbol,
    issuing agency) is noted as a warning, not refused."""
    caller.require_agency(body.agency)
    kind, secrecy = svc.classify(caller, body.type_key, body.secrecy)
    code_text = code_notation = None
    code_number = None
    if body.code:
        try:
            code = parse_code(body.code, cong_van=kind.is_cong_van or None, strict=False)
        except ValueError as exc:
            raise Unprocessable(f"code: {exc}") from exc
        code_text, code_number, code_notation = str(code), code.number, code.notation
    doc = svc.new_document(
        direction="incoming",
        agency=body.agency,
        status=Status.RECEIVED,
        type_key=kind.key,
        type_name=kind.name,
        subject=body.subject,
        secrecy=secrecy.code,
        urgency=body.urgency,
        page_amount=body.page_amount,
        code_text=code_text,
        code_number=code_number,
        code_notation=code_notation,
        issued_date=body.issued_date,
        issuing_organ_id=body.issuing_organ.organ_id,
        issuing_organ_name=body.issuing_organ.organ_name,
        signer_position=body.signer.position if body.signer else None,
        signer_name=body.signer.full_name if body.signer else None,
        due_date=body.due_date,
        notes=body.notes,
        created_by=caller.sub,
    )
    session.add(doc)
    await session.flush()
    await register_incoming(session, doc, at=now_utc(), actor=Actor.of(caller))
    return doc


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


async def assign(session: AsyncSession, kit: Toolkit, caller: Caller, doc: Document, body: AssignIn) -> Assignment:
    """Giao xử lý: ``doc`` (locked by the caller) is assigned with a due date; without one, the
    urgency's configured number of working days from today. ``document.assigned`` says so."""
    lifecycle.check(Step.ASSIGN, doc)
    today = vietnam_today()
    due = body.due_date or kit.calendar.add_working_days(today, kit.settings.processing_days.get(doc.urgency, 10))
    if due < today:
        raise Unprocessable("the due date is in the past")
    row = Assignment(
        document_id=doc.id,
        agency=doc.agency,
        assignee=body.assignee,
        assignee_name=body.assignee_name or body.assignee,
        role=body.role,
        assigned_by=caller.sub,
        note=body.note,
        due_date=due,
        status=AssignmentStatus.OPEN,
        assigned_at=now_utc(),
    )
    session.add(row)
    lifecycle.move(Step.ASSIGN, doc)
    touch(doc)
    await session.flush()
    secret = secrecy_of(doc).is_secret
    await outbox.emit(
        session,
        "document.assigned",
        DocumentAssigned(
            id=row.id,
            document_id=doc.id,
            agency=doc.agency,
            assignee=row.assignee,
            role=row.role,
            due_date=due,
            urgency=doc.urgency,
            subject=None if secret else doc.subject,
            actor=Actor.of(caller),
        ),
        subject=f"document:{doc.id}",
        agency=doc.agency,
    )
    return row


async def complete_assignment(session: AsyncSession, caller: Caller, assignment_id: int) -> Assignment:
    """The assignee (or a leader) marks the work done; the last main assignment done completes
    the document."""
    row = await session.get(Assignment, assignment_id)
    if row is None:
        raise NotFound(f"no assignment {assignment_id}")
    doc = await svc.get_visible(session, caller, row.document_id, lock=True)
    if row.assignee != caller.sub and not caller.has_any("leader", "service"):
        raise Forbidden("only the assignee or a leader completes this")
    lifecycle.move(Step.COMPLETE_ASSIGNMENT, row)
    row.completed_at = now_utc()
    open_left = (
        await session.execute(
            select(Assignment.id).where(
                Assignment.document_id == doc.id,
                Assignment.status == AssignmentStatus.OPEN,
                Assignment.role == "main",
                Assignment.id != row.id,
            )
        )
    ).first()
    if open_left is None and row.role == "main":
        lifecycle.move(Step.COMPLETE, doc)
        touch(doc)
    await session.flush()
    return row

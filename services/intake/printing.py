"""Mẫu 01–05 from stored dossiers: gathers what each form shows and renders it (forms.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import forms
from services.intake.components import load_components
from services.intake.config import IntakeSettings
from services.intake.models import Agency, Dossier, DossierEvent, DueDateChange, Handoff, ProcedureVersion
from services.intake.workflow import Timeliness
from shared import clock
from shared.errors import Conflict, NotFound


async def office_for(session: AsyncSession, agency_code: str) -> forms.IssuingOffice:
    agency = await session.get(Agency, agency_code)
    name = agency.name if agency else agency_code
    superior = ""
    if agency and agency.parent_code:
        parent = await session.get(Agency, agency.parent_code)
        superior = parent.name if parent else ""
    return forms.IssuingOffice(superior=superior or name, name=name)


def _applicant(dossier: Dossier) -> forms.Applicant:
    a = dossier.applicant
    return forms.Applicant(name=a["full_name"], address=a.get("address"), phone=a.get("phone"), email=a.get("email"))


def lookup_url(settings: IntakeSettings, code: str, secret: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}{settings.lookup_path}?{urlencode({'code': code, 'secret': secret})}"


async def _procedure(session: AsyncSession, dossier: Dossier) -> ProcedureVersion:
    version = await session.get(ProcedureVersion, dossier.procedure_version_id)
    assert version is not None
    return version


async def _last_event(session: AsyncSession, dossier: Dossier, action: str) -> DossierEvent:
    event = (
        (
            await session.execute(
                select(DossierEvent)
                .where(DossierEvent.dossier_id == dossier.id, DossierEvent.action == action)
                .order_by(DossierEvent.id.desc())
            )
        )
        .scalars()
        .first()
    )
    if event is None:
        raise NotFound(f"dossier {dossier.code} has no {action} to print")
    return event


async def receipt(session: AsyncSession, settings: IntakeSettings, dossier: Dossier, *, secret: str) -> bytes:
    if dossier.accepted_at is None or dossier.due_at is None:
        raise Conflict("a receipt is issued for an accepted dossier with a due date", status=dossier.status)
    version = await _procedure(session, dossier)
    components = [
        forms.ReceivedComponent(name=c.name, copies=c.copies, original=c.original)
        for c in await load_components(session, dossier)
    ]
    if not components:
        components = [forms.ReceivedComponent(name="Đơn đề nghị", copies=1, original=True)]
    return forms.receipt_pdf(
        forms.ReceiptForm(
            office=await office_for(session, dossier.agency),
            dossier_code=dossier.code,
            procedure_code=f"{version.code}.{dossier.agency}",
            procedure_name=version.name,
            applicant=_applicant(dossier),
            components=tuple(components),
            received_at=dossier.accepted_at,
            due_at=dossier.due_at,
            desk_officer=dossier.received_by or "Bộ phận Tiếp nhận và Trả kết quả",
            lookup_secret=secret,
            lookup_url=lookup_url(settings, dossier.code, secret),
            processing_hours=Decimal(dossier.processing_hours),
        )
    )


async def supplement_request(session: AsyncSession, dossier: Dossier) -> bytes:
    event = await _last_event(session, dossier, "request_supplement")
    return forms.supplement_request_pdf(
        forms.SupplementRequestForm(
            office=await office_for(session, dossier.agency),
            dossier_code=dossier.code,
            procedure_name=(await _procedure(session, dossier)).name,
            applicant=_applicant(dossier),
            missing_items=tuple(
                forms.MissingItem(name=m["name"], detail=m.get("detail")) for m in event.details["missing_items"]
            ),
            requested_at=event.at,
            officer=event.actor_name,
        )
    )


async def refusal(session: AsyncSession, dossier: Dossier) -> bytes:
    event = await _last_event(session, dossier, "refuse")
    return forms.refusal_pdf(
        forms.RefusalForm(
            office=await office_for(session, dossier.agency),
            procedure_name=(await _procedure(session, dossier)).name,
            applicant=_applicant(dossier),
            reasons=tuple(event.details["reasons"]),
            refused_at=event.at,
            officer=event.actor_name,
            dossier_code=dossier.code,
        )
    )


async def apology(session: AsyncSession, dossier: Dossier) -> bytes:
    event = await _last_event(session, dossier, "extend")
    return forms.apology_pdf(
        forms.ApologyForm(
            office=await office_for(session, dossier.agency),
            dossier_code=dossier.code,
            procedure_name=(await _procedure(session, dossier)).name,
            applicant=_applicant(dossier),
            received_at=dossier.accepted_at or dossier.received_at,
            original_due_at=datetime.fromisoformat(event.details["old_due_at"]),
            new_due_at=datetime.fromisoformat(event.details["new_due_at"]),
            reason=event.details["reason"],
            issued_at=event.at,
            signer_name=event.actor_name,
            signer_title=event.details.get("signer_title") or "Trưởng bộ phận",
        )
    )


async def tracking_sheet(session: AsyncSession, dossier: Dossier) -> bytes:
    if dossier.accepted_at is None:
        raise Conflict("the tracking sheet starts when the dossier is accepted", status=dossier.status)
    steps = (
        await session.execute(select(Handoff).where(Handoff.dossier_id == dossier.id).order_by(Handoff.id))
    ).scalars()
    last_due = dossier.due_at
    if last_due is None:  # paused: show the last known due date
        last_due = (
            (
                await session.execute(
                    select(DueDateChange.old_due_at)
                    .where(DueDateChange.dossier_id == dossier.id, DueDateChange.old_due_at.is_not(None))
                    .order_by(DueDateChange.id.desc())
                )
            )
            .scalars()
            .first()
        )
    steps = list(steps)
    result = dossier.result or {}
    issued_at = result.get("issued_at")
    # the last hand-off (the result to the desk) is graded as the dossier itself
    final = steps[-1].timeliness if steps and dossier.finished_at is not None and steps[-1].timeliness else None
    return forms.tracking_sheet_pdf(
        forms.TrackingSheetForm(
            result_number=result.get("number"),
            result_issued_at=datetime.fromisoformat(issued_at) if isinstance(issued_at, str) else None,
            finished_at=dossier.finished_at,
            finished_timeliness=Timeliness(final) if final else None,
            returned_at=dossier.returned_at,
            office=await office_for(session, dossier.agency),
            dossier_code=dossier.code,
            procedure_name=(await _procedure(session, dossier)).name,
            applicant=_applicant(dossier),
            received_at=dossier.accepted_at,
            due_at=last_due or clock.now(),
            entries=tuple(
                forms.TrackingEntry(
                    from_whom=s.from_whom,
                    to_whom=s.to_whom,
                    handed_at=s.handed_at,
                    step_due_at=s.step_due_at,
                    timeliness=Timeliness(s.timeliness) if s.timeliness else None,
                    note=s.note,
                )
                for s in steps
            ),
        )
    )

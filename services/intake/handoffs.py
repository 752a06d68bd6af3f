"""Hand-offs (the tracking sheet, form 05): each step from one unit or person to the next, graded
for timeliness when it closes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.context import Context
from services.intake.deadlines import DossierClock
from services.intake.dossiers import OWNER_ROLES, touch, visible_dossier
from services.intake.events import DossierHandedOff, DossierResult
from services.intake.models import Dossier, Handoff, outbox
from services.intake.schemas import HandoffIn
from services.intake.workflow import HANDLED_STATUSES, step_timeliness
from shared import clock
from shared.auth import Caller
from shared.errors import Conflict, Forbidden
from shared.events import Actor

DEFAULT_PROCESSING_UNIT = "Bộ phận chuyên môn"
DESK_UNIT = "Bộ phận Tiếp nhận và Trả kết quả"


_OPEN_STEP = (
    select(Handoff)
    .where(Handoff.dossier_id == bindparam("dossier_id"), Handoff.completed_at.is_(None))
    .order_by(Handoff.id.desc())
)


async def _open_step(session: AsyncSession, dossier: Dossier) -> Handoff | None:
    rows = await session.execute(_OPEN_STEP, {"dossier_id": dossier.id})
    return rows.scalars().first()


async def close_step(clock: DossierClock, at: datetime) -> Handoff | None:
    step = await _open_step(clock.session, clock.dossier)
    if step is None:
        return None
    step.completed_at = at
    calendar = await clock.calendar()
    used = calendar.working_hours_between(step.handed_at, at, pauses=await clock.pauses())
    step.used_hours = used.quantize(Decimal("0.01"))
    allotted = Decimal(step.allotted_hours) if step.allotted_hours is not None else None
    due = clock.dossier.due_at
    if allotted is None and due is not None:
        # a step given no share of the deadline has what was left of the dossier's own
        allotted = calendar.working_hours_between(step.handed_at, due, pauses=await clock.pauses())
    if allotted is not None:
        step.timeliness = str(step_timeliness(used_hours=used, allotted_hours=allotted, rule=clock.ctx.timeliness_rule))
    return step


async def _record_step(clock: DossierClock, step: Handoff, previous: Handoff | None, *, by: Actor) -> None:
    """Add the step (written at the next flush) and tell ``dossier.handoff`` with how the
    previous step went."""
    dossier = clock.dossier
    clock.session.add(step)
    await outbox.emit(
        clock.session,
        "dossier.handoff",
        DossierHandedOff(
            code=dossier.code,
            agency=dossier.agency,
            from_whom=step.from_whom,
            to_whom=step.to_whom,
            handed_at=step.handed_at,
            step_due_at=step.step_due_at,
            previous_step_timeliness=previous.timeliness if previous is not None else None,
            actor=by,
        ),
        subject=dossier.code,
        agency=dossier.agency,
    )


async def result_to_desk(clock: DossierClock, at: datetime, *, by: Actor, result: DossierResult | None) -> None:
    """Finishing closes the open step and records the last hand-off of the tracking sheet: the
    result, from whoever held the dossier to the desk that returns it, graded as the dossier
    itself (its working hours used against its processing time)."""
    dossier = clock.dossier
    closed = await close_step(clock, at)
    from_whom = closed.to_whom if closed is not None else DEFAULT_PROCESSING_UNIT
    allowed = Decimal(dossier.processing_hours) + Decimal(dossier.extension_hours)
    used = Decimal(dossier.hours_used) if dossier.hours_used is not None else None
    grade = (
        str(step_timeliness(used_hours=used, allotted_hours=allowed, rule=clock.ctx.timeliness_rule))
        if used is not None
        else None
    )
    note = f"Kết quả: văn bản {result.number}" if result is not None and result.number else None
    step = Handoff(
        dossier_id=dossier.id,
        from_whom=from_whom,
        to_whom=DESK_UNIT,
        handed_at=at,
        allotted_hours=None,
        step_due_at=dossier.due_at,
        completed_at=at,
        used_hours=used,
        timeliness=grade,
        note=note,
    )
    await _record_step(clock, step, closed, by=by)


async def hand_off(
    clock: DossierClock,
    *,
    from_whom: str,
    to_whom: str,
    allotted_hours: Decimal | None,
    note: str | None,
    at: datetime,
    by: Actor,
) -> Handoff:
    """Close the open step and open the next; written at the caller's next flush."""
    dossier = clock.dossier
    previous = await close_step(clock, at)
    step_due_at = None
    if allotted_hours:
        step_due_at = (await clock.calendar()).add_working_hours(at, allotted_hours).astimezone(UTC)
    step = Handoff(
        dossier_id=dossier.id,
        from_whom=from_whom,
        to_whom=to_whom,
        handed_at=at,
        allotted_hours=allotted_hours,
        step_due_at=step_due_at,
        note=note,
    )
    await _record_step(clock, step, previous, by=by)
    return step


async def add_handoff(session: AsyncSession, ctx: Context, caller: Caller, code: str, body: HandoffIn) -> Handoff:
    dossier = await visible_dossier(session, caller, code, for_update=True)
    if not (caller.roles - OWNER_ROLES):
        raise Forbidden("hand-offs are between officers")
    if dossier.status not in HANDLED_STATUSES:
        raise Conflict(f"a dossier in status {dossier.status} is not being handled", status=dossier.status)
    step = await hand_off(
        DossierClock(session, ctx, dossier),
        from_whom=caller.name,
        to_whom=body.to_whom,
        allotted_hours=body.allotted_hours,
        note=body.note,
        at=clock.now(),
        by=Actor.of(caller),
    )
    touch(dossier)
    await session.flush()
    return step

"""A dossier's clock: the due date from acceptance, working hours, pauses and extensions, and
every change of it recorded with why.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.calendar import WorkingCalendar
from services.intake.context import Context
from services.intake.dossiers import OWNER_ROLES, note, touch, visible_dossier
from services.intake.events import DossierExtended
from services.intake.models import Dossier, DossierEvent, DueDateChange, outbox
from services.intake.schemas import ExtensionIn
from services.intake.workflow import clock_runs, pauses_from_history
from shared import clock
from shared.auth import Caller
from shared.errors import Conflict, Forbidden, Unprocessable
from shared.events import Actor

_HISTORY = (
    select(DossierEvent.at, DossierEvent.to_status)
    .where(DossierEvent.dossier_id == bindparam("dossier_id"))
    .order_by(DossierEvent.id)
)


async def _history(session: AsyncSession, dossier: Dossier) -> list[tuple[datetime, int]]:
    rows = await session.execute(_HISTORY, {"dossier_id": dossier.id})
    return [(at, status) for at, status in rows.all()]


class DossierClock:
    """A dossier's deadline clock in one request: the working calendar and the pauses so far,
    each read once, and only by the requests that need them.

    ``step`` is the history entry (time, new status) the request is adding and has not flushed
    yet: a transition reads everything first and writes in one flush at the end."""

    def __init__(
        self, session: AsyncSession, ctx: Context, dossier: Dossier, step: tuple[datetime, int] | None = None
    ) -> None:
        self.session, self.ctx, self.dossier, self.step = session, ctx, dossier, step
        self._pauses: list[tuple[datetime, datetime | None]] | None = None

    async def calendar(self) -> WorkingCalendar:
        return await self.ctx.calendar(self.session)

    async def pauses(self) -> list[tuple[datetime, datetime | None]]:
        if self._pauses is None:
            history = await _history(self.session, self.dossier)
            if self.step is not None:
                history.append(self.step)
            self._pauses = pauses_from_history(history)
        return self._pauses


def record_due_change(
    session: AsyncSession,
    dossier: Dossier,
    new_due: datetime | None,
    *,
    cause: str,
    reason: str | None,
    actor: str,
    at: datetime,
) -> None:
    if new_due is not None:
        new_due = new_due.astimezone(UTC)
    if new_due == dossier.due_at:
        return
    session.add(
        DueDateChange(
            dossier_id=dossier.id,
            at=at,
            old_due_at=dossier.due_at,
            new_due_at=new_due,
            cause=cause,
            reason=reason,
            actor_name=actor,
        )
    )
    dossier.due_at = new_due


async def due_on_acceptance(
    session: AsyncSession, ctx: Context, accepted_at: datetime, hours: Decimal, cutoff: str | None
) -> datetime:
    due = (await ctx.calendar(session)).due_date(accepted_at, hours, cutoff=catalogue.parse_cutoff(cutoff))
    assert due is not None  # no pause yet
    return due.astimezone(UTC)


async def start_clock(session: AsyncSession, ctx: Context, dossier: Dossier, *, now: datetime, actor: str) -> None:
    dossier.accepted_at = now
    due = await due_on_acceptance(session, ctx, now, dossier.processing_hours, dossier.cutoff)
    record_due_change(session, dossier, due, cause="accepted", reason=None, actor=actor, at=now)


async def recompute_due(clock: DossierClock) -> datetime | None:
    """Due date from acceptance, processing + extension hours, and the pauses so far."""
    dossier = clock.dossier
    assert dossier.accepted_at is not None
    return (await clock.calendar()).due_date(
        dossier.accepted_at,
        Decimal(dossier.processing_hours) + Decimal(dossier.extension_hours),
        cutoff=catalogue.parse_cutoff(dossier.cutoff),
        pauses=await clock.pauses(),
    )


async def hours_used(clock: DossierClock, until: datetime) -> Decimal | None:
    dossier = clock.dossier
    if dossier.accepted_at is None:
        return None
    calendar = await clock.calendar()
    start = calendar.clock_start(dossier.accepted_at, cutoff=catalogue.parse_cutoff(dossier.cutoff))
    if until <= start:
        return Decimal(0)
    return calendar.working_hours_between(start, until, pauses=await clock.pauses()).quantize(Decimal("0.01"))


async def extend(session: AsyncSession, ctx: Context, caller: Caller, code: str, body: ExtensionIn) -> DueDateChange:
    """Gia hạn: move the due date, only before it passes, with the reason (apology, form 04)."""
    dossier = await visible_dossier(session, caller, code, for_update=True)
    if not (caller.roles - OWNER_ROLES):
        raise Forbidden("an extension is decided by the agency")
    now = clock.now()
    if dossier.due_at is None or not clock_runs(dossier.status):
        raise Conflict("only a dossier whose clock runs has a due date to extend", status=dossier.status)
    if now >= dossier.due_at:
        raise Conflict(
            "the due date has passed: an extension must be issued before it", due_at=dossier.due_at.isoformat()
        )
    if body.new_due_at <= dossier.due_at:
        raise Unprocessable("the new due date must be after the current one", field="new_due_at")
    old_due = dossier.due_at
    dossier_clock = DossierClock(session, ctx, dossier)
    added = (await dossier_clock.calendar()).working_hours_between(old_due, body.new_due_at)
    if added <= 0:
        raise Unprocessable("no working time between the current and the new due date", field="new_due_at")
    dossier.extension_hours = Decimal(dossier.extension_hours) + added
    new_due = await recompute_due(dossier_clock)
    assert new_due is not None
    new_due = new_due.astimezone(UTC)
    change = DueDateChange(
        dossier_id=dossier.id,
        at=now,
        old_due_at=old_due,
        new_due_at=new_due,
        cause="extended",
        reason=body.reason,
        actor_name=caller.name,
    )
    session.add(change)
    dossier.due_at = new_due
    note(
        session,
        dossier,
        caller,
        "extend",
        at=now,
        details={
            "reason": body.reason,
            "old_due_at": old_due.isoformat(),
            "new_due_at": new_due.isoformat(),
            "signer_title": body.signer_title,
        },
    )
    touch(dossier)
    await session.flush()
    await outbox.emit(
        session,
        "dossier.extend",
        DossierExtended(
            code=dossier.code,
            agency=dossier.agency,
            owner=dossier.owner,
            old_due_at=old_due,
            new_due_at=new_due,
            reason=body.reason,
            at=now,
            actor=Actor.of(caller),
        ),
        subject=dossier.code,
        agency=dossier.agency,
    )
    return change

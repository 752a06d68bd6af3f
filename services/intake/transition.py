"""Applying one allowed action to a dossier: its status, clock, hand-offs, history, due-date
changes and the ``dossier.<action>`` event, in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.components import INSERT_COMPONENTS, Checked, component_rows, store_files
from services.intake.context import Context
from services.intake.deadlines import DossierClock, hours_used, recompute_due, record_due_change, start_clock
from services.intake.dossiers import touch
from services.intake.events import STEP_EVENTS, DossierResult
from services.intake.handoffs import DEFAULT_PROCESSING_UNIT, close_step, hand_off, result_to_desk
from services.intake.models import Dossier, DossierEvent, outbox
from services.intake.schemas import ActionRequest
from services.intake.workflow import ENDED_WITHOUT_RESULT, Action, DossierStatus, clock_paused, clock_runs
from shared import clock
from shared.events import Actor


async def transition(
    session: AsyncSession,
    ctx: Context,
    dossier: Dossier,
    action: Action,
    target: DossierStatus,
    *,
    actor: str,
    actor_name: str,
    by: Actor,
    body: ActionRequest,
    new_components: list[Checked] = (),  # type: ignore[assignment]
    result: DossierResult | None = None,
    details: dict[str, Any] | None = None,
    from_whom: str | None = None,
) -> None:
    """Apply an allowed action: status, clock, hand-offs, history, due-date changes, event."""
    now = clock.now()
    source = DossierStatus(dossier.status)
    was_running = dossier.accepted_at is not None and clock_runs(source)
    extra: dict[str, Any] = {}
    details = dict(details or {})
    if body.note:
        details["note"] = body.note

    if action is Action.REQUEST_SUPPLEMENT:
        dossier.paused_from = int(source)
        details["missing_items"] = [m.model_dump() for m in body.missing_items or []]
        extra["missing_items"] = [m.name for m in body.missing_items or []]
    elif action is Action.SUPPLEMENT_RECEIVED:
        dossier.paused_from = None
        await store_files(ctx, list(new_components))
        if new_components:
            rows = component_rows(dossier.id, list(new_components), now=now, supplement=True)
            await session.execute(INSERT_COMPONENTS, rows)
        details["components_added"] = extra["components_added"] = len(new_components)
    elif action in (Action.REFUSE, Action.STOP):
        details["reasons"] = extra["reasons"] = list(body.reasons or [])
    elif action is Action.WITHDRAW:
        details["reason"] = extra["reason"] = body.note
    elif action is Action.REQUEST_FEES:
        details["amount_vnd"] = extra["amount_vnd"] = body.amount_vnd
    elif action is Action.START_PROCESSING:
        extra["to_whom"] = body.to_whom
    elif action is Action.FINISH:
        # only an issued document is a result (see apply_pending_result and act)
        assert result is not None, "a dossier is finished with an issued result"
        dossier.result = result.model_dump(mode="json")
        details["result"] = dossier.result

    dossier.status = int(target)
    session.add(
        DossierEvent(
            dossier_id=dossier.id,
            action=str(action),
            from_status=int(source),
            to_status=int(target),
            at=now,
            actor=actor,
            actor_name=actor_name,
            details=details,
        )
    )
    # What follows reads (the open hand-off step, the history, the calendar) before anything is
    # written, and every change goes in the one flush at the end: one UPDATE of the dossier,
    # not one per step. The clock counts this step's event, which is not in the database yet.
    dossier_clock = DossierClock(session, ctx, dossier, step=(now, int(target)))
    with session.no_autoflush:
        if action is Action.ACCEPT:
            await start_clock(session, ctx, dossier, now=now, actor=actor_name)
            extra["accepted_at"] = now
        elif dossier.accepted_at is not None:
            now_running = clock_runs(target)
            if was_running and not now_running and action not in (Action.FINISH,):
                cause = "paused" if clock_paused(target) else str(action)
                new_due = None if cause == "paused" else dossier.due_at
                record_due_change(session, dossier, new_due, cause=cause, reason=body.note, actor=actor_name, at=now)
            elif not was_running and now_running:
                record_due_change(
                    session,
                    dossier,
                    await recompute_due(dossier_clock),
                    cause="resumed",
                    reason=None,
                    actor=actor_name,
                    at=now,
                )

        if action is Action.START_PROCESSING:
            await hand_off(
                dossier_clock,
                from_whom=from_whom or actor_name,
                to_whom=body.to_whom or DEFAULT_PROCESSING_UNIT,
                allotted_hours=body.allotted_hours,
                note=body.note,
                at=now,
                by=by,
            )
        if action is Action.FINISH:
            dossier.finished_at = now
            dossier.finished_on_time = dossier.due_at is not None and now <= dossier.due_at
            dossier.hours_used = await hours_used(dossier_clock, now)
            await result_to_desk(dossier_clock, now, by=by, result=result)
            extra.update(result=result, on_time=dossier.finished_on_time, hours_used=dossier.hours_used)
        if action is Action.RETURN_RESULT:
            dossier.returned_at = now
        if target in ENDED_WITHOUT_RESULT:
            await close_step(dossier_clock, now)
        touch(dossier)
    await session.flush()

    version, _ = await ctx.labels.label(session, dossier.procedure_version_id)
    model = STEP_EVENTS[str(action)]
    await outbox.emit(
        session,
        f"dossier.{action}",
        model(
            code=dossier.code,
            agency=dossier.agency,
            procedure_code=dossier.procedure_code,
            procedure_version=version,
            channel=dossier.channel,
            owner=dossier.owner,
            action=str(action),
            from_status=int(source),
            status=int(target),
            at=now,
            due_at=dossier.due_at,
            actor=by,
            **extra,
        ),
        subject=dossier.code,
        agency=dossier.agency,
    )

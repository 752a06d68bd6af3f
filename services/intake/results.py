"""Issued results: a ``document.issued`` naming a dossier is kept, applied when the status allows
(the system finishes the dossier), otherwise pending until it does; a manual finish names one.
"""

from __future__ import annotations

import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.context import Context
from services.intake.dossiers import find_dossier, touch
from services.intake.events import DossierResult
from services.intake.handoffs import DEFAULT_PROCESSING_UNIT, DESK_UNIT
from services.intake.models import Dossier, IssuedResult
from services.intake.schemas import ActionRequest
from services.intake.transition import transition
from services.intake.workflow import FINISHABLE, Action, allowed_actions, next_status
from shared import clock
from shared.db import fetch_rows
from shared.errors import Conflict, Unprocessable
from shared.eventdata.document import DocumentIssued
from shared.events import Actor

log = structlog.get_logger("intake")


class ResultNotIssued(Unprocessable):
    """A manual finish names a result: only a document issued for this dossier will do."""

    code = "result_not_issued"
    title = "No such result was issued for this dossier"


async def issued_result_named(session: AsyncSession, dossier: Dossier, number: str) -> IssuedResult:
    rows = await session.execute(
        select(IssuedResult)
        .where(IssuedResult.dossier_id == dossier.id, IssuedResult.number == number.strip())
        .order_by(IssuedResult.id)
    )
    found = rows.scalars().first()
    if found is None:
        known = (
            await session.execute(select(IssuedResult.number).where(IssuedResult.dossier_id == dossier.id))
        ).scalars()
        raise ResultNotIssued(
            f"no document {number} was issued for dossier {dossier.code}; a result comes from the "
            "document system (document.issued) and finishes the dossier by itself",
            field="result.document_number",
            issued=[n for n in known if n],
        )
    if found.applied_at is not None:
        raise Conflict(f"document {number} is already this dossier's result", status=dossier.status)
    return found


SYSTEM = "system"
SYSTEM_NAME = "Hệ thống"


def result_of(issued: IssuedResult) -> DossierResult:
    return DossierResult(
        document_id=issued.document_id,
        number=issued.number,
        content_sha256=issued.content_sha256,
        download_path=issued.download_path,
        summary=issued.summary,
        issued_at=issued.issued_at,
    )


async def finish_from_document(session: AsyncSession, ctx: Context, issued: DocumentIssued) -> str:
    """``document.issued`` naming a dossier: the result is never dropped. It is attached to the
    dossier, and applied at once when the status allows (``FINISHABLE``), otherwise kept
    pending until it does. Returns what happened (for logs and tests): finished, pending,
    already, unknown, no_dossier."""
    code, document_id = issued.dossier_code, issued.id
    if not code:
        return "no_dossier"
    dossier = await find_dossier(session, code, for_update=True)
    if dossier is None:
        log.warning("document_for_unknown_dossier", dossier_code=code, document=document_id)
        return "unknown"
    known = await session.execute(
        select(IssuedResult.id).where(IssuedResult.dossier_id == dossier.id, IssuedResult.document_id == document_id)
    )
    if known.first() is not None:
        return "already"
    session.add(
        IssuedResult(
            dossier_id=dossier.id,
            document_id=document_id,
            number=issued.code[:60] or None,
            summary=issued.subject,
            content_sha256=issued.content_sha256,
            download_path=issued.download_path,
            issued_at=issued.issued_at,
            learnt_at=clock.now(),
            applied_at=None,
        )
    )
    await session.flush()
    if await apply_pending_result(session, ctx, dossier):
        return "finished"
    log.info("document_issued_pending", dossier_code=code, status=dossier.status, document=document_id)
    touch(dossier)  # the view changed: it shows the pending result
    return "pending"


_FIRST_PENDING = (
    select(IssuedResult)
    .where(IssuedResult.dossier_id == bindparam("dossier_id"), IssuedResult.applied_at.is_(None))
    .order_by(IssuedResult.id)
    .limit(1)
)
# Most actions that land in a finishable status find nothing waiting: asking with a plain read
# first spares them loading an ORM object, the costlier half of the question.
_ANY_PENDING = (
    select(IssuedResult.id)
    .where(IssuedResult.dossier_id == bindparam("dossier_id"), IssuedResult.applied_at.is_(None))
    .limit(1)
)


async def apply_pending_result(session: AsyncSession, ctx: Context, dossier: Dossier) -> bool:
    """Finish the dossier with its first pending result if its status now allows it: from 4,
    or from 2 through 4; the system acts, giving the issued document as its reason."""
    if dossier.status not in FINISHABLE:
        return False
    if not await fetch_rows(session, _ANY_PENDING, {"dossier_id": dossier.id}):
        return False
    issued = (await session.execute(_FIRST_PENDING, {"dossier_id": dossier.id})).scalars().first()
    if issued is None:
        return False
    label = issued.number or f"#{issued.document_id}"
    reason = f"document.issued: văn bản {label} (document {issued.document_id})"
    by = Actor.system(reason)
    details = {"reason": reason, "document_id": issued.document_id, "number": issued.number}
    if Action.FINISH not in allowed_actions(dossier.status, paused_from=dossier.paused_from):
        # accepted, not yet transferred: through processing first, both steps in the history
        await transition(
            session,
            ctx,
            dossier,
            Action.START_PROCESSING,
            next_status(dossier.status, Action.START_PROCESSING),
            actor=SYSTEM,
            actor_name=SYSTEM_NAME,
            by=by,
            body=ActionRequest(to_whom=DEFAULT_PROCESSING_UNIT),
            details=details,
            from_whom=dossier.received_by or DESK_UNIT,
        )
    await transition(
        session,
        ctx,
        dossier,
        Action.FINISH,
        next_status(dossier.status, Action.FINISH),
        actor=SYSTEM,
        actor_name=SYSTEM_NAME,
        by=by,
        body=ActionRequest(note=f"Kết quả: văn bản {label}"),
        result=result_of(issued),
        details=details,
    )
    issued.applied_at = dossier.finished_at
    await session.flush()
    return True

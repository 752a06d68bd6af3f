"""Document's reactions to events: a work dossier for every accepted one-stop-shop dossier,
closed when its matter ends; delivery of issued documents to recipient agencies of this
deployment, and recall of those copies. What the part does by itself names the system as actor,
with the event it applied as the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import incoming, lifecycle, storage, workfiles
from services.document import service as svc
from services.document.config import DocumentSettings
from services.document.lifecycle import Status, Step, WorkFileStatus
from services.document.models import ContentVersion, Document, DossierEnding, WorkFile, inbox
from shared import eventdata
from shared.db import execute_rows, insert_ignoring_duplicates
from shared.eventdata.document import DocumentIssued, DocumentRecalled
from shared.eventdata.intake import (
    DossierAccepted,
    DossierCode,
    DossierReceived,
    DossierRefused,
    DossierStep,
    IntakeEvent,
)
from shared.events import Actor, CloudEvent
from shared.inbox import Consumer, Handler, PoisonEvent

# A one-stop-shop dossier's matter starts when the desk accepts it (the clock starts: status 2)
# and ends when it is refused, withdrawn, stopped or its result returned.
OPENS = ("dossier.received", "dossier.accept")
CLOSES = ("dossier.refuse", "dossier.withdraw", "dossier.stop", "dossier.return_result")
ACCEPTED = 2
SUBMITTED = 1


def _notation(code: str) -> str:
    """The work dossier's notation (ký hiệu): the dossier code without its agency identifier."""
    parts = DossierCode.parse(code)
    return f"TTHC-{parts.day}-{parts.sequence}" if parts else f"TTHC-{code}"


async def _work_file_of(session: AsyncSession, code: str) -> WorkFile | None:
    return (await session.execute(select(WorkFile).where(WorkFile.dossier_code == code))).scalar_one_or_none()


_WORK_FILES, _ENDINGS = WorkFile.__table__, DossierEnding.__table__


def _ending(column: Column[Any]) -> Any:
    return select(column).where(_ENDINGS.c.dossier_code == bindparam("code")).scalar_subquery()


# A dossier's work dossier opens in one statement: no row when the dossier has one already (a
# redelivery, or both opening events), else the new id and the end remembered for the dossier, if
# any. Through the ORM it was a select, the unit of work's insert and a get: three round trips
# and most of document's CPU for a desk submission.
_OPEN_FOR_DOSSIER = insert_ignoring_duplicates(_WORK_FILES, on=(_WORK_FILES.c.dossier_code,)).returning(
    _WORK_FILES.c.id,
    _ending(_ENDINGS.c.action).label("ended_by"),
    _ending(_ENDINGS.c.ended_at).label("ended_at"),
)


async def open_work_file_for_dossier(session: AsyncSession, event: CloudEvent) -> None:
    """An accepted dossier is processed inside a work dossier opened for it: at a desk
    submission (received in status 2) or when the desk accepts an online one. A dossier whose end
    arrived first (out of order) gets its work dossier opened and closed at once."""
    data = eventdata.read(event, IntakeEvent)
    if isinstance(data, DossierReceived):
        if data.status != ACCEPTED:
            return  # submitted online: the matter starts when the desk accepts it
        opened_at = data.received_at
    elif isinstance(data, DossierAccepted):
        opened_at = data.accepted_at
    else:
        raise TypeError(f"{event.routing_key} opens no work dossier")
    code, agency = data.code, data.agency
    work_file = {
        "organ_id": agency,
        "file_catalog": svc.vietnam_today(opened_at).year,
        "file_notation": _notation(code),
        "title": f"Hồ sơ TTHC {code}",
        "dossier_code": code,
        "status": str(WorkFileStatus.OPEN),
        "opened_at": opened_at,
        "closed_at": None,
    }
    inserted = await execute_rows(session, _OPEN_FOR_DOSSIER, {**work_file, "code": code})
    if not inserted:
        return  # it has one already
    [row] = inserted
    await workfiles.emit_opened(
        session, {**work_file, "id": row["id"]}, actor=Actor.system(f"{event.routing_key} {code}")
    )
    if row["ended_by"] is not None:
        opened = await session.get(WorkFile, row["id"])
        assert opened is not None
        actor = Actor.system(f"{row['ended_by']} {code}")
        await workfiles.close_work_file(session, opened, at=max(row["ended_at"], opened_at), actor=actor)
        await session.execute(delete(_ENDINGS).where(_ENDINGS.c.dossier_code == code))


async def close_work_file_for_dossier(session: AsyncSession, event: CloudEvent) -> None:
    """The matter is over: the dossier's work dossier closes. If the end arrives before the
    opening (redelivery reorders), it is remembered so that the late opening closes at once."""
    step = eventdata.read(event, DossierStep)
    code, agency, at = step.code, step.agency, step.at
    work_file = await _work_file_of(session, code)
    if work_file is not None:
        if lifecycle.allows(Step.CLOSE_WORK_FILE, work_file.status):
            actor = Actor.system(f"{event.routing_key} {code}")
            await workfiles.close_work_file(session, work_file, at=at, actor=actor)
        return
    if isinstance(step, DossierRefused) or step.from_status == SUBMITTED:
        return  # never accepted: no work dossier was or will be opened for it
    if await session.get(DossierEnding, code) is None:
        session.add(DossierEnding(dossier_code=code, agency=agency, action=event.routing_key, ended_at=at))
        await session.flush()


def deliver_issued(settings: DocumentSettings) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        """Recipients served by this deployment get the issued document as an incoming one,
        registered with their arrival number; outside agencies are reached by exchange."""
        source_id = eventdata.read(event, DocumentIssued).id
        source = await session.get(Document, source_id)
        if source is None:
            raise PoisonEvent(f"document.issued for unknown document {source_id}")
        content = await storage.latest_content(session, source)
        for recipient in source.recipients:
            agency = recipient.get("organ_id")
            if agency not in settings.agencies or agency == source.agency:
                continue
            key = f"document:{source.id}"
            already = (
                await session.execute(
                    select(Document.id).where(Document.agency == agency, Document.source_document == key)
                )
            ).first()
            if already:
                continue
            now = svc.now_utc()
            copy = svc.new_document(
                direction="incoming",
                agency=agency,
                status=Status.RECEIVED,
                type_key=source.type_key,
                type_name=source.type_name,
                subject=source.subject,
                secrecy=source.secrecy,
                urgency=source.urgency,
                language=source.language,
                page_amount=source.page_amount,
                code_text=source.code_text,
                code_number=source.code_number,
                code_notation=source.code_notation,
                issued_date=source.issued_date,
                issuing_organ_id=source.agency,
                issuing_organ_name=source.issuing_organ_name,
                signer_position=source.signer_position,
                signer_name=source.signer_name,
                due_date=source.due_date,
                source_document=key,
                created_by="system",
            )
            copy.to_places = list(source.to_places)
            session.add(copy)
            await session.flush()
            if content is not None:
                # Same store, same bytes: the copy points at the issued file (encrypted if secret).
                copy.content_version = 1
                session.add(
                    ContentVersion(
                        document_id=copy.id,
                        number=1,
                        sha256=content.sha256,
                        blob=content.blob,
                        size=content.size,
                        media_type=content.media_type,
                        filename=content.filename,
                        signatures=content.signatures,
                        stage=Status.RECEIVED,
                        uploaded_by="system",
                        uploaded_at=now,
                    )
                )
            copy.arrival_date = now
            actor = Actor.system(f"document.issued {key} to {agency}")
            await incoming.emit_received(session, copy, source=key, actor=actor)
            await incoming.register_incoming(session, copy, at=now, actor=actor)

    return handle


async def recall_copies(session: AsyncSession, event: CloudEvent) -> None:
    """A recalled document is withdrawn by its receivers (Decree 30): the copies become
    ``recalled`` and their content is no longer served."""
    source_id = eventdata.read(event, DocumentRecalled).id
    rows = await session.execute(select(Document).where(Document.source_document == f"document:{source_id}"))
    for copy in rows.scalars():
        if lifecycle.allows(Step.WITHDRAW, copy.status, copy.direction):
            lifecycle.move(Step.WITHDRAW, copy)
            copy.recalled_at = svc.now_utc()
            copy.content_version = 0
            svc.touch(copy)


def make_consumer(settings: DocumentSettings) -> Consumer:
    handlers: dict[str, Callable[..., object]] = {
        **dict.fromkeys(OPENS, open_work_file_for_dossier),
        **dict.fromkeys(CLOSES, close_work_file_for_dossier),
        "document.issued": deliver_issued(settings),
        "document.recalled": recall_copies,
    }
    return Consumer(name="document", handlers=handlers, inbox=inbox)  # type: ignore[arg-type]

"""Document's reactions to events: a work dossier for every one-stop-shop dossier, delivery of
issued documents to recipient agencies of this deployment, and recall of those copies."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import service as svc
from services.document.config import DocumentSettings
from services.document.events import WorkFileOpened
from services.document.models import ContentVersion, Document, WorkFile, inbox, outbox
from shared.events import CloudEvent
from shared.inbox import Consumer, Handler, PoisonEvent


async def emit_opened(session: AsyncSession, work_file: WorkFile) -> None:
    await outbox.emit(
        session,
        "workfile.opened",
        WorkFileOpened(
            id=work_file.id,
            organ_id=work_file.organ_id,
            file_catalog=work_file.file_catalog,
            file_notation=work_file.file_notation,
            dossier_code=work_file.dossier_code,
        ),
        subject=f"workfile:{work_file.id}",
        agency=work_file.organ_id,
    )


async def open_work_file_for_dossier(session: AsyncSession, event: CloudEvent) -> None:
    """Every one-stop-shop dossier is processed inside a work dossier opened for it."""
    code = event.data.get("code")
    agency = event.data.get("agency")
    if not isinstance(code, str) or not isinstance(agency, str):
        raise PoisonEvent("dossier.received without code or agency")
    existing = (await session.execute(select(WorkFile).where(WorkFile.dossier_code == code))).scalar_one_or_none()
    if existing is not None:
        return
    now = svc.now_utc()
    work_file = WorkFile(
        organ_id=agency,
        file_catalog=svc.vietnam_today(now).year,
        file_notation=f"TTHC-{code.rsplit('-', 2)[-2]}-{code.rsplit('-', 1)[-1]}"
        if code.count("-") >= 2
        else f"TTHC-{code}",
        title=f"Hồ sơ TTHC {code}",
        dossier_code=code,
        status="open",
        opened_at=now,
    )
    session.add(work_file)
    await session.flush()
    await emit_opened(session, work_file)


def deliver_issued(settings: DocumentSettings) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        """Recipients served by this deployment get the issued document as an incoming one,
        registered with their arrival number; outside agencies are reached by exchange."""
        source_id = event.data.get("id")
        if not isinstance(source_id, int):
            raise PoisonEvent("document.issued without id")
        source = await session.get(Document, source_id)
        if source is None:
            raise PoisonEvent(f"document.issued for unknown document {source_id}")
        content = await svc.latest_content(session, source)
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
                status="received",
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
                        stage="received",
                        uploaded_by="system",
                        uploaded_at=now,
                    )
                )
            copy.arrival_date = now
            await svc.emit_received(session, copy, source=key)
            await svc.register_incoming(session, copy, at=now)

    return handle


async def recall_copies(session: AsyncSession, event: CloudEvent) -> None:
    """A recalled document is withdrawn by its receivers (Decree 30): the copies become
    ``recalled`` and their content is no longer served."""
    source_id = event.data.get("id")
    if not isinstance(source_id, int):
        raise PoisonEvent("document.recalled without id")
    rows = await session.execute(select(Document).where(Document.source_document == f"document:{source_id}"))
    for copy in rows.scalars():
        if copy.status != "recalled":
            copy.status = "recalled"
            copy.recalled_at = svc.now_utc()
            copy.content_version = 0
            svc.touch(copy)


def make_consumer(settings: DocumentSettings) -> Consumer:
    handlers: dict[str, Callable[..., object]] = {
        "dossier.received": open_work_file_for_dossier,
        "document.issued": deliver_issued(settings),
        "document.recalled": recall_copies,
    }
    return Consumer(name="document", handlers=handlers, inbox=inbox)  # type: ignore[arg-type]

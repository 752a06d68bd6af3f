"""Document's reactions to other parts' events."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document.events import WorkFileOpened
from services.document.models import WorkFile, inbox, outbox
from shared.events import CloudEvent
from shared.inbox import Consumer, PoisonEvent


async def open_work_file_for_dossier(session: AsyncSession, event: CloudEvent) -> None:
    """Every one-stop-shop dossier is processed inside a work dossier opened for it."""
    code = event.data.get("code")
    agency = event.data.get("agency")
    if not isinstance(code, str) or not isinstance(agency, str):
        raise PoisonEvent("dossier.received without code or agency")
    existing = (await session.execute(select(WorkFile).where(WorkFile.dossier_code == code))).scalar_one_or_none()
    if existing is not None:
        return
    now = datetime.now(UTC)
    work_file = WorkFile(
        organ_id=agency,
        file_catalog=now.year,
        file_notation=f"TTHC-{code.rsplit('-', 2)[-2]}-{code.rsplit('-', 1)[-1]}",
        title=f"Hồ sơ TTHC {code}",
        dossier_code=code,
        status="open",
        opened_at=now,
    )
    session.add(work_file)
    await session.flush()
    await outbox.emit(
        session,
        "workfile.opened",
        WorkFileOpened(
            id=work_file.id,
            organ_id=work_file.organ_id,
            file_catalog=work_file.file_catalog,
            file_notation=work_file.file_notation,
            dossier_code=code,
        ),
        subject=f"workfile:{work_file.id}",
        agency=agency,
    )


consumer = Consumer(name="document", handlers={"dossier.received": open_work_file_for_dossier}, inbox=inbox)

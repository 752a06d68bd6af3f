"""Work dossiers (hồ sơ công việc): opened by hand or for an accepted one-stop-shop dossier,
closed when their matter is over."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import lifecycle
from services.document import service as svc
from services.document.events import WorkFileClosed, WorkFileOpened
from services.document.lifecycle import Step, WorkFileStatus
from services.document.models import WorkFile, outbox
from services.document.schemas import WorkFileIn
from shared.auth import Caller
from shared.errors import Conflict, NotFound
from shared.events import Actor


async def get_own(session: AsyncSession, caller: Caller, work_file_id: int) -> WorkFile:
    """A work dossier of the caller's agency subtree; any other does not exist for them."""
    row = await session.get(WorkFile, work_file_id)
    if row is None or not caller.acts_in(row.organ_id):
        raise NotFound(f"no work file {work_file_id}")
    return row


async def open_work_file(session: AsyncSession, caller: Caller, body: WorkFileIn) -> WorkFile:
    """A work dossier with file code {OrganId, year, notation}, unique; ``workfile.opened``."""
    caller.require_agency(body.organ_id)
    year = body.file_catalog or svc.vietnam_today().year
    exists = (
        await session.execute(
            select(WorkFile.id).where(
                WorkFile.organ_id == body.organ_id,
                WorkFile.file_catalog == year,
                WorkFile.file_notation == body.file_notation,
            )
        )
    ).first()
    if exists:
        raise Conflict("a work file with this code already exists")
    row = WorkFile(
        organ_id=body.organ_id,
        file_catalog=year,
        file_notation=body.file_notation,
        title=body.title,
        dossier_code=None,
        status=WorkFileStatus.OPEN,
        opened_at=svc.now_utc(),
    )
    session.add(row)
    await session.flush()
    await emit_opened(session, row, actor=Actor.of(caller))
    return row


# what ``workfile.opened`` tells of the work dossier
_OPENED_FIELDS = ("id", "organ_id", "file_catalog", "file_notation", "dossier_code")


async def emit_opened(session: AsyncSession, work_file: WorkFile | Mapping[str, Any], *, actor: Actor) -> None:
    """``workfile.opened`` for a work dossier: its ORM object, or its row as written (a work
    dossier opened for a one-stop-shop dossier is inserted as a plain row)."""
    row = work_file if isinstance(work_file, Mapping) else {k: getattr(work_file, k) for k in _OPENED_FIELDS}
    await outbox.emit(
        session,
        "workfile.opened",
        WorkFileOpened(**{k: row[k] for k in _OPENED_FIELDS}, actor=actor),
        subject=f"workfile:{row['id']}",
        agency=row["organ_id"],
    )


async def close_work_file(session: AsyncSession, work_file: WorkFile, *, at: datetime, actor: Actor) -> None:
    lifecycle.move(Step.CLOSE_WORK_FILE, work_file)
    work_file.closed_at = at
    await session.flush()
    await outbox.emit(
        session,
        "workfile.closed",
        WorkFileClosed(
            id=work_file.id,
            organ_id=work_file.organ_id,
            file_catalog=work_file.file_catalog,
            file_notation=work_file.file_notation,
            dossier_code=work_file.dossier_code,
            closed_at=at,
            actor=actor,
        ),
        subject=f"workfile:{work_file.id}",
        agency=work_file.organ_id,
    )

"""A dossier's components and their files: checking what a request brings (base64 or streamed
parts), storing the files, and the files a dossier takes after it was submitted.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.blobs import CheckedFile, check_file
from services.intake.context import Context
from services.intake.dossiers import OWNER_ROLES, note, touch, visible_dossier
from services.intake.events import AddedFile, DossierFilesAdded
from services.intake.models import Dossier, DossierComponent, ProcedureVersion, outbox
from services.intake.schemas import ComponentIn, DossierOut
from services.intake.views import dossier_out, record
from services.intake.workflow import FILES_TAKEN, DossierStatus
from shared import clock
from shared.auth import Caller
from shared.errors import Conflict, Forbidden, PayloadTooLarge, Unprocessable
from shared.events import Actor

Checked = tuple[ComponentIn, dict[str, Any], CheckedFile | None]
"""A component as a request brings it, with its spec in the procedure and one of its files (if any)."""

UPLOAD_PART = re.compile(r"component-(\d{1,3})")
"""A multipart submission's file parts: ``component-<no>``, repeatable (a component of several files)."""


async def checked_components(
    ctx: Context,
    version: ProcedureVersion,
    items: Sequence[ComponentIn],
    *,
    online: bool,
    prefix: str,
    uploads: Mapping[str, list[CheckedFile]] | None = None,
) -> list[Checked]:
    """Each component with its file(s): from base64 in ``items``, or from a multipart body's
    ``component-<no>`` parts (``uploads``, already checked while streamed); a part whose
    component is not listed adds it. One entry per file."""
    specs = version.components
    if len(items) > len(specs):
        raise Unprocessable(f"{prefix}: more components than the procedure has", field=prefix)
    streamed: dict[int, list[CheckedFile]] = {}
    for part, files_ in (uploads or {}).items():
        matched = UPLOAD_PART.fullmatch(part)
        assert matched is not None  # the reader takes no other file part
        no = int(matched.group(1))
        if not 1 <= no <= len(specs):
            raise Unprocessable(f"{part}: the procedure has no component {no}", field=part)
        streamed[no] = files_
    listed = {item.no for item in items}
    items = [*items, *(ComponentIn(no=no) for no in sorted(streamed) if no not in listed)]
    seen: set[int] = set()
    files = sum(len(f) for f in streamed.values())
    if files > ctx.settings.max_files_per_request:
        raise Unprocessable(f"at most {ctx.settings.max_files_per_request} files per request")
    checked: list[Checked] = []
    total = 0
    for i, item in enumerate(items):
        field = f"{prefix}[{i}]"
        if item.no > len(specs):
            raise Unprocessable(f"{field}: the procedure has no component {item.no}", field=field)
        if item.no in seen:
            raise Unprocessable(f"{field}: component {item.no} given twice", field=field)
        seen.add(item.no)
        spec = specs[item.no - 1]
        if item.no in streamed:
            if item.file is not None:
                raise Unprocessable(f"{field}: its file is sent as part component-{item.no}, not here too", field=field)
            checked += [(item, spec, file_) for file_ in streamed[item.no]]
            total += sum(file_.size for file_ in streamed[item.no])
            continue
        if online and item.file is None:
            raise Unprocessable(f"{field}: an online submission carries every component as a file", field=field)
        file = None
        if item.file is not None:
            files += 1
            if files > ctx.settings.max_files_per_request:
                raise Unprocessable(f"at most {ctx.settings.max_files_per_request} files per request")
            file = check_file(
                filename=item.file.filename,
                declared_type=item.file.content_type,
                content_base64=item.file.content_base64,
                max_bytes=ctx.settings.max_file_bytes,
                accepted=ctx.settings.accepted_file_types,
                field=f"{field}.file",
            )
            total += file.size
            if total > ctx.settings.max_dossier_bytes:
                raise PayloadTooLarge(
                    f"the files of a dossier are at most {ctx.settings.max_dossier_bytes} bytes together",
                    field=f"{field}.file",
                    limit=ctx.settings.max_dossier_bytes,
                )
        checked.append((item, spec, file))
    return checked


async def store_files(ctx: Context, checked: list[Checked]) -> None:
    """Write the checked files (fsync'd) in a worker thread: the event loop keeps serving others."""
    for _, _, file in checked:
        if file is not None:
            await asyncio.to_thread(ctx.blobs.put, file)


def component_rows(
    dossier_id: int,
    checked: list[Checked],
    *,
    now: datetime,
    supplement: bool,
) -> list[dict[str, Any]]:
    return [
        {
            "dossier_id": dossier_id,
            "no": item.no,
            "name": spec["name"],
            "copies": item.copies or spec.get("copies", 1),
            "original": spec.get("original_required", True) if item.original is None else item.original,
            "sha256": file.sha256 if file else None,
            "size": file.size if file else None,
            "content_type": file.content_type if file else None,
            "filename": file.filename if file else None,
            "received_at": now,
            "supplement": supplement,
        }
        for item, spec, file in checked
    ]


# A new dossier's rows (and a supplement's components) go in by plain INSERTs: nothing reads

INSERT_COMPONENTS = insert(DossierComponent.__table__)


async def load_components(session: AsyncSession, dossier: Dossier) -> list[DossierComponent]:
    rows = await session.execute(
        select(DossierComponent).where(DossierComponent.dossier_id == dossier.id).order_by(DossierComponent.id)
    )
    return list(rows.scalars())


_FILES_OF = select(
    func.coalesce(func.sum(DossierComponent.size), 0),
).where(DossierComponent.dossier_id == bindparam("dossier_id"))


async def _files_room(session: AsyncSession, ctx: Context, caller: Caller, dossier: Dossier, no: int) -> int:
    """Who may add files, when, to which component; returns the bytes the dossier has left."""
    if not (caller.has_any(*OWNER_ROLES) and dossier.owner == caller.sub) and not (
        caller.has_any("desk_officer") and caller.acts_in(dossier.agency)
    ):
        raise Forbidden("files are added by the applicant or the desk")
    if dossier.status not in FILES_TAKEN:
        raise Conflict(
            f"a dossier in status {dossier.status} takes no files (only 1, and 5 while a supplement is requested)",
            status=dossier.status,
        )
    version = await session.get(ProcedureVersion, dossier.procedure_version_id)
    assert version is not None
    if not 1 <= no <= len(version.components):
        raise Unprocessable(f"the procedure has no component {no}", field="no", components=len(version.components))
    used = int((await session.execute(_FILES_OF, {"dossier_id": dossier.id})).scalar_one())
    return ctx.settings.max_dossier_bytes - used


async def files_room(session: AsyncSession, ctx: Context, caller: Caller, code: str, no: int) -> int:
    """Checked before an upload's body is read (no lock held while it streams in)."""
    return await _files_room(session, ctx, caller, await visible_dossier(session, caller, code), no)


async def add_files(
    session: AsyncSession, ctx: Context, caller: Caller, code: str, no: int, files: Sequence[CheckedFile]
) -> tuple[DossierOut, bool]:
    """Add uploaded files to component ``no``; (view, added). A file the component already has
    (same SHA-256) is not added twice, so a retried upload changes nothing."""
    if not files:
        raise Unprocessable("send the file(s) as part(s) named file", field="file")
    dossier = await visible_dossier(session, caller, code, for_update=True)
    room = await _files_room(session, ctx, caller, dossier, no)  # again, under the lock
    have = set(
        (
            await session.execute(
                select(DossierComponent.sha256).where(
                    DossierComponent.dossier_id == dossier.id, DossierComponent.no == no
                )
            )
        ).scalars()
    )
    new: list[CheckedFile] = []
    for file in files:
        if file.sha256 not in have:
            have.add(file.sha256)
            new.append(file)
    if sum(f.size for f in new) > room:
        raise PayloadTooLarge(
            f"the files of a dossier are at most {ctx.settings.max_dossier_bytes} bytes together",
            field="file",
            limit=ctx.settings.max_dossier_bytes,
        )
    if not new:
        return await dossier_out(session, ctx, record(dossier)), False
    version = await session.get(ProcedureVersion, dossier.procedure_version_id)
    assert version is not None
    spec = version.components[no - 1]
    item = ComponentIn(no=no)
    checked = [(item, spec, f) for f in new]
    await store_files(ctx, list(checked))
    now = clock.now()
    supplement = FILES_TAKEN[DossierStatus(dossier.status)]
    await session.execute(INSERT_COMPONENTS, component_rows(dossier.id, list(checked), now=now, supplement=supplement))
    added = [AddedFile(sha256=f.sha256, size=f.size, content_type=f.content_type) for f in new]
    note(
        session,
        dossier,
        caller,
        "files_added",
        at=now,
        details={"component_no": no, "files": [a.model_dump() for a in added]},
    )
    touch(dossier)
    await session.flush()
    await outbox.emit(
        session,
        "dossier.files_added",
        DossierFilesAdded(
            code=dossier.code,
            agency=dossier.agency,
            owner=dossier.owner,
            status=dossier.status,
            component_no=no,
            files=added,
            supplement=supplement,
            at=now,
            actor=Actor.of(caller),
        ),
        subject=dossier.code,
        agency=dossier.agency,
    )
    return await dossier_out(session, ctx, record(dossier)), True

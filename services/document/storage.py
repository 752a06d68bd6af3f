"""A document's files in storage: uploads spooled and checked, the blob store (encrypted for secret
documents), new versions of the main file and attachments."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import lifecycle
from services.document import service as svc
from services.document.lifecycle import Status, Step
from services.document.models import Attachment, ContentVersion, Document
from services.document.service import Toolkit
from shared.auth import Caller
from shared.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType

PDF_MAGIC = b"%PDF-"

# Who may upload the version that puts a document in each stage.
UPLOADERS: dict[str, tuple[str, ...]] = {
    Status.DRAFT: ("specialist", "leader", "clerk"),
    Status.SIGNED_BY_LEADER: ("leader",),
    Status.NUMBERED: ("clerk",),
    Status.SEALED: ("clerk",),
}


@dataclass
class Staged:
    """An upload spooled to disk while hashed and measured; not yet in the store."""

    path: Path
    sha256: str
    size: int
    head: bytes

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def spool_upload(request: Request, kit: Toolkit) -> Staged:
    """Stream the request body to a temporary file, hashing it; 413 past the size limit."""
    limit = kit.settings.max_file_bytes
    digest = hashlib.sha256()
    size = 0
    head = b""
    spool = kit.blobs.spool()
    path = Path(spool.name)
    try:
        with spool:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"a file may be at most {limit} bytes")
                if len(head) < 8:
                    head = (head + chunk)[:8]
                digest.update(chunk)
                spool.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - a local temporary file, on the error path
        raise
    if size == 0:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - an empty local temporary file
        raise Unprocessable("the file is empty")
    return Staged(path=path, sha256=digest.hexdigest(), size=size, head=head)


def require_pdf(staged: Staged) -> None:
    """The type is read from the bytes, never from the name or the declared content type."""
    if not staged.head.startswith(PDF_MAGIC):
        staged.discard()
        raise UnsupportedMediaType("the file is not a PDF (it does not start with %PDF-)")


def count_signatures(path: Path) -> int:
    """Signature fields that hold a signature, read with pyHanko; a PDF it cannot read is 422."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        with path.open("rb") as f:
            return len(PdfFileReader(f, strict=False).embedded_signatures)
    except Exception as exc:
        raise Unprocessable(f"the PDF cannot be read: {type(exc).__name__}") from exc


def starts_with_blob(kit: Toolkit, version: ContentVersion, path: Path) -> bool:
    """True when the new file appends to the previous version's bytes (incremental update)."""
    previous = read_blob(kit, version.blob)
    if os.path.getsize(path) <= len(previous):
        return False
    with path.open("rb") as f:
        return f.read(len(previous)) == previous


def commit_blob(kit: Toolkit, staged: Staged, *, secret: bool) -> str:
    """Move a staged file into the store; a secret document's file is encrypted first."""
    if not secret:
        kit.blobs.put_file(staged.sha256, staged.path)
        return staged.sha256
    plaintext = staged.path.read_bytes()
    name = f"{staged.sha256}.{kit.cipher.active}.enc"
    kit.blobs.put_bytes(name, kit.cipher.encrypt(plaintext, associated=staged.sha256.encode()))
    staged.discard()
    return name


def read_blob(kit: Toolkit, name: str) -> bytes:
    data = kit.blobs.read(name)
    if name.endswith(".enc"):
        return kit.cipher.decrypt(data, associated=name.split(".", 1)[0].encode())
    return data


async def latest_content(session: AsyncSession, doc: Document) -> ContentVersion | None:
    if not doc.content_version:
        return None
    return (
        await session.execute(
            select(ContentVersion).where(
                ContentVersion.document_id == doc.id, ContentVersion.number == doc.content_version
            )
        )
    ).scalar_one_or_none()


async def add_version(
    session: AsyncSession,
    kit: Toolkit,
    request: Request,
    caller: Caller,
    doc: Document,
    *,
    stage: str | None,
    filename: str,
) -> ContentVersion:
    """The request's PDF as the next version of the main file, moving ``doc`` (locked by the
    caller) to ``stage``. After the leader has signed, a version must append to the previous one
    so that the signatures already made stay valid."""
    step = Step.UPLOAD if stage is None else lifecycle.UPLOADS[stage]
    lifecycle.check(step, doc)
    target = stage or doc.status
    svc.require_role(caller, *UPLOADERS[target])
    previous = await latest_content(session, doc)
    staged = await spool_upload(request, kit)
    require_pdf(staged)
    try:
        signatures = count_signatures(staged.path)
        if target == Status.SIGNED_BY_LEADER and signatures < 1:
            raise Unprocessable("the leader's version must carry a signature")
        if target == Status.SEALED and (previous is None or signatures <= previous.signatures):
            raise Unprocessable("the sealed version must add the organisation's signature")
        if doc.status != Status.DRAFT and previous is not None and kit.settings.require_incremental_updates:
            if not starts_with_blob(kit, previous, staged.path):
                raise Unprocessable(
                    "this version does not append to the previous one (incremental update): it would "
                    "invalidate the signatures already made"
                )
    except BaseException:
        staged.discard()
        raise
    blob = commit_blob(kit, staged, secret=svc.secrecy_of(doc).is_secret)
    doc.content_version += 1
    version = ContentVersion(
        document_id=doc.id,
        number=doc.content_version,
        sha256=staged.sha256,
        blob=blob,
        size=staged.size,
        media_type="application/pdf",
        filename=filename,
        signatures=signatures,
        stage=target,
        uploaded_by=caller.sub,
        uploaded_at=svc.now_utc(),
    )
    session.add(version)
    lifecycle.move(step, doc)
    svc.touch(doc)
    await session.flush()
    return version


async def add_attachment(
    session: AsyncSession, kit: Toolkit, request: Request, caller: Caller, doc: Document, *, name: str
) -> Attachment:
    """The request's body as an attachment of ``doc`` (locked by the caller); its type is
    detected from the bytes."""
    import filetype

    lifecycle.check(Step.ATTACH, doc)
    staged = await spool_upload(request, kit)
    with staged.path.open("rb") as f:
        kind = filetype.guess(f.read(8192))
    media_type = kind.mime if kind else "application/octet-stream"
    blob = commit_blob(kit, staged, secret=svc.secrecy_of(doc).is_secret)
    row = Attachment(
        document_id=doc.id,
        name=name,
        sha256=staged.sha256,
        blob=blob,
        size=staged.size,
        media_type=media_type,
        uploaded_by=caller.sub,
        uploaded_at=svc.now_utc(),
    )
    session.add(row)
    svc.touch(doc)
    await session.flush()
    return row

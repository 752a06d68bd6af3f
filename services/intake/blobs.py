"""Tệp thành phần hồ sơ: component files stored by SHA-256 on disk, their type read from content.

Content addressing makes a re-sent file free and a stored file tamper-evident. A file is written
only after the whole submission has been checked; a transaction that still fails afterwards can
leave an unreferenced file behind, which is harmless (same name = same bytes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import filetype

from shared.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType


@dataclass(frozen=True, slots=True)
class CheckedFile:
    """A file that passed its checks: in memory (``content``, from base64 JSON) or staged on
    the store's disk (``staged``, streamed from a multipart body)."""

    sha256: str
    content_type: str
    filename: str
    size: int
    content: bytes | None = None
    staged: Path | None = None


def check_file(
    *, filename: str, declared_type: str, content_base64: str, max_bytes: int, accepted: list[str], field: str
) -> CheckedFile:
    """Decode, size-check and type-check one file: the declared type must be what the bytes are."""
    # base64 is 4/3 of the size: refuse before decoding a huge string
    if len(content_base64) > (max_bytes + 2) // 3 * 4 + 4:
        raise PayloadTooLarge(f"{field}: larger than {max_bytes} bytes", field=field, limit=max_bytes)
    try:
        content = base64.b64decode(content_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unprocessable(f"{field}: content_base64 is not base64", field=field) from exc
    if len(content) > max_bytes:
        raise PayloadTooLarge(f"{field}: larger than {max_bytes} bytes", field=field, limit=max_bytes)
    if not content:
        raise Unprocessable(f"{field}: the file is empty", field=field)
    kind = filetype.guess(content)
    actual = kind.mime if kind else None
    if actual not in accepted:
        raise UnsupportedMediaType(
            f"{field}: {actual or 'unrecognised content'} is not an accepted type",
            field=field,
            accepted=accepted,
        )
    if declared_type.split(";")[0].strip().lower() != actual:
        raise UnsupportedMediaType(
            f"{field}: declared {declared_type} but the content is {actual}", field=field, detected=actual
        )
    return CheckedFile(
        content=content,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content_type=actual,
        filename=Path(filename).name[:255] or "file",
    )


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    @property
    def incoming(self) -> Path:
        """Where streamed uploads are staged: on the store's own file system, so that keeping
        one is a rename."""
        return self.root / ".incoming"

    def put(self, checked: CheckedFile) -> None:
        target = self.path_of(checked.sha256)
        if target.exists():
            return  # same name, same bytes; a staged copy is removed by whoever staged it
        target.parent.mkdir(parents=True, exist_ok=True)
        if checked.staged is not None:
            with checked.staged.open("rb") as staged:
                os.fsync(staged.fileno())
            os.replace(checked.staged, target)
            return
        assert checked.content is not None
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(checked.content)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, sha256: str) -> bytes:
        return self.path_of(sha256).read_bytes()

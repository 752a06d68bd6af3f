"""Component files sent as ``multipart/form-data``, streamed to the blob store's disk as they
arrive: never the whole body in memory, each file hashed while it is written, refused as soon
as it passes its limit, its type read from its first bytes.

A file is written under the store's ``.incoming`` folder and moved into its content-addressed
place only when the request has been checked whole; a request that fails for any reason leaves
nothing behind (``ReceivedForm`` removes what it staged, whatever happened).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import filetype
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from services.intake.blobs import CheckedFile
from shared.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType

# what filetype needs to recognise every accepted type (TIFF and JPEG read furthest)
_HEAD_BYTES = 8192
# a declared type that says nothing: the content decides
_UNDECLARED = {"", "application/octet-stream"}


def is_multipart(request: Request) -> bool:
    return parse_options_header(request.headers.get("content-type", ""))[0] == b"multipart/form-data"


@dataclass
class _Part:
    name: str
    filename: str | None
    declared_type: str
    text: bytearray = field(default_factory=bytearray)
    out: IO[bytes] | None = None
    path: Path | None = None
    digest: hashlib._Hash | None = None
    size: int = 0
    head: bytearray = field(default_factory=bytearray)


@dataclass
class ReceivedForm:
    """The text parts (by name) and the files (by part name, in order) of one request."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[CheckedFile]] = field(default_factory=dict)

    def staged(self) -> list[CheckedFile]:
        return [f for files in self.files.values() for f in files]


class _Reader:
    def __init__(
        self,
        *,
        incoming: Path,
        file_parts: re.Pattern[str],
        text_parts: frozenset[str],
        max_file_bytes: int,
        max_total_bytes: int,
        max_text_bytes: int,
        max_files: int,
        accepted: list[str],
    ) -> None:
        self.incoming = incoming
        self.file_parts, self.text_parts = file_parts, text_parts
        self.max_file_bytes, self.max_total_bytes = max_file_bytes, max_total_bytes
        self.max_text_bytes, self.max_files = max_text_bytes, max_files
        self.accepted = accepted
        self.form = ReceivedForm()
        self.paths: list[Path] = []  # every file this request staged, to remove on failure
        self.total = 0
        self.count = 0
        self.part: _Part | None = None
        self.ended = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._name = bytearray()
        self._value = bytearray()

    # -------------------------------------------------- parser callbacks (synchronous)

    def on_part_begin(self) -> None:
        self._headers = []

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers.append((bytes(self._name).lower(), bytes(self._value)))
        self._name.clear()
        self._value.clear()

    def on_headers_finished(self) -> None:
        headers = dict(self._headers)
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        raw_name = options.get(b"name")
        if not raw_name:
            raise Unprocessable("every part needs a name (Content-Disposition: form-data; name=…)", field="body")
        name = raw_name.decode("utf-8", "replace")
        filename = options.get(b"filename")
        declared = parse_options_header(headers.get(b"content-type", b""))[0].decode("latin-1").lower()
        part = _Part(
            name=name,
            filename=filename.decode("utf-8", "replace") if filename is not None else None,
            declared_type=declared,
        )
        if self.file_parts.fullmatch(name):
            if part.filename is None:
                raise Unprocessable(f"part {name}: a file part carries a filename", field=name)
            self.count += 1
            if self.count > self.max_files:
                raise Unprocessable(f"at most {self.max_files} files per request", field=name)
            self.incoming.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.incoming, prefix="upload-")
            part.path = Path(tmp)
            self.paths.append(part.path)
            part.out = os.fdopen(fd, "wb")
            part.digest = hashlib.sha256()
        elif name in self.text_parts:
            if part.filename is not None:
                raise Unprocessable(f"part {name}: a text part, not a file", field=name)
            if name in self.form.fields:
                raise Unprocessable(f"part {name} given twice", field=name)
        else:
            raise Unprocessable(f"unknown part {name!r}", field=name, parts=sorted(self.text_parts))
        self.part = part

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        assert part is not None
        chunk = data[start:end]
        if part.out is None:
            if len(part.text) + len(chunk) > self.max_text_bytes:
                raise PayloadTooLarge(f"part {part.name}: larger than {self.max_text_bytes} bytes", field=part.name)
            part.text += chunk
            return
        part.size += len(chunk)
        self.total += len(chunk)
        if part.size > self.max_file_bytes:
            raise PayloadTooLarge(
                f"part {part.name}: a file is at most {self.max_file_bytes} bytes",
                field=part.name,
                limit=self.max_file_bytes,
            )
        if self.total > self.max_total_bytes:
            raise PayloadTooLarge(
                f"the files of a dossier are at most {self.max_total_bytes} bytes together",
                field=part.name,
                limit=self.max_total_bytes,
            )
        if len(part.head) < _HEAD_BYTES:
            part.head += chunk[: _HEAD_BYTES - len(part.head)]
        assert part.digest is not None
        part.digest.update(chunk)
        # the page cache takes a chunk in microseconds; fsync comes once, before the file is kept
        part.out.write(chunk)

    def on_part_end(self) -> None:
        part, self.part = self.part, None
        assert part is not None
        if part.out is None:
            try:
                self.form.fields[part.name] = bytes(part.text).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise Unprocessable(f"part {part.name}: not UTF-8 text", field=part.name) from exc
            return
        part.out.close()
        if part.size == 0:
            raise Unprocessable(f"part {part.name}: the file is empty", field=part.name)
        kind = filetype.guess(bytes(part.head))
        actual = kind.mime if kind else None
        if actual not in self.accepted:
            raise UnsupportedMediaType(
                f"part {part.name}: {actual or 'unrecognised content'} is not an accepted type",
                field=part.name,
                accepted=self.accepted,
            )
        if part.declared_type not in _UNDECLARED and part.declared_type != actual:
            raise UnsupportedMediaType(
                f"part {part.name}: declared {part.declared_type} but the content is {actual}",
                field=part.name,
                detected=actual,
            )
        assert part.path is not None and part.digest is not None
        self.form.files.setdefault(part.name, []).append(
            CheckedFile(
                content=None,
                staged=part.path,
                size=part.size,
                sha256=part.digest.hexdigest(),
                content_type=actual,
                filename=Path(part.filename or "").name[:255] or "file",
            )
        )

    def on_end(self) -> None:
        self.ended = True

    def close_open_file(self) -> None:
        if self.part is not None and self.part.out is not None:
            self.part.out.close()


@contextlib.asynccontextmanager
async def receive_form(
    request: Request,
    *,
    incoming: Path,
    file_parts: str,
    text_parts: frozenset[str] = frozenset(),
    max_file_bytes: int,
    max_total_bytes: int,
    max_files: int,
    accepted: list[str],
    max_text_bytes: int = 1024 * 1024,
) -> AsyncIterator[ReceivedForm]:
    """Read a multipart body whose file parts' names match ``file_parts`` (a regular
    expression) and whose text parts are ``text_parts``; any other part is refused. The files
    are staged on disk; whatever the caller does not move into the store (``BlobStore.put``)
    is removed when the block ends, also when it fails."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary")
    reader = _Reader(
        incoming=incoming,
        file_parts=re.compile(file_parts),
        text_parts=text_parts,
        max_file_bytes=max_file_bytes,
        max_total_bytes=max_total_bytes,
        max_text_bytes=max_text_bytes,
        max_files=max_files,
        accepted=accepted,
    )
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": reader.on_part_begin,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
            "on_end": reader.on_end,
        },
    )
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except FormParserError as exc:
            raise BadRequest("the multipart body is malformed") from exc
        except ClientDisconnect as exc:
            raise BadRequest("the client went away before the body ended") from exc
        finally:
            reader.close_open_file()
        if not reader.ended:
            raise BadRequest("the multipart body ended before its closing boundary")
        yield reader.form
    finally:
        for path in reader.paths:
            path.unlink(missing_ok=True)

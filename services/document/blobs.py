"""Content files by SHA-256 behind a small store interface, and AES-256-GCM for secret files.

The local store keeps ``<dir>/ab/cd/<sha256>``; writing the same bytes twice stores them once.
An S3-compatible store implements the same four methods (put_file, open_path/read, exists,
delete) with the object key = the blob name; it is an interface note, not shipped here.
Encrypted blobs are named ``<sha256 of plaintext>.<key id>.enc`` and framed
``LTE1 | len(key id) | key id | nonce(12) | ciphertext+tag``; the key id in the frame is what lets
old files decrypt after a new key becomes the active one (rotation = add a key, switch
``file_key_active``; re-encryption of old files is optional and can run later).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CHUNK = 256 * 1024
_MAGIC = b"LTE1"


class BlobStore(Protocol):
    def put_file(self, name: str, source: Path) -> None: ...
    def put_bytes(self, name: str, data: bytes) -> None: ...
    def exists(self, name: str) -> bool: ...
    def read(self, name: str) -> bytes: ...
    def iter_chunks(self, name: str) -> Iterator[bytes]: ...
    def delete(self, name: str) -> None: ...


class LocalBlobStore:
    """Blobs on local disk; writes go through a temporary file and an atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad blob name {name!r}")
        return self.root / name[:2] / name[2:4] / name

    def spool(self) -> tempfile._TemporaryFileWrapper[bytes]:
        """A temporary file on the same disk, so that put_file is a rename."""
        return tempfile.NamedTemporaryFile(dir=self.tmp, delete=False)

    def put_file(self, name: str, source: Path) -> None:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            source.unlink(missing_ok=True)
            return
        os.replace(source, target)

    def put_bytes(self, name: str, data: bytes) -> None:
        target = self.path(name)
        if target.exists():
            return
        with self.spool() as f:
            f.write(data)
        self.put_file(name, Path(f.name))

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def iter_chunks(self, name: str) -> Iterator[bytes]:
        with self.path(name).open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)


class UnknownFileKey(Exception):
    """An encrypted file names a key id that is no longer configured."""


class FileCipher:
    """AES-256-GCM with a ring of keys: the active one encrypts, any configured one decrypts."""

    def __init__(self, keys: Mapping[str, str | bytes], *, active: str) -> None:
        self._keys = {kid: base64.b64decode(k) if isinstance(k, str) else k for kid, k in keys.items()}
        if active not in self._keys:
            raise ValueError(f"active key {active!r} is not configured")
        for kid, key in self._keys.items():
            if len(key) != 32:
                raise ValueError(f"key {kid!r} is not 32 bytes")
        self.active = active

    def encrypt(self, plaintext: bytes, *, associated: bytes = b"") -> bytes:
        kid = self.active.encode()
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._keys[self.active]).encrypt(nonce, plaintext, associated)
        return _MAGIC + bytes([len(kid)]) + kid + nonce + sealed

    def key_id_of(self, blob: bytes) -> str:
        if not blob.startswith(_MAGIC):
            raise ValueError("not an encrypted blob")
        n = blob[4]
        return blob[5 : 5 + n].decode()

    def decrypt(self, blob: bytes, *, associated: bytes = b"") -> bytes:
        kid = self.key_id_of(blob)
        key = self._keys.get(kid)
        if key is None:
            raise UnknownFileKey(kid)
        start = 5 + len(kid.encode())
        nonce, sealed = blob[start : start + 12], blob[start + 12 :]
        return AESGCM(key).decrypt(nonce, sealed, associated)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""Điểm kiểm tra (checkpoint): signed tree heads of the audit log, and the export an inspector checks.

Checkpoints are C2SP signed notes (c2sp.org/signed-note, c2sp.org/tlog-checkpoint) with Ed25519
signatures; key IDs and key strings follow the spec's recommendation, which is also what Go's
``golang.org/x/mod/sumdb/note`` produces, so Go and Rust note tooling can read ours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.audit.canonical import HASH_SIZE
from services.audit.merkle import MerkleLog

ED25519 = 0x01  # signed-note signature type byte
SIGNATURE_DASH = "\u2014 "  # em dash and space open every signature line
MAX_SIGNATURES = 100  # the spec asks verifiers for a limit of at least 16; Go uses 100
MAX_NOTE_BYTES = 1 << 20
EXPORT_FORMAT = "lienthong-audit-export/1"

_SIZE_LINE = re.compile(r"0|[1-9][0-9]*")


class CheckpointError(ValueError):
    """A note or key string is malformed, or no trusted signature on it verifies."""


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte Ed25519 public key)[:4] (signed-note §Ed25519)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _check_key_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise CheckpointError(f"key name {name!r} must be non-empty, without spaces or '+'")


def _b64decode(text: str) -> bytes:
    """Strict standard base64: rejects other alphabets and non-canonical trailing bits."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"bad base64 {text[:20]!r}") from exc
    if base64.b64encode(raw).decode() != text:
        raise CheckpointError(f"non-canonical base64 {text[:20]!r}")
    return raw


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted log key: name, key ID and Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    def __str__(self) -> str:
        return verifier_key_string(self.name, self.public_key)


@dataclass(frozen=True)
class NoteSigner:
    """The log's signing key; ``sign`` turns a note text into a signed note."""

    name: str
    key_id: bytes
    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.key_id, self.private_key.public_key())

    @property
    def verifier_key(self) -> str:
        """The ``<name>+<hex key id>+<base64(0x01 ‖ pubkey)>`` string to give inspectors."""
        return verifier_key_string(self.name, self.private_key.public_key())

    def sign(self, text: str) -> str:
        _check_note_text(text)
        signature = self.private_key.sign(text.encode())
        encoded = base64.b64encode(self.key_id + signature).decode()
        return f"{text}\n{SIGNATURE_DASH}{self.name} {encoded}\n"


def make_signer(name: str, private_key: Ed25519PrivateKey | bytes) -> NoteSigner:
    """A signer named ``name`` (usually the log's origin) from a key or its 32-byte seed."""
    _check_key_name(name)
    if isinstance(private_key, bytes):
        if len(private_key) != 32:
            raise CheckpointError("an Ed25519 private key seed is 32 bytes")
        private_key = Ed25519PrivateKey.from_private_bytes(private_key)
    return NoteSigner(name, key_id(name, _raw_public(private_key.public_key())), private_key)


def verifier_key_string(name: str, public_key: Ed25519PublicKey | bytes) -> str:
    """Encode a verifier key as ``<name>+<hex key id>+<base64(0x01 ‖ pubkey)>``."""
    _check_key_name(name)
    raw = public_key if isinstance(public_key, bytes) else _raw_public(public_key)
    return f"{name}+{key_id(name, raw).hex()}+{base64.b64encode(bytes([ED25519]) + raw).decode()}"


def parse_verifier_key(text: str) -> NoteVerifier:
    """Decode a verifier key string, checking that its key ID matches its key."""
    name, sep1, rest = text.strip().partition("+")
    hex_id, sep2, encoded = rest.partition("+")
    if not (sep1 and sep2) or len(hex_id) != 8:
        raise CheckpointError("a verifier key reads <name>+<8 hex digits>+<base64 key>")
    _check_key_name(name)
    raw = _b64decode(encoded)
    if len(raw) != 33 or raw[0] != ED25519:
        raise CheckpointError("only Ed25519 (type 0x01) verifier keys are supported")
    if key_id(name, raw[1:]).hex() != hex_id.lower():
        raise CheckpointError("the verifier key's ID does not match its name and key")
    return NoteVerifier(name, bytes.fromhex(hex_id), Ed25519PublicKey.from_public_bytes(raw[1:]))


def generate_signer_key(name: str) -> tuple[str, str]:
    """A fresh key pair as (signer key string, verifier key string), like Go's note.GenerateKey.

    The signer string ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`` is a secret for the
    service's configuration; the verifier string is public.
    """
    signer = make_signer(name, Ed25519PrivateKey.generate())
    seed = signer.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    skey = f"PRIVATE+KEY+{name}+{signer.key_id.hex()}+{base64.b64encode(bytes([ED25519]) + seed).decode()}"
    return skey, signer.verifier_key


def parse_signer_key(text: str) -> NoteSigner:
    """Decode a ``PRIVATE+KEY+…`` signer key string (see ``generate_signer_key``)."""
    parts = text.strip().split("+", 4)  # base64 key material may itself hold '+'
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise CheckpointError("a signer key reads PRIVATE+KEY+<name>+<hex id>+<base64 key>")
    raw = _b64decode(parts[4])
    if len(raw) != 33 or raw[0] != ED25519:
        raise CheckpointError("only Ed25519 (type 0x01) signer keys are supported")
    signer = make_signer(parts[2], raw[1:])
    if signer.key_id.hex() != parts[3].lower():
        raise CheckpointError("the signer key's ID does not match its name and key")
    return signer


def _check_note_text(text: str) -> None:
    if not text.endswith("\n") or "\n\n" in text:
        raise CheckpointError("a note text ends in a newline and has no blank line")
    if any(ch < " " and ch != "\n" for ch in text):
        raise CheckpointError("a note carries no control characters but newline")


def open_note(note: str, verifiers: Sequence[NoteVerifier]) -> str:
    """Check a signed note against trusted keys and return its text (signed-note §Signatures).

    Signatures from unknown keys are ignored; a failing signature from a known key rejects the
    whole note, and so does a note without any verified known signature.
    """
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise CheckpointError("note too large")
    if any(ch < " " and ch != "\n" for ch in note):
        raise CheckpointError("a note carries no control characters but newline")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise CheckpointError("a signed note is text, a blank line, then signature lines")
    text, signature_block = note[: split + 1], note[split + 2 :]
    lines = signature_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError("too many signatures")
    known = {(v.name, v.key_id): v for v in verifiers}
    verified = False
    for line in lines:
        if not line.startswith(SIGNATURE_DASH):
            raise CheckpointError(f"malformed signature line {line[:40]!r}")
        name, space, encoded = line[len(SIGNATURE_DASH) :].partition(" ")
        _check_key_name(name)
        raw = _b64decode(encoded) if space else b""
        if len(raw) < 5:
            raise CheckpointError(f"malformed signature line {line[:40]!r}")
        verifier = known.get((name, raw[:4]))
        if verifier is None:
            continue
        try:
            verifier.public_key.verify(raw[4:], text.encode())
        except InvalidSignature as exc:
            raise CheckpointError(f"the signature by {name} does not verify") from exc
        verified = True
    if not verified:
        raise CheckpointError("no signature from a trusted key verifies this note")
    return text


class Checkpoint(NamedTuple):
    """A tree head: the log's origin, its size and the RFC 9162 root at that size."""

    origin: str
    size: int
    root: bytes

    def note_text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def sign_checkpoint(*, signer: NoteSigner, origin: str, size: int, root: bytes) -> str:
    """The signed checkpoint note for the tree of ``size`` leaves whose root is ``root``."""
    if not origin or "\n" in origin or size < 0 or len(root) != HASH_SIZE:
        raise CheckpointError("a checkpoint has a one-line origin, a size ≥ 0 and a 32-byte root")
    return signer.sign(Checkpoint(origin, size, root).note_text())


def parse_checkpoint_text(text: str) -> Checkpoint:
    """Read a checkpoint body (no signature check: use ``parse_and_verify`` for untrusted text)."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
        raise CheckpointError("a checkpoint body is origin, size, root hash (and extension lines)")
    origin, size_line, root_line = lines[:3]
    if not _SIZE_LINE.fullmatch(size_line):
        raise CheckpointError(f"bad tree size {size_line[:30]!r}")
    root = _b64decode(root_line)
    if len(root) != HASH_SIZE:
        raise CheckpointError("the root hash is 32 bytes")
    return Checkpoint(origin, int(size_line), root)


def parse_and_verify(
    text: str, verifier_key: str | NoteVerifier, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint against one trusted key; return (origin, size, root).

    Extension lines, if any, are signed but ignored. Pass ``origin`` to also require the log's
    identity.
    """
    verifier = parse_verifier_key(verifier_key) if isinstance(verifier_key, str) else verifier_key
    checkpoint = parse_checkpoint_text(open_note(text, [verifier]))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for {checkpoint.origin!r}, not {origin!r}")
    return checkpoint


# --- Exports for an inspector (read by tools/verify_audit_log.py) ------------------------------
#
# JSON lines, UTF-8. Line 1: {"format": EXPORT_FORMAT, "checkpoint": <signed note text>,
# "range": [start, end] | null}. "range" claims the export holds *every* entry start…end-1;
# null means a selection (e.g. one dossier's entries). Then one line per entry, indices strictly
# increasing: {"index": i, "leaf": <the record's canonical JSON text>, "proof": [base64 hash, …]},
# "proof" being the RFC 9162 inclusion proof of leaf i in the checkpoint's tree. Each leaf is
# thus checked on its own, so a verifier names exactly the first entry that fails.
#
# Consistency proof file: {"old_size": m, "new_size": n, "proof": [base64 hash, …]}.


async def _aiter(entries: Iterable[tuple[int, bytes]] | AsyncIterable[tuple[int, bytes]]
                 ) -> AsyncIterator[tuple[int, bytes]]:
    if isinstance(entries, AsyncIterable):
        async for entry in entries:
            yield entry
    else:
        for entry in entries:
            yield entry


async def export_lines(
    *,
    log: MerkleLog,
    checkpoint: str,
    entries: Iterable[tuple[int, bytes]] | AsyncIterable[tuple[int, bytes]],
    complete_range: tuple[int, int] | None = None,
    chunk: int = 1024,
) -> AsyncIterator[str]:
    """Yield the export's lines (each ending in a newline) for ``(index, leaf data)`` entries.

    ``checkpoint`` is a signed note from this log; proofs are against its size. Entries come in
    increasing index order; proofs are computed ``chunk`` entries per store read.
    """
    size = parse_checkpoint_text(checkpoint[: checkpoint.rfind("\n\n") + 1]).size
    header = {"format": EXPORT_FORMAT, "checkpoint": checkpoint,
              "range": list(complete_range) if complete_range else None}
    yield json.dumps(header, ensure_ascii=False) + "\n"
    batch: list[tuple[int, bytes]] = []
    async for entry in _aiter(entries):
        batch.append(entry)
        if len(batch) >= chunk:
            for line in await _entry_lines(log, batch, size):
                yield line
            batch = []
    if batch:
        for line in await _entry_lines(log, batch, size):
            yield line


async def _entry_lines(log: MerkleLog, batch: list[tuple[int, bytes]], size: int) -> list[str]:
    proofs = await log.inclusion_proofs([index for index, _ in batch], size)
    return [
        json.dumps({"index": index, "leaf": data.decode("utf-8"),
                    "proof": [base64.b64encode(h).decode() for h in proof]},
                   ensure_ascii=False) + "\n"
        for (index, data), proof in zip(batch, proofs, strict=True)
    ]


async def consistency_proof_document(
    *, log: MerkleLog, old_size: int, new_size: int
) -> dict[str, object]:
    """The JSON document proving the tree of ``old_size`` is a prefix of ``new_size``'s."""
    proof = await log.consistency_proof(old_size, new_size)
    return {"old_size": old_size, "new_size": new_size,
            "proof": [base64.b64encode(h).decode() for h in proof]}

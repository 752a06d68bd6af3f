"""Signed checkpoints: C2SP signed-note format, interoperable with Go's sumdb/note, tamper-evident."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.canonical import canonical_bytes, leaf_hash, node_hash
from services.audit.checkpoint import (
    CheckpointError,
    generate_signer_key,
    make_signer,
    open_note,
    parse_and_verify,
    parse_signer_key,
    parse_verifier_key,
    sign_checkpoint,
)

ORIGIN = "audit.lienthong.example/log"

# The example key pair and note of golang.org/x/mod/sumdb/note's tests. Ed25519 is
# deterministic, so signing the same text with the same key must give the same bytes.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = GO_TEXT + ("\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1"
                     "FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")


def test_notes_and_keys_match_the_go_reference_byte_for_byte() -> None:
    signer = parse_signer_key(GO_SKEY)
    assert signer.verifier_key == GO_VKEY
    assert signer.sign(GO_TEXT) == GO_NOTE
    assert open_note(GO_NOTE, [parse_verifier_key(GO_VKEY)]) == GO_TEXT
    with pytest.raises(CheckpointError):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), [parse_verifier_key(GO_VKEY)])


def test_mangled_verifier_keys_are_refused() -> None:
    # As the Go reference checks: every proper substring and every one-byte change fails.
    for i in range(len(GO_VKEY) + 1):
        for j in range(i + 1, len(GO_VKEY) + 1):
            if (i, j) != (0, len(GO_VKEY)):
                with pytest.raises(CheckpointError):
                    parse_verifier_key(GO_VKEY[i:j])
    for i in range(len(GO_VKEY)):
        mangled = GO_VKEY[:i] + chr(ord(GO_VKEY[i]) + 1) + GO_VKEY[i + 1:]
        with pytest.raises(CheckpointError):
            parse_verifier_key(mangled)


def test_checkpoint_round_trip_in_the_c2sp_format() -> None:
    key = Ed25519PrivateKey.generate()
    signer = make_signer(ORIGIN, key)
    root = node_hash(leaf_hash(canonical_bytes({"a": 1})), leaf_hash(canonical_bytes({"b": 2})))
    note = sign_checkpoint(signer=signer, origin=ORIGIN, size=2, root=root)

    body, signature_line = note.split("\n\n")
    assert body == f"{ORIGIN}\n2\n{base64.b64encode(root).decode()}"
    dash_name, encoded = signature_line.rstrip("\n").rsplit(" ", 1)
    assert dash_name == f"\u2014 {ORIGIN}"
    raw_sig = base64.b64decode(encoded)
    public = signer.verifier.public_key.public_bytes_raw()
    want_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + public).digest()[:4]
    assert raw_sig[:4] == want_id and len(raw_sig) == 4 + 64
    key.public_key().verify(raw_sig[4:], (body + "\n").encode())  # signs the text with its newline

    vkey = signer.verifier_key
    encoded_key = base64.b64encode(b"\x01" + public).decode()
    assert vkey == f"{ORIGIN}+{want_id.hex()}+{encoded_key}"
    origin, size, got_root = parse_and_verify(note, vkey)
    assert (origin, size, got_root) == (ORIGIN, 2, root)
    assert parse_and_verify(note, vkey, origin=ORIGIN).size == 2
    with pytest.raises(CheckpointError):
        parse_and_verify(note, vkey, origin="another.example/log")


@pytest.fixture(scope="module")
def signed() -> tuple[str, str]:
    signer = make_signer(ORIGIN, Ed25519PrivateKey.generate())
    note = sign_checkpoint(signer=signer, origin=ORIGIN, size=1000, root=hashlib.sha256(b"r").digest())
    return note, signer.verifier_key


def _flip_signature_byte(note: str) -> str:
    text, line = note.split("\n\n")
    prefix, encoded = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 0x01
    return f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"


@pytest.mark.parametrize("tamper", [
    lambda n: n.replace("\n1000\n", "\n1001\n"),  # size
    lambda n: n.replace("\n1000\n", "\n01000\n"),  # size, non-canonical
    lambda n: n.replace(ORIGIN + "\n", "audit.lienthong.example/fork\n", 1),  # origin
    lambda n: n.replace(base64.b64encode(hashlib.sha256(b"r").digest()).decode(),
                        base64.b64encode(hashlib.sha256(b"x").digest()).decode()),  # root
    _flip_signature_byte,
    lambda n: n.replace("\n\n", "\n"),  # no blank line
    lambda n: n.replace("\u2014 ", "-- "),  # not an em dash
    lambda n: n.split("\n\n")[0] + "\n",  # signature stripped
    lambda n: n.replace("\n1000\n", "\n1000\r\n"),  # control character
])
def test_a_tampered_checkpoint_is_rejected(signed: tuple[str, str], tamper) -> None:
    note, vkey = signed
    tampered = tamper(note)
    assert tampered != note
    with pytest.raises(CheckpointError):
        parse_and_verify(tampered, vkey)


def test_only_the_trusted_key_counts(signed: tuple[str, str]) -> None:
    note, vkey = signed
    other = make_signer(ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(CheckpointError, match="no signature from a trusted key"):
        parse_and_verify(note, other.verifier_key)
    # A witness's cosignature alongside ours is ignored, not an error…
    witness = make_signer("witness.example/w1", Ed25519PrivateKey.generate())
    cosigned = note + witness.sign(note.split("\n\n")[0] + "\n").split("\n\n")[1]
    assert parse_and_verify(cosigned, vkey).size == 1000
    # …but a note signed only by someone else is not accepted.
    forged = sign_checkpoint(signer=other, origin=ORIGIN, size=1000, root=hashlib.sha256(b"r").digest())
    with pytest.raises(CheckpointError):
        parse_and_verify(forged, vkey)


def test_generated_keys_round_trip_through_their_strings() -> None:
    skey, vkey = generate_signer_key(ORIGIN)
    assert skey.startswith(f"PRIVATE+KEY+{ORIGIN}+")
    signer = parse_signer_key(skey)
    assert signer.verifier_key == vkey and str(parse_verifier_key(vkey)) == vkey
    note = sign_checkpoint(signer=signer, origin=ORIGIN, size=0, root=hashlib.sha256(b"").digest())
    assert parse_and_verify(note, vkey) == (ORIGIN, 0, hashlib.sha256(b"").digest())
    for bad_name in ("", "has space", "a+b"):
        with pytest.raises(CheckpointError):
            make_signer(bad_name, Ed25519PrivateKey.generate())
    with pytest.raises(CheckpointError):
        parse_signer_key(skey.replace("+KEY+", "+KEYS+"))

#!/usr/bin/env python3
"""Verify an export of the lienthong audit log (nhật ký kiểm toán) against its signed checkpoint.

Standalone on purpose: it needs Python 3.11+ and the ``cryptography`` package, nothing of ours,
so an inspector can read all of it. What it checks:

1. the checkpoint (a C2SP signed note, c2sp.org/tlog-checkpoint) carries a valid Ed25519
   signature by the verifier key given with ``--key``;
2. every entry's leaf is canonical JSON (RFC 8785) and is included in the checkpoint's tree
   (RFC 9162 §2.1.3.2, with the proof that comes with the entry);
3. entries come in increasing index order, and, when the export says it holds a complete range,
   that none is missing;
4. optionally, that an earlier checkpoint the inspector kept is a prefix of this one
   (RFC 9162 §2.1.4.2), i.e. the log was only appended to since.

Export format (JSON lines, UTF-8):
    {"format": "lienthong-audit-export/1", "checkpoint": "<signed note>", "range": [s, e] | null}
    {"index": i, "leaf": "<canonical JSON of the record>", "proof": ["<base64 hash>", ...]}
    ...
Consistency proof file: {"old_size": m, "new_size": n, "proof": ["<base64 hash>", ...]}

Usage:
    python verify_audit_log.py EXPORT.jsonl --key 'NAME+KEYID+KEY'
        [--previous-checkpoint OLD.txt --consistency-proof PROOF.json]
Exit status: 0 all verified; 1 verification failed (the message names the first bad entry);
2 the input could not be read or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import decimal
import hashlib
import json
import math
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EXPORT_FORMAT = "lienthong-audit-export/1"


class Failure(Exception):
    """The log does not verify."""


class BadInput(Exception):
    """The input cannot be read as an export, a key or a proof."""


# --- RFC 9162 hashes and proof verification ----------------------------------------------------

def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def inclusion_root(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root that ``proof`` yields for ``leaf`` at ``index``, or None."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def consistent(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
               proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the old tree is a prefix of the new one?"""
    if old_size == new_size:
        return not proof and old_root == new_root
    if not 0 < old_size < new_size or not proof:
        return False
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node
        proof = [old_root, *proof]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


# --- Checkpoints: C2SP signed notes with Ed25519 -----------------------------------------------

def b64(text: object, what: str) -> bytes:
    """Strict standard base64."""
    try:
        raw = base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise BadInput(f"{what} is not canonical base64")
    return raw


def parse_key(vkey: str) -> tuple[str, bytes, Ed25519PublicKey]:
    """``<name>+<hex key id>+<base64(0x01 ‖ public key)>`` → (name, key id, key)."""
    parts = vkey.strip().split("+", 2)  # the base64 key itself may contain '+'
    if len(parts) != 3 or len(parts[1]) != 8:
        raise BadInput("the key reads NAME+KEYID+KEY")
    name, hex_id, encoded = parts
    raw = b64(encoded, "the key")
    if len(raw) != 33 or raw[0] != 0x01:
        raise BadInput("the key is not an Ed25519 note key")
    # signed-note key ID: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if key_id.hex() != hex_id.lower():
        raise BadInput("the key's ID does not match its name and key")
    return name, key_id, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_checkpoint(note: str, key: tuple[str, bytes, Ed25519PublicKey]) -> tuple[str, int, bytes]:
    """Check the note's signature by ``key`` and return (origin, size, root hash)."""
    name, key_id, public_key = key
    if any(ch < " " and ch != "\n" for ch in note):
        raise Failure("checkpoint: contains control characters")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise Failure("checkpoint: not a signed note")
    text, signatures = note[: split + 1], note[split + 2 : -1].split("\n")
    verified = False
    for line in signatures:
        signer, _, encoded = line.removeprefix("\u2014 ").partition(" ")
        if not line.startswith("\u2014 ") or not encoded:
            raise Failure("checkpoint: malformed signature line")
        try:
            sig = b64(encoded, "signature")
        except BadInput:
            raise Failure("checkpoint: malformed signature line") from None
        if signer != name or sig[:4] != key_id:
            continue  # someone else's signature (e.g. a witness): not ours to judge
        try:
            public_key.verify(sig[4:], text.encode())
        except InvalidSignature:
            raise Failure("checkpoint: the log's signature does not verify") from None
        verified = True
    if not verified:
        raise Failure("checkpoint: not signed by the given key")
    lines = text.split("\n")[:-1]
    if len(lines) < 3 or not lines[1].isascii() or not lines[1].isdigit() \
            or (lines[1] != "0" and lines[1].startswith("0")):
        raise Failure("checkpoint: body is not origin, size, root hash")
    try:
        root = b64(lines[2], "root hash")
    except BadInput:
        raise Failure("checkpoint: root hash is not base64") from None
    if len(root) != 32:
        raise Failure("checkpoint: root hash is not 32 bytes")
    return lines[0], int(lines[1]), root


# --- RFC 8785 canonical JSON, re-derived to check each leaf ------------------------------------

def es6_number(value: float) -> str:
    """ECMAScript Number::toString, which RFC 8785 §3.2.2.3 prescribes for numbers."""
    if not math.isfinite(value):
        raise ValueError("not a JSON number")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + es6_number(-value)
    digits_tuple, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()[1:]
    digits = "".join(map(str, digits_tuple))  # shortest round-trip digits, as repr gives
    k, n = len(digits), len(digits_tuple) + exponent  # value = 0.digits × 10^n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = f"e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return (digits[0] + ("." + digits[1:] if k > 1 else "")) + e


def canonical(value: object) -> str:
    """RFC 8785: sorted keys (by UTF-16 code units), no whitespace, minimal escapes."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(canonical(k) + ":" + canonical(value[k]) for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, float):
        return es6_number(value)
    return json.dumps(value, ensure_ascii=False)  # str, True, False, None


def no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


def is_canonical(text: str) -> bool:
    try:
        # Every JSON number is an IEEE double in RFC 8785, so read integers as floats too.
        value = json.loads(text, parse_int=float, object_pairs_hook=no_duplicate_keys)
        return isinstance(value, dict) and canonical(value) == text
    except (ValueError, RecursionError):
        return False


# --- The export ---------------------------------------------------------------------------------

def read_json(line: str, what: str) -> dict:
    try:
        value = json.loads(line, object_pairs_hook=no_duplicate_keys)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise BadInput(f"{what} is not a JSON object")
    return value


def verify_entries(lines, size: int, root: bytes, claimed_range: list | None) -> tuple[int, int, int]:
    """Check every entry line; return (count, first index, last index)."""
    count, first, previous = 0, -1, -1
    for line_number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        after = f"after entry {previous}" if count else "the first entry"
        try:
            entry = read_json(line, f"line {line_number}")
        except BadInput as exc:
            raise Failure(f"{exc} ({after})") from None
        index = entry.get("index")
        if type(index) is not int:
            raise Failure(f"line {line_number}: no integer index ({after})")
        where = f"entry {index}"
        if index <= previous:
            raise Failure(f"{where}: out of order or repeated ({after})")
        if index >= size:
            raise Failure(f"{where}: beyond the checkpoint's tree size {size}")
        if claimed_range is not None:
            start, end = claimed_range
            expected = previous + 1 if count else start
            if index < expected or index >= end:
                raise Failure(f"{where}: outside the range [{start}, {end}) the export claims")
            if index > expected:
                raise Failure(f"entry {expected}: missing from the export, which claims "
                              f"the complete range [{start}, {end})")
        leaf, proof = entry.get("leaf"), entry.get("proof")
        if not isinstance(leaf, str) or not isinstance(proof, list):
            raise Failure(f"{where}: lacks its leaf text or its proof")
        try:
            data = leaf.encode("utf-8")
        except UnicodeEncodeError:
            raise Failure(f"{where}: the leaf is not valid Unicode text") from None
        if not is_canonical(leaf):
            raise Failure(f"{where}: the leaf is not a canonical JSON (RFC 8785) object")
        try:
            hashes = [b64(p, "proof hash") for p in proof]
        except BadInput:
            raise Failure(f"{where}: its proof is not base64") from None
        if any(len(h) != 32 for h in hashes) or \
                inclusion_root(index, size, leaf_hash(data), hashes) != root:
            raise Failure(f"{where}: not included in the checkpoint's tree — "
                          "its record or its proof was altered")
        first = index if not count else first
        count, previous = count + 1, index
    if claimed_range is not None:
        start, end = claimed_range
        expected = previous + 1 if count else start
        if expected < end:
            raise Failure(f"entry {expected}: missing from the export, which claims "
                          f"the complete range [{start}, {end})")
    return count, first, previous


def verify_previous(key, origin: str, size: int, root: bytes,
                    old_path: str, proof_path: str) -> int:
    """Check the kept checkpoint and that this log only grew since; return its size."""
    with open(old_path, encoding="utf-8") as f:
        old_note = f.read()
    with open(proof_path, encoding="utf-8") as f:
        doc = read_json(f.read(), "the consistency proof file")
    try:
        old_origin, old_size, old_root = open_checkpoint(old_note, key)
    except Failure as exc:
        raise Failure(f"previous {exc}") from None
    if old_origin != origin:
        raise Failure(f"previous checkpoint is for log {old_origin!r}, not {origin!r}")
    if old_size > size:
        raise Failure(f"previous checkpoint has {old_size} entries, more than the current {size}")
    if doc.get("old_size") != old_size or doc.get("new_size") != size \
            or not isinstance(doc.get("proof"), list):
        raise BadInput(f"the consistency proof is not for sizes {old_size} → {size}")
    proof = [b64(p, "consistency proof hash") for p in doc["proof"]]
    if not consistent(old_size, size, old_root, root, proof):
        raise Failure(f"the log is not consistent with the previous checkpoint (size {old_size}): "
                      "history was rewritten or the logs forked")
    return old_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="the export, JSON lines")
    parser.add_argument("--key", required=True, help="the log's verifier key NAME+KEYID+KEY")
    parser.add_argument("--previous-checkpoint", help="an earlier checkpoint you kept")
    parser.add_argument("--consistency-proof", help="JSON proof from that checkpoint to this one")
    args = parser.parse_args(argv)
    if bool(args.previous_checkpoint) != bool(args.consistency_proof):
        parser.error("--previous-checkpoint and --consistency-proof go together")
    try:
        key = parse_key(args.key)
        with open(args.export, encoding="utf-8") as lines:
            header = read_json(next(lines, ""), "the first line")
            if header.get("format") != EXPORT_FORMAT or not isinstance(header.get("checkpoint"), str):
                raise BadInput(f"the first line is not a {EXPORT_FORMAT} header")
            claimed = header.get("range")
            if claimed is not None and not (isinstance(claimed, list) and len(claimed) == 2
                                            and all(type(x) is int for x in claimed)
                                            and 0 <= claimed[0] <= claimed[1]):
                raise BadInput("the header's range is not [start, end]")
            origin, size, root = open_checkpoint(header["checkpoint"], key)
            if claimed is not None and claimed[1] > size:
                raise Failure(f"the export claims entries up to {claimed[1]} of a tree of {size}")
            count, first, last = verify_entries(lines, size, root, claimed)
        report = (f"OK: checkpoint of {origin} at size {size}, root {base64.b64encode(root).decode()}"
                  f"; {count} entries verified")
        if count:
            report += f" (indices {first}..{last}" + (", complete)" if claimed else ")")
        if args.previous_checkpoint:
            old_size = verify_previous(key, origin, size, root,
                                       args.previous_checkpoint, args.consistency_proof)
            report += f"; consistent with the previous checkpoint at size {old_size}"
    except Failure as exc:
        print(f"FAIL: {exc}")
        return 1
    except (BadInput, OSError, UnicodeDecodeError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Leaf encoding of the audit log (nhật ký kiểm toán): RFC 8785 canonical JSON and RFC 9162 hashes.

A record's leaf data is its RFC 8785 (JCS) serialisation, so one record has exactly one byte form
and an inspector can recompute its hash from the exported text alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785

HASH_SIZE = 32
# RFC 9162 §2.1.1 domain separation: leaves and interior nodes can never be confused.
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
# MTH({}) of the empty tree (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()


class NonCanonicalRecordError(ValueError):
    """The record cannot be written as RFC 8785 JSON (NaN, integer beyond 2^53, non-str key, …)."""


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The leaf data of an audit record: its RFC 8785 canonical JSON, UTF-8 encoded."""
    if not isinstance(record, Mapping):
        raise NonCanonicalRecordError("an audit record is a JSON object")
    try:
        return rfc8785.dumps(dict(record))
    except rfc8785.CanonicalizationError as exc:
        raise NonCanonicalRecordError(str(exc)) from exc


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()

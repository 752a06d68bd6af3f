"""Leaf encoding of the audit log (nhật ký kiểm toán): RFC 8785 canonical JSON and RFC 9162 hashes.

A record's leaf data is its RFC 8785 (JCS) serialisation, so one record has exactly one byte form
and an inspector can recompute its hash from the exported text alone.
"""

from __future__ import annotations

import hashlib
import json
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


# RFC 8785 numbers are IEEE doubles: only integers below 2^53 in size are safe (I-JSON).
_MAX_EXACT = 2**53


def _plain(value: Any) -> bool:
    """True when the standard library's sorted, compact JSON already is RFC 8785's.

    That holds for objects whose keys lie in the Basic Multilingual Plane (code point order is
    then UTF-16 order), with strings, booleans, null, exactly representable integers and the
    floats both languages write alike (below). Both escape strings the same way: the short
    escapes for backspace, form feed, newline, return and tab, other control characters as
    lowercase six-character escapes, nothing else.

    Floats: Python's ``repr`` and ECMAScript's Number::toString pick the same shortest digits
    that read back as the number; they differ in where they switch to an exponent (Python below
    1e-4 and from 1e16, ECMAScript below 1e-6 and from 1e21) and in whole numbers (``2.0``
    against ``2``). A float that is not whole and lies in [1e-4, 1e16) is written alike: the
    access records' ``duration_ms``, one per API call, take this path.
    """
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        return -_MAX_EXACT < value < _MAX_EXACT
    if kind is float:
        return 1e-4 <= abs(value) < 1e16 and not value.is_integer()  # NaN and infinities fail the first
    if kind is dict:
        return all(type(k) is str and (k.isascii() or max(k) <= "\uffff") and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    return False


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The leaf data of an audit record: its RFC 8785 canonical JSON, UTF-8 encoded."""
    if not isinstance(record, Mapping):
        raise NonCanonicalRecordError("an audit record is a JSON object")
    if type(record) is dict and _plain(record):
        # the common case, several times faster; rfc8785 handles everything else
        try:
            return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: let rfc8785 refuse it properly
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

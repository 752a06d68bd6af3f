"""The auditor's pages: search the audit log, one entry with its inclusion proof checked here
(RFC 9162, against the latest checkpoint), and the latest checkpoint itself.

The check is the console's own, written from the RFC (not the audit part's code): the leaf is
the entry's record as RFC 8785 canonical JSON, so a record altered after it was logged, or a
proof that does not lead to the checkpoint's root, shows as not verified."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import rfc8785
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from services.console.api import ApiError
from services.console.web import Visit, require, visit

router = APIRouter(include_in_schema=False)
V = Depends(visit)
ROLES = ("auditor", "admin")


def leaf_hash(record: Any) -> bytes:
    return hashlib.sha256(b"\x00" + rfc8785.dumps(record)).digest()


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or None if it is malformed."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


@router.get("/kiem-toan")
async def search(v: Visit = V, subject: str = "", type: str = "", actor: str = "", cursor: str = "") -> Response:
    user = require(v, *ROLES)
    filters = {"subject": subject.strip(), "type": type.strip(), "actor": actor.strip(), "cursor": cursor}
    page: dict[str, Any] = {"items": [], "next": None}
    error = None
    try:
        page = await v.api.audit_entries(user.token, limit=v.settings.page_size, **filters)
    except ApiError as exc:
        if not exc.is_client_error:
            raise
        error = v.problem(exc)
    checkpoint = await v.api.latest_checkpoint()
    return v.render(
        "audit.html",
        page=page,
        checkpoint=checkpoint,
        error=error,
        subject=subject,
        type=type,
        actor=actor,
        cursor=cursor,
    )


@router.get("/kiem-toan/{index}")
async def entry(index: int, v: Visit = V) -> Response:
    user = require(v, *ROLES)
    found = await v.api.audit_entries(user.token, limit=1, cursor=str(index))
    items = [e for e in found.get("items", []) if e["index"] == index]
    if not items:
        raise ApiError(404, detail="no such entry")
    item = items[0]
    checkpoint = await v.api.latest_checkpoint()
    computed = leaf_hash(item["record"])
    proof: dict[str, Any] = {"proof": []}
    leaf_matches = included = False
    # logged after the latest checkpoint was signed (or before the first one)
    pending = checkpoint is None or index >= checkpoint["size"]
    if not pending:
        assert checkpoint is not None
        proof = await v.api.inclusion_proof(index=index, size=checkpoint["size"])
        leaf_matches = base64.b64encode(computed).decode() == item["leaf_hash"] == proof["leaf_hash"]
        path = [base64.b64decode(p) for p in proof["proof"]]
        root = root_from_inclusion(index, checkpoint["size"], computed, path)
        included = root is not None and base64.b64encode(root).decode() == checkpoint["root"]
    return v.render(
        "audit_entry.html",
        e=item,
        record=json.dumps(item["record"], ensure_ascii=False, indent=2, sort_keys=True),
        checkpoint=checkpoint,
        proof=proof,
        leaf_matches=leaf_matches,
        included=included,
        pending=pending,
    )

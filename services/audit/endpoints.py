"""Audit's HTTP API (through the gateway at ``/api/audit/…``).

Checkpoints, the public key and proofs are public: they reveal hashes only, and anyone holding a
record must be able to check it. Entries and exports are for auditors (and an agency's admin,
inside its own subtree).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.canonical import leaf_hash
from services.audit.checkpoint import export_lines
from services.audit.merkle import ProofRangeError
from services.audit.models import AuditCheckpoint, AuditEntry, TamperAlert
from services.audit.schemas import (
    AlertOut,
    AlertPage,
    CheckpointOut,
    CheckpointPage,
    ConsistencyProofOut,
    EntryOut,
    EntryPage,
    InclusionProofOut,
    KeyOut,
)
from services.audit.state import AuditState
from services.audit.store import SqlNodeStore, latest_checkpoint, tree
from shared import organ_id
from shared.auth import Caller, allow, current_caller, public
from shared.db import fetch_rows, request_session
from shared.errors import BadRequest, Conflict, Forbidden, InvalidParam, NotFound, problem_responses
from shared.events import TYPE_PREFIX, event_type
from shared.http import StrictRoute, json_response

router = APIRouter(tags=["audit"], route_class=StrictRoute)
Session = Depends(request_session, scope="function")


class OutOfRange(BadRequest):
    code, title = "out_of_range", "Outside the log"


class UnknownCheckpoint(NotFound):
    code, title = "unknown_checkpoint", "No checkpoint of that size"


class NotCheckpointed(Conflict):
    code, title = "not_checkpointed", "No signed checkpoint covers this yet"


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def agency_pattern(agency: str) -> str:
    """A LIKE pattern matching ``agency`` and its whole subtree: its empty (zero) groups are wild."""
    groups = agency.split(".")
    return ".".join("_" * len(g) if set(g) == {"0"} else g for g in groups[:3]) + "." + groups[3]

# --- Entries --------------------------------------------------------------------------------------


def entry_out(row: Mapping[str, Any]) -> EntryOut:
    return EntryOut(
        index=row["index"], source=row["source"], event_id=row["event_id"], type=row["type"],
        subject=row["subject"], agency=row["agency"], actor=row["actor"], time=row["time"],
        recorded_at=row["recorded_at"], leaf_hash=b64(leaf_hash(bytes(row["leaf"]))), record=json.loads(row["leaf"]),
    )


_ENTRY = AuditEntry.__table__.c


@router.get("/entries", response_model=EntryPage, responses=problem_responses(400, 401, 403),
            **allow("auditor", "admin"))
async def list_entries(
    actor: str | None = Query(default=None, max_length=200, description="who acted (user id)"),
    subject: str | None = Query(default=None, max_length=200, description="dossier code, document id…"),
    type: str | None = Query(default=None, max_length=200,  # noqa: A002 - the CloudEvents name
                             description="event type, full or as routing key (dossier.received)"),
    agency: str | None = Query(default=None, description="agency code: entries of it and its subtree"),
    since: Annotated[datetime | None, Query(description="event time ≥ this")] = None,
    until: Annotated[datetime | None, Query(description="event time < this")] = None,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: int | None = Query(default=None, ge=0, description="the `next` of the previous page"),
    *,
    caller: Annotated[Caller, Depends(current_caller)],
    session: AsyncSession = Session,
) -> Response:
    """Log entries matching every filter given, oldest first."""
    # plain rows of the table's columns: no ORM objects, and on PostgreSQL no transaction
    query = select(*_ENTRY).order_by(_ENTRY.index).limit(limit + 1)
    if agency is not None and not organ_id.is_valid(agency):
        raise BadRequest("not an agency code", invalid_params=[InvalidParam(name="agency", reason="NNN.NN.NN.XNN")])
    if not caller.has_any("auditor", "service"):
        # an agency's admin sees its own subtree only
        if caller.agency is None:
            raise Forbidden("an admin without an agency sees no entries")
        if agency is not None and not organ_id.within(agency, caller.agency):
            raise Forbidden("outside your agency", agency=agency)
        query = query.where(_ENTRY.agency.like(agency_pattern(agency or caller.agency)))
    elif agency is not None:
        query = query.where(_ENTRY.agency.like(agency_pattern(agency)))
    if actor is not None:
        query = query.where(_ENTRY.actor == actor)
    if subject is not None:
        query = query.where(_ENTRY.subject == subject)
    if type is not None:
        query = query.where(_ENTRY.type == (type if type.startswith(TYPE_PREFIX) else event_type(type)))
    if since is not None:
        query = query.where(_ENTRY.time >= since)
    if until is not None:
        query = query.where(_ENTRY.time < until)
    if cursor is not None:
        query = query.where(_ENTRY.index >= cursor)
    rows = await fetch_rows(session, query)
    page = EntryPage(
        items=[entry_out(r) for r in rows[:limit]], next=str(rows[limit]["index"]) if len(rows) > limit else None
    )
    return json_response(page)  # built and validated once, here

# --- Checkpoints and key --------------------------------------------------------------------------


def checkpoint_out(row: AuditCheckpoint) -> CheckpointOut:
    return CheckpointOut(size=row.size, root=b64(bytes(row.root)), note=row.note, created_at=row.created_at)


@router.get("/key", response_model=KeyOut, **public())
async def public_key(request: Request) -> KeyOut:
    """The verifier key that checks every checkpoint (give it to the standalone verifier)."""
    signer = AuditState.of(request).signer
    return KeyOut(origin=signer.name, verifier_key=signer.verifier_key)


@router.get("/checkpoints", response_model=CheckpointPage, responses=problem_responses(400), **public())
async def list_checkpoints(
    limit: int = Query(default=50, ge=1, le=500),
    cursor: int | None = Query(default=None, ge=0, description="the `next` of the previous page"),
    session: AsyncSession = Session,
) -> CheckpointPage:
    """Every signed checkpoint, newest first."""
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(limit + 1)
    if cursor is not None:
        query = query.where(AuditCheckpoint.size <= cursor)
    rows = (await session.execute(query)).scalars().all()
    return CheckpointPage(
        items=[checkpoint_out(r) for r in rows[:limit]], next=str(rows[limit].size) if len(rows) > limit else None
    )


@router.get("/checkpoints/latest", response_model=CheckpointOut, responses=problem_responses(404), **public())
async def newest_checkpoint(session: AsyncSession = Session) -> CheckpointOut:
    """The newest signed checkpoint."""
    row = await latest_checkpoint(session)
    if row is None:
        raise UnknownCheckpoint("no checkpoint has been signed yet")
    return checkpoint_out(row)


async def checkpoint_of_size(session: AsyncSession, size: int) -> AuditCheckpoint:
    row = await session.get(AuditCheckpoint, size)
    if row is None:
        raise UnknownCheckpoint(f"no checkpoint of size {size}", size=size)
    return row


@router.get("/checkpoints/{size}", response_model=CheckpointOut, responses=problem_responses(404, 422),
            **public())
async def one_checkpoint(size: int, session: AsyncSession = Session) -> CheckpointOut:
    """The checkpoint of tree size ``size``."""
    return checkpoint_out(await checkpoint_of_size(session, size))

# --- Proofs ---------------------------------------------------------------------------------------


@router.get("/proofs/inclusion", response_model=InclusionProofOut, responses=problem_responses(400, 404),
            **public())
async def inclusion_proof(
    index: int | None = Query(default=None, description="the entry's index; or give event_id"),
    event_id: str | None = Query(default=None, max_length=100),
    source: str | None = Query(default=None, max_length=200, description="with event_id, if ids repeat"),
    size: int | None = Query(default=None, description="a checkpoint's size; default the newest"),
    session: AsyncSession = Session,
) -> InclusionProofOut:
    """RFC 9162 inclusion proof of one entry in a signed checkpoint's tree."""
    if (index is None) == (event_id is None):
        raise BadRequest("give exactly one of index and event_id")
    if event_id is not None:
        query = select(AuditEntry.index).where(AuditEntry.event_id == event_id)
        if source is not None:
            query = query.where(AuditEntry.source == source)
        found = (await session.execute(query.limit(2))).scalars().all()
        if not found:
            raise NotFound("no entry for that event", event_id=event_id)
        if len(found) > 1:
            raise BadRequest("several sources used that event id: give source too")
        index = found[0]
    assert index is not None
    checkpoint = await checkpoint_of_size(session, size) if size is not None else await latest_checkpoint(session)
    if checkpoint is None:
        raise NotCheckpointed("no checkpoint has been signed yet")
    if not 0 <= index < checkpoint.size:
        raise OutOfRange(f"entry {index} is not in the tree of checkpoint {checkpoint.size}",
                         index=index, size=checkpoint.size)
    log = tree(session)
    try:
        proof = await log.inclusion_proof(index, checkpoint.size)
        leaf = (await SqlNodeStore(session).get_many([(0, index)]))[(0, index)]
    except ProofRangeError as exc:
        raise OutOfRange(str(exc)) from exc
    return InclusionProofOut(index=index, size=checkpoint.size, leaf_hash=b64(leaf),
                             proof=[b64(h) for h in proof], checkpoint=checkpoint.note)


@router.get("/proofs/consistency", response_model=ConsistencyProofOut, responses=problem_responses(400, 404),
            **public())
async def consistency_proof(
    old: int = Query(description="the earlier checkpoint's size"),
    new: int | None = Query(default=None, description="the later checkpoint's size; default the newest"),
    session: AsyncSession = Session,
) -> ConsistencyProofOut:
    """RFC 9162 proof that checkpoint ``old``'s tree is a prefix of checkpoint ``new``'s."""
    new_row = await checkpoint_of_size(session, new) if new is not None else await latest_checkpoint(session)
    if new_row is None:
        raise NotCheckpointed("no checkpoint has been signed yet")
    if not 0 < old <= new_row.size:
        raise OutOfRange(f"no consistency proof from size {old} to {new_row.size}", old=old, new=new_row.size)
    old_row = await checkpoint_of_size(session, old)
    try:
        proof = await tree(session).consistency_proof(old, new_row.size)
    except ProofRangeError as exc:
        raise OutOfRange(str(exc)) from exc
    return ConsistencyProofOut(old_size=old, new_size=new_row.size, proof=[b64(h) for h in proof],
                               old_checkpoint=old_row.note, new_checkpoint=new_row.note)

# --- Export and alerts ----------------------------------------------------------------------------


EXPORT_CHUNK = 1000


@router.get("/export", responses={200: {"content": {"application/jsonl": {}}}, **problem_responses(400, 401, 403, 409)},
            response_class=StreamingResponse, **allow("auditor"))
async def export(
    request: Request,
    start: int = Query(default=0, ge=0, alias="from", description="first index"),
    end: int | None = Query(default=None, ge=0, alias="to",
                            description="index after the last; default the newest checkpoint's size"),
    session: AsyncSession = Session,
) -> StreamingResponse:
    """Entries ``from``…``to``-1 as JSON lines with inclusion proofs against the first checkpoint
    covering them: the input of ``tools/verify_audit_log.py``."""
    size = await tree(session).size()
    if end is None:
        latest = await latest_checkpoint(session)
        if latest is None:
            raise NotCheckpointed("no checkpoint has been signed yet")
        end = latest.size
    if end > size:
        raise OutOfRange(f"the log has {size} entries", size=size)
    if start > end:
        raise OutOfRange("from is after to")
    covering = await session.scalar(
        select(AuditCheckpoint).where(AuditCheckpoint.size >= max(end, 1)).order_by(AuditCheckpoint.size).limit(1)
    )
    if covering is None:
        raise NotCheckpointed(f"no checkpoint covers entry {end - 1} yet; try again shortly")
    note = covering.note
    db = request.app.state.runtime.db

    async def lines() -> AsyncIterator[bytes]:
        # The request's session is closed once the endpoint returns; the stream reads with its own.
        async with db.sessionmaker() as reader:
            async def entries() -> AsyncIterator[tuple[int, bytes]]:
                for lo in range(start, end, EXPORT_CHUNK):
                    rows = await reader.execute(
                        select(AuditEntry.index, AuditEntry.leaf)
                        .where(and_(AuditEntry.index >= lo, AuditEntry.index < min(lo + EXPORT_CHUNK, end)))
                        .order_by(AuditEntry.index)
                    )
                    for index, leaf in rows:
                        yield index, bytes(leaf)

            async for line in export_lines(log=tree(reader), checkpoint=note, entries=entries(),
                                           complete_range=(start, end), chunk=EXPORT_CHUNK):
                yield line.encode()
            await reader.rollback()

    return StreamingResponse(
        lines(), media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="audit-{start}-{end}.jsonl"'},
    )


@router.get("/alerts", response_model=AlertPage, responses=problem_responses(400, 401, 403), **allow("auditor"))
async def alerts(
    limit: int = Query(default=50, ge=1, le=500),
    cursor: int | None = Query(default=None, ge=1, description="the `next` of the previous page"),
    session: AsyncSession = Session,
) -> AlertPage:
    """What the integrity self-check has found, newest first, a page at a time."""
    query = select(TamperAlert).order_by(TamperAlert.id.desc()).limit(limit + 1)
    if cursor is not None:
        query = query.where(TamperAlert.id <= cursor)
    rows = (await session.execute(query)).scalars().all()
    return AlertPage(
        items=[
            AlertOut(finding=r.finding, entry_index=r.entry_index, detail=r.detail, detected_at=r.detected_at)
            for r in rows[:limit]
        ],
        next=str(rows[limit].id) if len(rows) > limit else None,
    )

"""Hồ sơ một cửa: submission, workflow actions, deadlines, hand-offs and the result, in the
caller's transaction (the request's or a consumer's). Only ``flush()``es; never commits.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import JSON, ColumnElement, Executable, Select, String, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.blobs import BlobStore, CheckedFile, check_file
from services.intake.calendar import VN_TZ, WorkingCalendar
from services.intake.config import IntakeSettings
from services.intake.events import (
    STEP_EVENTS,
    AddedFile,
    DossierExtended,
    DossierFilesAdded,
    DossierHandedOff,
    DossierReceived,
    DossierResult,
)
from services.intake.models import (
    Agency,
    Dossier,
    DossierComponent,
    DossierEvent,
    DueDateChange,
    Handoff,
    IdempotencyRecord,
    IssuedResult,
    ProcedureVersion,
    counters,
    outbox,
)
from services.intake.schemas import (
    ActionRequest,
    ComponentIn,
    DossierOut,
    DossierSubmission,
    ExtensionIn,
    HandoffIn,
)
from services.intake.workflow import (
    Action,
    Channel,
    DossierStatus,
    TimelinessRule,
    TransitionNotAllowed,
    allowed_actions,
    clock_runs,
    initial_status,
    next_status,
    pauses_from_history,
    step_timeliness,
)
from shared import clock
from shared.auth import Caller
from shared.db import CodeCounter, insert_ignoring_duplicates, replace_in
from shared.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from shared.events import Actor
from shared.text import fold

log = structlog.get_logger("intake")

S = DossierStatus

# Who may take each action. Staff act only inside their agency subtree; a citizen (or the
# portal that submitted for them) only on their own dossier.
ACTION_ROLES: dict[Action, frozenset[str]] = {
    Action.ACCEPT: frozenset({"desk_officer"}),
    Action.REFUSE: frozenset({"desk_officer"}),
    Action.START_PROCESSING: frozenset({"desk_officer"}),
    Action.REQUEST_SUPPLEMENT: frozenset({"desk_officer", "specialist"}),
    Action.SUPPLEMENT_RECEIVED: frozenset({"desk_officer", "citizen", "integrator"}),
    Action.REQUEST_FEES: frozenset({"specialist", "leader"}),
    Action.FEES_PAID: frozenset({"desk_officer", "specialist"}),
    Action.WITHDRAW: frozenset({"desk_officer", "citizen", "integrator"}),
    Action.STOP: frozenset({"specialist", "leader"}),
    Action.FINISH: frozenset({"specialist", "leader"}),
    Action.RETURN_RESULT: frozenset({"desk_officer"}),
}
OWNER_ROLES = frozenset({"citizen", "integrator"})

# Body fields each action needs (required) and may carry (allowed besides ``note``).
ACTION_FIELDS: dict[Action, tuple[frozenset[str], frozenset[str]]] = {
    Action.ACCEPT: (frozenset(), frozenset()),
    Action.REFUSE: (frozenset({"reasons"}), frozenset()),
    Action.START_PROCESSING: (frozenset(), frozenset({"to_whom", "allotted_hours"})),
    Action.REQUEST_SUPPLEMENT: (frozenset({"missing_items"}), frozenset()),
    Action.SUPPLEMENT_RECEIVED: (frozenset(), frozenset({"components"})),
    Action.REQUEST_FEES: (frozenset(), frozenset({"amount_vnd"})),
    Action.FEES_PAID: (frozenset(), frozenset()),
    Action.WITHDRAW: (frozenset(), frozenset()),
    Action.STOP: (frozenset({"reasons"}), frozenset()),
    Action.FINISH: (frozenset({"result"}), frozenset()),
    Action.RETURN_RESULT: (frozenset(), frozenset()),
}

DEFAULT_PROCESSING_UNIT = "Bộ phận chuyên môn"


@dataclass
class Context:
    """What service functions need besides the session."""

    settings: IntakeSettings
    blobs: BlobStore
    labels: catalogue.VersionLabels
    _calendar: WorkingCalendar | None = None

    async def calendar(self, session: AsyncSession) -> WorkingCalendar:
        """The working calendar with the overrides as stored now, read when first needed: most
        requests (reads, and the actions that move no deadline) never need it."""
        if self._calendar is None:
            self._calendar = await catalogue.working_calendar(session, self.settings)
        return self._calendar

    @property
    def timeliness_rule(self) -> TimelinessRule:
        return TimelinessRule(
            on_time_band_hours=self.settings.timeliness_on_time_band_hours,
            on_time_band_share=self.settings.timeliness_on_time_band_share,
        )


def lookup_hash(settings: IntakeSettings, code: str, secret: str) -> str:
    """HMAC of the look-up secret, bound to the code (a leaked table gives nothing to replay)."""
    return hmac.new(settings.lookup_hash_secret.encode(), f"{code}\n{secret}".encode(), hashlib.sha256).hexdigest()


# Unambiguous letters and digits (no 0/O, 1/I/L): read off paper and typed by hand.
_SECRET_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def new_lookup_secret() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(10))


def _sealing_key(settings: IntakeSettings) -> bytes:
    label = b"lienthong intake: receipt secret sealing"
    return hmac.new(settings.lookup_hash_secret.encode(), label, hashlib.sha256).digest()


def seal_secret(settings: IntakeSettings, code: str, secret: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_sealing_key(settings)).encrypt(nonce, secret.encode(), code.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def open_secret(settings: IntakeSettings, code: str, sealed: str) -> str | None:
    """The printed secret, or None when it cannot be read back (another key since)."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        return AESGCM(_sealing_key(settings)).decrypt(raw[:12], raw[12:], code.encode()).decode()
    except (ValueError, InvalidTag):
        return None


async def receipt_secret(
    session: AsyncSession, ctx: Context, caller: Caller, dossier: Dossier, *, rotate: bool, reason: str | None
) -> str:
    """The look-up secret a receipt (form 01) prints. Printing again shows the same secret, so
    the paper receipt already handed out keeps working; a new secret only when the desk rotates
    it on purpose, with its reason in the history (e.g. the receipt was lost or seen by others)."""
    if rotate:
        if not caller.has_any("desk_officer") or not caller.acts_in(dossier.agency):
            raise Forbidden("only the desk rotates a look-up secret")
        if not reason or not reason.strip():
            raise Unprocessable("rotating the look-up secret needs a reason", field="reason")
    elif reason is not None:
        raise Unprocessable("reason goes with rotate_secret=true", field="reason")
    settings = ctx.settings
    kept = None
    if dossier.lookup_hash and dossier.lookup_secret_sealed and not rotate:
        kept = open_secret(settings, dossier.code, dossier.lookup_secret_sealed)
        if kept is not None and not hmac.compare_digest(lookup_hash(settings, dossier.code, kept), dossier.lookup_hash):
            kept = None
    if kept is not None:
        return kept
    had_one = dossier.lookup_hash is not None
    secret = new_lookup_secret()
    dossier.lookup_hash = lookup_hash(settings, dossier.code, secret)
    dossier.lookup_secret_sealed = seal_secret(settings, dossier.code, secret)
    if had_one:
        why = reason.strip() if rotate and reason else "the earlier secret could not be printed again"
        session.add(
            DossierEvent(
                dossier_id=dossier.id,
                action="rotate_lookup_secret",
                from_status=dossier.status,
                to_status=dossier.status,
                at=_now(),
                actor=caller.sub,
                actor_name=caller.name,
                details={"reason": why},
            )
        )
    _touch(dossier)
    await session.flush()
    return secret


def _now() -> datetime:
    return clock.now()


# ------------------------------------------------------------------ views

# What a view of a dossier shows, read as plain rows where the request only reads: building ORM
# objects cost more than the queries themselves (see ``read_rows`` for why dicts).
_D = Dossier.__table__.c
_DOSSIER_COLUMNS = (
    _D.id,
    _D.code,
    _D.agency,
    _D.owner,
    _D.procedure_code,
    _D.procedure_version_id,
    _D.channel,
    _D.status,
    _D.paused_from,
    _D.applicant,
    _D.received_at,
    _D.accepted_at,
    _D.due_at,
    _D.finished_at,
    _D.finished_on_time,
    _D.returned_at,
    _D.result,
)
_DOSSIER_BY_CODE = select(*_DOSSIER_COLUMNS).where(_D.code == bindparam("code"))
_C = DossierComponent.__table__.c
# exactly ComponentOut's fields (and whose they are), so that a row is a component's view as it is
_COMPONENT_COLUMNS = (
    _C.dossier_id,
    _C.no,
    _C.name,
    _C.copies,
    _C.original,
    _C.sha256.is_not(None).label("digitised"),
    _C.sha256,
    _C.size,
    _C.content_type,
    _C.filename,
    _C.supplement,
)
_COMPONENTS_OF = select(*_COMPONENT_COLUMNS).where(_C.dossier_id == bindparam("dossier_id")).order_by(_C.id)
_COMPONENTS_OF_MANY = (
    select(*_COMPONENT_COLUMNS)
    .where(_C.dossier_id.in_(bindparam("dossier_ids", expanding=True)))
    .order_by(_C.dossier_id, _C.id)
)

_R = IssuedResult.__table__.c
_PENDING_OF_MANY = (
    select(_R.dossier_id, _R.document_id, _R.number, _R.summary, _R.issued_at, _R.download_path, _R.learnt_at)
    .where(_R.dossier_id.in_(bindparam("dossier_ids", expanding=True)), _R.applied_at.is_(None))
    .order_by(_R.dossier_id, _R.id)
)
PENDING_DOSSIERS = select(_R.dossier_id).where(_R.applied_at.is_(None))
"""Ids of dossiers with a result waiting, for the list's ``has_pending_result`` filter."""

DossierRecord = Mapping[str, Any]
"""A dossier as a view reads it: a row of ``_DOSSIER_COLUMNS`` by column name."""


async def read_rows(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The rows of ``statement`` as plain dicts. A SQLAlchemy row finds a column by attribute
    only after a failed ordinary look-up, and a row mapping by key through Python code: views
    read dicts, and the response models validate them, several times faster."""
    result = await session.execute(statement, params)
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def dossier_query() -> Select[Any]:
    """The dossier columns views need, for a list's filters to be added to."""
    return select(*_DOSSIER_COLUMNS)


def _record(dossier: Dossier) -> DossierRecord:
    """The ORM dossier (as a request changed it) as the row a view reads."""
    return {column.key: getattr(dossier, column.key) for column in _DOSSIER_COLUMNS}


async def load_components(session: AsyncSession, dossier: Dossier) -> list[DossierComponent]:
    rows = await session.execute(
        select(DossierComponent).where(DossierComponent.dossier_id == dossier.id).order_by(DossierComponent.id)
    )
    return list(rows.scalars())


def _component_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """A component's row as written (``_component_rows``) as the view ``_COMPONENT_COLUMNS`` reads."""
    return {
        "no": row["no"],
        "name": row["name"],
        "copies": row["copies"],
        "original": row["original"],
        "digitised": row["sha256"] is not None,
        "sha256": row["sha256"],
        "size": row["size"],
        "content_type": row["content_type"],
        "filename": row["filename"],
        "supplement": row["supplement"],
    }


@functools.cache
def _allowed_action_names(status: int, paused_from: int | None) -> tuple[str, ...]:
    # every item of a list asks: a few statuses, worked out once
    return tuple(str(a) for a in allowed_actions(status, paused_from=paused_from))


def _view_data(
    dossier: DossierRecord,
    label: tuple[int, str],
    components: Sequence[Mapping[str, Any]],
    pending: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A dossier's view as plain data, for the response model to validate in one go: building
    a model of each part first (and the page's model of those) cost as much again."""
    status, paused_from = dossier["status"], dossier["paused_from"]
    return {
        "code": dossier["code"],
        "agency": dossier["agency"],
        "procedure_code": dossier["procedure_code"],
        "procedure_version": label[0],
        "procedure_name": label[1],
        "channel": dossier["channel"],
        "status": status,
        "status_label": DossierStatus(status).label_vi,
        "paused_from": paused_from,
        "applicant": dossier["applicant"],
        "received_at": dossier["received_at"],
        "accepted_at": dossier["accepted_at"],
        "due_at": dossier["due_at"],
        "finished_at": dossier["finished_at"],
        "finished_on_time": dossier["finished_on_time"],
        "returned_at": dossier["returned_at"],
        "components": components,
        "result": dossier["result"],
        "pending_results": pending,
        "allowed_actions": list(_allowed_action_names(status, paused_from)),
    }


async def dossier_out(session: AsyncSession, ctx: Context, dossier: DossierRecord) -> DossierOut:
    label = await ctx.labels.label(session, dossier["procedure_version_id"])
    components = await read_rows(session, _COMPONENTS_OF, {"dossier_id": dossier["id"]})
    pending = await read_rows(session, _PENDING_OF_MANY, {"dossier_ids": [dossier["id"]]})
    return DossierOut.model_validate(_view_data(dossier, label, components, pending))


async def dossier_views(session: AsyncSession, ctx: Context, dossiers: Sequence[DossierRecord]) -> list[dict[str, Any]]:
    """Views of a page of dossiers (as data for ``DossierPage``) with one query for all their
    components, not one per item."""
    if not dossiers:
        return []
    labels = await ctx.labels.of(session, {d["procedure_version_id"] for d in dossiers})
    by_dossier: dict[int, list[dict[str, Any]]] = {d["id"]: [] for d in dossiers}
    for component in await read_rows(session, _COMPONENTS_OF_MANY, {"dossier_ids": list(by_dossier)}):
        by_dossier[component["dossier_id"]].append(component)
    pending: dict[int, list[dict[str, Any]]] = {d["id"]: [] for d in dossiers}
    for row in await read_rows(session, _PENDING_OF_MANY, {"dossier_ids": list(pending)}):
        pending[row["dossier_id"]].append(row)
    return [_view_data(d, labels[d["procedure_version_id"]], by_dossier[d["id"]], pending[d["id"]]) for d in dossiers]


# built once, as every action and view reads the dossier: building a query costs about what running it does
_BY_CODE = select(Dossier).where(Dossier.code == bindparam("code"))
_BY_CODE_FOR_UPDATE = _BY_CODE.with_for_update()


async def find_dossier(session: AsyncSession, code: str, *, for_update: bool = False) -> Dossier | None:
    query = _BY_CODE_FOR_UPDATE if for_update else _BY_CODE
    return (await session.execute(query, {"code": code})).scalar_one_or_none()


def may_see(caller: Caller, *, agency: str, owner: str | None) -> bool:
    if caller.has_any(*OWNER_ROLES) and owner is not None and owner == caller.sub:
        return True
    staff = caller.roles - OWNER_ROLES
    return bool(staff) and caller.acts_in(agency)


async def visible_dossier(session: AsyncSession, caller: Caller, code: str, *, for_update: bool = False) -> Dossier:
    """The dossier if the caller may see it; 404 alike for absent and not yours."""
    dossier = await find_dossier(session, code, for_update=for_update)
    if dossier is None or not may_see(caller, agency=dossier.agency, owner=dossier.owner):
        raise NotFound(f"no dossier {code}")
    return dossier


async def visible_record(session: AsyncSession, caller: Caller, code: str) -> DossierRecord:
    """``visible_dossier`` for a request that only reads: the row, not the ORM object."""
    found = await read_rows(session, _DOSSIER_BY_CODE, {"code": code})
    if not found or not may_see(caller, agency=found[0]["agency"], owner=found[0]["owner"]):
        raise NotFound(f"no dossier {code}")
    return found[0]


# ------------------------------------------------------------------ submission


_FILE_CONTENTS = {"components": {"__all__": {"file": {"content_base64"}}}}


def request_hash(body: DossierSubmission, uploads: Mapping[str, list[CheckedFile]] | None = None) -> str:
    """SHA-256 of the body in a canonical form: the model's JSON (fields in declared order,
    defaults filled in) without the files' content, then each file's base64 after its position,
    which a newline (outside base64's alphabet) sets apart. The base64 is nearly all of the body:
    it is hashed as it is, not walked by a JSON encoder first. A multipart body's files count by
    their part and SHA-256, in order (hashed already while they streamed in)."""
    digest = hashlib.sha256(body.model_dump_json(exclude=_FILE_CONTENTS).encode())
    for i, item in enumerate(body.components):
        if item.file is not None:
            digest.update(b"\n%d\n" % i)
            digest.update(item.file.content_base64.encode())
    for part in sorted(uploads or {}):
        for file in (uploads or {})[part]:
            digest.update(f"\n{part}\n{file.sha256}".encode())
    return digest.hexdigest()


def _sequence_key(settings: IntakeSettings, agency: str, local: datetime) -> str:
    period = {"day": "%y%m%d", "month": "%y%m", "year": "%y"}[settings.code_sequence_reset]
    return f"dossier:{agency}:{local.strftime(period)}"


def _put_code(code: ColumnElement[str]) -> list[Any]:
    """Where a new dossier's code replaces its stand-in: the dossier, its events and their
    sequence, and the answer kept for its Idempotency-Key (none without one)."""
    dossiers, keys = Dossier.__table__, IdempotencyRecord.__table__
    return [
        update(dossiers).where(dossiers.c.id == bindparam("dossier_id")).values(code=code),
        *outbox.resubject(code),
        update(keys)
        .where(keys.c.caller == bindparam("idempotency_caller"), keys.c.key == bindparam("idempotency_key"))
        .values(
            dossier_code=code,
            response=replace_in(bindparam("answer", type_=JSON), bindparam("stand_in", type_=String), code),
        ),
    ]


DOSSIER_CODES = CodeCounter(counters, _put_code)


UPLOAD_PART = re.compile(r"component-(\d{1,3})")
"""A multipart submission's file parts: ``component-<no>``, repeatable (a component of several files)."""


async def _checked_components(
    ctx: Context,
    version: ProcedureVersion,
    items: Sequence[ComponentIn],
    *,
    online: bool,
    prefix: str,
    uploads: Mapping[str, list[CheckedFile]] | None = None,
) -> list[tuple[ComponentIn, dict[str, Any], CheckedFile | None]]:
    """Each component with its file(s): from base64 in ``items``, or from a multipart body's
    ``component-<no>`` parts (``uploads``, already checked while streamed); a part whose
    component is not listed adds it. One entry per file."""
    specs = version.components
    if len(items) > len(specs):
        raise Unprocessable(f"{prefix}: more components than the procedure has", field=prefix)
    streamed: dict[int, list[CheckedFile]] = {}
    for part, files_ in (uploads or {}).items():
        matched = UPLOAD_PART.fullmatch(part)
        assert matched is not None  # the reader takes no other file part
        no = int(matched.group(1))
        if not 1 <= no <= len(specs):
            raise Unprocessable(f"{part}: the procedure has no component {no}", field=part)
        streamed[no] = files_
    listed = {item.no for item in items}
    items = [*items, *(ComponentIn(no=no) for no in sorted(streamed) if no not in listed)]
    seen: set[int] = set()
    files = sum(len(f) for f in streamed.values())
    if files > ctx.settings.max_files_per_request:
        raise Unprocessable(f"at most {ctx.settings.max_files_per_request} files per request")
    checked: list[tuple[ComponentIn, dict[str, Any], CheckedFile | None]] = []
    total = 0
    for i, item in enumerate(items):
        field = f"{prefix}[{i}]"
        if item.no > len(specs):
            raise Unprocessable(f"{field}: the procedure has no component {item.no}", field=field)
        if item.no in seen:
            raise Unprocessable(f"{field}: component {item.no} given twice", field=field)
        seen.add(item.no)
        spec = specs[item.no - 1]
        if item.no in streamed:
            if item.file is not None:
                raise Unprocessable(f"{field}: its file is sent as part component-{item.no}, not here too", field=field)
            checked += [(item, spec, file_) for file_ in streamed[item.no]]
            total += sum(file_.size for file_ in streamed[item.no])
            continue
        if online and item.file is None:
            raise Unprocessable(f"{field}: an online submission carries every component as a file", field=field)
        file = None
        if item.file is not None:
            files += 1
            if files > ctx.settings.max_files_per_request:
                raise Unprocessable(f"at most {ctx.settings.max_files_per_request} files per request")
            file = check_file(
                filename=item.file.filename,
                declared_type=item.file.content_type,
                content_base64=item.file.content_base64,
                max_bytes=ctx.settings.max_file_bytes,
                accepted=ctx.settings.accepted_file_types,
                field=f"{field}.file",
            )
            total += file.size
            if total > ctx.settings.max_dossier_bytes:
                raise PayloadTooLarge(
                    f"the files of a dossier are at most {ctx.settings.max_dossier_bytes} bytes together",
                    field=f"{field}.file",
                    limit=ctx.settings.max_dossier_bytes,
                )
        checked.append((item, spec, file))
    return checked


async def _store_files(ctx: Context, checked: list[tuple[ComponentIn, dict[str, Any], CheckedFile | None]]) -> None:
    """Write the checked files (fsync'd) in a worker thread: the event loop keeps serving others."""
    for _, _, file in checked:
        if file is not None:
            await asyncio.to_thread(ctx.blobs.put, file)


def _component_rows(
    dossier_id: int,
    checked: list[tuple[ComponentIn, dict[str, Any], CheckedFile | None]],
    *,
    now: datetime,
    supplement: bool,
) -> list[dict[str, Any]]:
    return [
        {
            "dossier_id": dossier_id,
            "no": item.no,
            "name": spec["name"],
            "copies": item.copies or spec.get("copies", 1),
            "original": spec.get("original_required", True) if item.original is None else item.original,
            "sha256": file.sha256 if file else None,
            "size": file.size if file else None,
            "content_type": file.content_type if file else None,
            "filename": file.filename if file else None,
            "received_at": now,
            "supplement": supplement,
        }
        for item, spec, file in checked
    ]


# A new dossier's rows (and a supplement's components) go in by plain INSERTs: nothing reads
# them back as ORM objects, and the unit of work cost as much again as the statements.
_INSERT_DOSSIER = insert(Dossier.__table__).returning(Dossier.__table__.c.id)
_INSERT_COMPONENTS = insert(DossierComponent.__table__)
_INSERT_EVENT = insert(DossierEvent.__table__)
_INSERT_DUE_DATE_CHANGE = insert(DueDateChange.__table__)


async def submit(
    session: AsyncSession,
    ctx: Context,
    caller: Caller,
    body: DossierSubmission,
    *,
    idempotency_key: str | None,
    uploads: Mapping[str, list[CheckedFile]] | None = None,
) -> tuple[DossierOut, bool]:
    """Record a dossier; returns (view, created). A replayed key gives the first answer again.
    ``uploads`` are the files of a multipart submission by part (``component-<no>``)."""
    if uploads and any(item.file is not None for item in body.components):
        raise Unprocessable("a multipart submission sends its files as component-<no> parts, not in base64")
    digest = request_hash(body, uploads) if idempotency_key else ""
    if idempotency_key:
        inserted = await session.execute(
            insert_ignoring_duplicates(session, IdempotencyRecord.__table__),
            {"caller": caller.sub, "key": idempotency_key, "request_hash": digest, "created_at": _now()},
        )
        if not inserted.rowcount:
            earlier = await session.get(IdempotencyRecord, (caller.sub, idempotency_key))
            assert earlier is not None
            if earlier.request_hash != digest or earlier.response is None:
                raise Conflict("this Idempotency-Key was used with another body", code_hint="idempotency_key_reused")
            return DossierOut.model_validate(earlier.response), False

    desk = caller.has_any("desk_officer")
    channel = Channel.DESK if desk else Channel.ONLINE
    now = _now()
    local = now.astimezone(VN_TZ)

    procedure_code, agency_suffix = catalogue.split_procedure_code(body.procedure_code)
    if agency_suffix is not None and agency_suffix != body.agency:
        raise Unprocessable("procedure_code names another agency than agency", field="procedure_code")
    version = catalogue.in_force(await catalogue.versions_of(session, procedure_code), local.date())
    if version is None:
        raise Unprocessable(f"no procedure {procedure_code} in force", field="procedure_code")
    agency = await session.get(Agency, body.agency)
    if agency is None or not agency.active:
        raise Unprocessable(f"no active agency {body.agency}", field="agency")
    if desk:
        caller.require_agency(body.agency)
    if not catalogue.may_receive(body.agency, version):
        raise NotReceivedHere(
            f"{agency.name} does not receive procedure {procedure_code}; submit it at one of its receiving agencies",
            field="agency",
            receiving_agencies=list(version.receiving_agencies),
        )
    if channel is Channel.ONLINE and version.online_level == "none":
        raise Unprocessable(f"procedure {procedure_code} cannot be submitted online", field="procedure_code")
    checked = await _checked_components(
        ctx, version, body.components, online=channel is Channel.ONLINE, prefix="components", uploads=uploads
    )
    given = {item.no for item, _, _ in checked}
    missing = [
        f"{i + 1}. {spec['name']}"
        for i, spec in enumerate(version.components)
        if spec.get("required", True) and i + 1 not in given
    ]
    if missing:
        raise Unprocessable("required components are missing", field="components", missing=missing)

    await _store_files(ctx, checked)

    status = initial_status(channel)
    accepted = status is S.ACCEPTED
    # at the desk the clock starts at once: the dossier is inserted with its due date
    due_at = await _due_on_acceptance(session, ctx, now, version.processing_hours, version.cutoff) if accepted else None
    # The code's number comes from a counter row per agency and day whose lock is held until
    # commit (that is what keeps codes gap-free): every concurrent submission to that agency
    # waits for it. So everything that names the dossier is written first under a stand-in,
    # and the number is taken last, in the statement that puts the code in place of it.
    stand_in = f"~{secrets.token_hex(12)}"
    dossier: dict[str, Any] = {
        "code": stand_in,
        "agency": body.agency,
        "agency_path": catalogue.agency_path(body.agency),
        "procedure_code": procedure_code,
        "procedure_version_id": version.id,
        "channel": str(channel),
        "status": int(status),
        "paused_from": None,
        "applicant": body.applicant.model_dump(),
        "applicant_search": fold(" ".join(filter(None, [body.applicant.full_name, body.applicant.id_number])))[:500],
        "owner": None if desk else caller.sub,
        "received_by": caller.name if desk else None,
        "received_at": now,
        "accepted_at": now if accepted else None,
        "processing_hours": Decimal(version.processing_hours),
        "extension_hours": Decimal(0),
        "cutoff": version.cutoff,
        "due_at": due_at,
        "finished_at": None,
        "finished_on_time": None,
        "returned_at": None,
        "result": None,
        "lookup_hash": None,
        "version": 1,
        "updated_at": now,
    }
    dossier["id"] = (await session.execute(_INSERT_DOSSIER, dossier)).scalar_one()
    components = _component_rows(dossier["id"], checked, now=now, supplement=False)
    if components:
        await session.execute(_INSERT_COMPONENTS, components)
    await session.execute(
        _INSERT_EVENT,
        {
            "dossier_id": dossier["id"],
            "action": "receive",
            "from_status": None,
            "to_status": int(status),
            "at": now,
            "actor": caller.sub,
            "actor_name": caller.name,
            "details": {"channel": str(channel)},
        },
    )
    if accepted:
        await session.execute(
            _INSERT_DUE_DATE_CHANGE,
            {
                "dossier_id": dossier["id"],
                "at": now,
                "old_due_at": None,
                "new_due_at": due_at,
                "cause": "accepted",
                "reason": None,
                "actor_name": caller.name,
            },
        )
    received = await outbox.emit(
        session,
        "dossier.received",
        DossierReceived(
            code=stand_in,
            agency=body.agency,
            procedure_code=procedure_code,
            procedure_version=version.version,
            status=int(status),
            channel=str(channel),
            received_at=now,
            due_at=due_at,
            owner=dossier["owner"],
            actor=Actor.of(caller),
        ),
        subject=stand_in,
        agency=body.agency,
    )
    view = DossierOut.model_validate(
        _view_data(dossier, (version.version, version.name), [_component_data(c) for c in components])
    )
    code = await DOSSIER_CODES.take(
        session,
        key=_sequence_key(ctx.settings, body.agency, local),
        prefix=f"{body.agency}-{local:%y%m%d}-",
        dossier_id=dossier["id"],
        stand_in=stand_in,
        event_ids=[received.id],
        idempotency_caller=caller.sub,
        idempotency_key=idempotency_key,
        answer=view.model_dump(mode="json") if idempotency_key else None,
    )
    return view.model_copy(update={"code": code}), True


# ------------------------------------------------------------------ files added later

# Statuses a dossier takes more files in: submitted online and not yet accepted (the citizen
# completes it), and waiting for a supplement (what the desk asked for).
FILE_STATUSES: frozenset[DossierStatus] = frozenset({S.SUBMITTED, S.SUPPLEMENT_REQUESTED})

_FILES_OF = select(
    func.coalesce(func.sum(DossierComponent.size), 0),
).where(DossierComponent.dossier_id == bindparam("dossier_id"))


async def _files_room(session: AsyncSession, ctx: Context, caller: Caller, dossier: Dossier, no: int) -> int:
    """Who may add files, when, to which component; returns the bytes the dossier has left."""
    if not (caller.has_any(*OWNER_ROLES) and dossier.owner == caller.sub) and not (
        caller.has_any("desk_officer") and caller.acts_in(dossier.agency)
    ):
        raise Forbidden("files are added by the applicant or the desk")
    if dossier.status not in FILE_STATUSES:
        raise Conflict(
            f"a dossier in status {dossier.status} takes no files (only 1, and 5 while a supplement is requested)",
            status=dossier.status,
        )
    version = await session.get(ProcedureVersion, dossier.procedure_version_id)
    assert version is not None
    if not 1 <= no <= len(version.components):
        raise Unprocessable(f"the procedure has no component {no}", field="no", components=len(version.components))
    used = int((await session.execute(_FILES_OF, {"dossier_id": dossier.id})).scalar_one())
    return ctx.settings.max_dossier_bytes - used


async def files_room(session: AsyncSession, ctx: Context, caller: Caller, code: str, no: int) -> int:
    """Checked before an upload's body is read (no lock held while it streams in)."""
    return await _files_room(session, ctx, caller, await visible_dossier(session, caller, code), no)


async def add_files(
    session: AsyncSession, ctx: Context, caller: Caller, code: str, no: int, files: Sequence[CheckedFile]
) -> tuple[DossierOut, bool]:
    """Add uploaded files to component ``no``; (view, added). A file the component already has
    (same SHA-256) is not added twice, so a retried upload changes nothing."""
    if not files:
        raise Unprocessable("send the file(s) as part(s) named file", field="file")
    dossier = await visible_dossier(session, caller, code, for_update=True)
    room = await _files_room(session, ctx, caller, dossier, no)  # again, under the lock
    have = set(
        (
            await session.execute(
                select(DossierComponent.sha256).where(
                    DossierComponent.dossier_id == dossier.id, DossierComponent.no == no
                )
            )
        ).scalars()
    )
    new: list[CheckedFile] = []
    for file in files:
        if file.sha256 not in have:
            have.add(file.sha256)
            new.append(file)
    if sum(f.size for f in new) > room:
        raise PayloadTooLarge(
            f"the files of a dossier are at most {ctx.settings.max_dossier_bytes} bytes together",
            field="file",
            limit=ctx.settings.max_dossier_bytes,
        )
    if not new:
        return await dossier_out(session, ctx, _record(dossier)), False
    version = await session.get(ProcedureVersion, dossier.procedure_version_id)
    assert version is not None
    spec = version.components[no - 1]
    item = ComponentIn(no=no)
    checked = [(item, spec, f) for f in new]
    await _store_files(ctx, list(checked))
    now = _now()
    supplement = dossier.status == S.SUPPLEMENT_REQUESTED
    await session.execute(
        _INSERT_COMPONENTS, _component_rows(dossier.id, list(checked), now=now, supplement=supplement)
    )
    added = [AddedFile(sha256=f.sha256, size=f.size, content_type=f.content_type) for f in new]
    session.add(
        DossierEvent(
            dossier_id=dossier.id,
            action="files_added",
            from_status=dossier.status,
            to_status=dossier.status,
            at=now,
            actor=caller.sub,
            actor_name=caller.name,
            details={"component_no": no, "files": [a.model_dump() for a in added]},
        )
    )
    _touch(dossier)
    await session.flush()
    await outbox.emit(
        session,
        "dossier.files_added",
        DossierFilesAdded(
            code=dossier.code,
            agency=dossier.agency,
            owner=dossier.owner,
            status=dossier.status,
            component_no=no,
            files=added,
            supplement=supplement,
            at=now,
            actor=Actor.of(caller),
        ),
        subject=dossier.code,
        agency=dossier.agency,
    )
    return await dossier_out(session, ctx, _record(dossier)), True


# ------------------------------------------------------------------ deadlines


_HISTORY = (
    select(DossierEvent.at, DossierEvent.to_status)
    .where(DossierEvent.dossier_id == bindparam("dossier_id"))
    .order_by(DossierEvent.id)
)


async def _history(session: AsyncSession, dossier: Dossier) -> list[tuple[datetime, int]]:
    rows = await session.execute(_HISTORY, {"dossier_id": dossier.id})
    return [(at, status) for at, status in rows.all()]


class DossierClock:
    """A dossier's deadline clock in one request: the working calendar and the pauses so far,
    each read once, and only by the requests that need them.

    ``step`` is the history entry (time, new status) the request is adding and has not flushed
    yet: a transition reads everything first and writes in one flush at the end."""

    def __init__(
        self, session: AsyncSession, ctx: Context, dossier: Dossier, step: tuple[datetime, int] | None = None
    ) -> None:
        self.session, self.ctx, self.dossier, self.step = session, ctx, dossier, step
        self._pauses: list[tuple[datetime, datetime | None]] | None = None

    async def calendar(self) -> WorkingCalendar:
        return await self.ctx.calendar(self.session)

    async def pauses(self) -> list[tuple[datetime, datetime | None]]:
        if self._pauses is None:
            history = await _history(self.session, self.dossier)
            if self.step is not None:
                history.append(self.step)
            self._pauses = pauses_from_history(history)
        return self._pauses


def _record_due_change(
    session: AsyncSession,
    dossier: Dossier,
    new_due: datetime | None,
    *,
    cause: str,
    reason: str | None,
    actor: str,
    at: datetime,
) -> None:
    if new_due is not None:
        new_due = new_due.astimezone(UTC)
    if new_due == dossier.due_at:
        return
    session.add(
        DueDateChange(
            dossier_id=dossier.id,
            at=at,
            old_due_at=dossier.due_at,
            new_due_at=new_due,
            cause=cause,
            reason=reason,
            actor_name=actor,
        )
    )
    dossier.due_at = new_due


async def _due_on_acceptance(
    session: AsyncSession, ctx: Context, accepted_at: datetime, hours: Decimal, cutoff: str | None
) -> datetime:
    due = (await ctx.calendar(session)).due_date(accepted_at, hours, cutoff=catalogue.parse_cutoff(cutoff))
    assert due is not None  # no pause yet
    return due.astimezone(UTC)


async def _start_clock(session: AsyncSession, ctx: Context, dossier: Dossier, *, now: datetime, actor: str) -> None:
    dossier.accepted_at = now
    due = await _due_on_acceptance(session, ctx, now, dossier.processing_hours, dossier.cutoff)
    _record_due_change(session, dossier, due, cause="accepted", reason=None, actor=actor, at=now)


async def recompute_due(clock: DossierClock) -> datetime | None:
    """Due date from acceptance, processing + extension hours, and the pauses so far."""
    dossier = clock.dossier
    assert dossier.accepted_at is not None
    return (await clock.calendar()).due_date(
        dossier.accepted_at,
        Decimal(dossier.processing_hours) + Decimal(dossier.extension_hours),
        cutoff=catalogue.parse_cutoff(dossier.cutoff),
        pauses=await clock.pauses(),
    )


async def hours_used(clock: DossierClock, until: datetime) -> Decimal | None:
    dossier = clock.dossier
    if dossier.accepted_at is None:
        return None
    calendar = await clock.calendar()
    start = calendar.clock_start(dossier.accepted_at, cutoff=catalogue.parse_cutoff(dossier.cutoff))
    if until <= start:
        return Decimal(0)
    return calendar.working_hours_between(start, until, pauses=await clock.pauses()).quantize(Decimal("0.01"))


# ------------------------------------------------------------------ hand-offs


_OPEN_STEP = (
    select(Handoff)
    .where(Handoff.dossier_id == bindparam("dossier_id"), Handoff.completed_at.is_(None))
    .order_by(Handoff.id.desc())
)


async def _open_step(session: AsyncSession, dossier: Dossier) -> Handoff | None:
    rows = await session.execute(_OPEN_STEP, {"dossier_id": dossier.id})
    return rows.scalars().first()


async def _close_step(clock: DossierClock, at: datetime) -> Handoff | None:
    step = await _open_step(clock.session, clock.dossier)
    if step is None:
        return None
    step.completed_at = at
    calendar = await clock.calendar()
    used = calendar.working_hours_between(step.handed_at, at, pauses=await clock.pauses())
    step.used_hours = used.quantize(Decimal("0.01"))
    allotted = Decimal(step.allotted_hours) if step.allotted_hours is not None else None
    due = clock.dossier.due_at
    if allotted is None and due is not None:
        # a step given no share of the deadline has what was left of the dossier's own
        allotted = calendar.working_hours_between(step.handed_at, due, pauses=await clock.pauses())
    if allotted is not None:
        step.timeliness = str(step_timeliness(used_hours=used, allotted_hours=allotted, rule=clock.ctx.timeliness_rule))
    return step


async def _result_to_desk(clock: DossierClock, at: datetime, *, by: Actor, result: DossierResult | None) -> None:
    """Finishing closes the open step and records the last hand-off of the tracking sheet: the
    result, from whoever held the dossier to the desk that returns it, graded as the dossier
    itself (its working hours used against its processing time)."""
    dossier = clock.dossier
    closed = await _close_step(clock, at)
    from_whom = closed.to_whom if closed is not None else DEFAULT_PROCESSING_UNIT
    allowed = Decimal(dossier.processing_hours) + Decimal(dossier.extension_hours)
    used = Decimal(dossier.hours_used) if dossier.hours_used is not None else None
    grade = (
        str(step_timeliness(used_hours=used, allotted_hours=allowed, rule=clock.ctx.timeliness_rule))
        if used is not None
        else None
    )
    note = f"Kết quả: văn bản {result.number}" if result is not None and result.number else None
    clock.session.add(
        Handoff(
            dossier_id=dossier.id,
            from_whom=from_whom,
            to_whom=DESK_UNIT,
            handed_at=at,
            allotted_hours=None,
            step_due_at=dossier.due_at,
            completed_at=at,
            used_hours=used,
            timeliness=grade,
            note=note,
        )
    )
    await outbox.emit(
        clock.session,
        "dossier.handoff",
        DossierHandedOff(
            code=dossier.code,
            agency=dossier.agency,
            from_whom=from_whom,
            to_whom=DESK_UNIT,
            handed_at=at,
            step_due_at=dossier.due_at,
            previous_step_timeliness=closed.timeliness if closed is not None else None,
            actor=by,
        ),
        subject=dossier.code,
        agency=dossier.agency,
    )


async def hand_off(
    clock: DossierClock,
    *,
    from_whom: str,
    to_whom: str,
    allotted_hours: Decimal | None,
    note: str | None,
    at: datetime,
    by: Actor,
) -> Handoff:
    """Close the open step and open the next; written at the caller's next flush."""
    dossier = clock.dossier
    previous = await _close_step(clock, at)
    step_due_at = None
    if allotted_hours:
        step_due_at = (await clock.calendar()).add_working_hours(at, allotted_hours).astimezone(UTC)
    step = Handoff(
        dossier_id=dossier.id,
        from_whom=from_whom,
        to_whom=to_whom,
        handed_at=at,
        allotted_hours=allotted_hours,
        step_due_at=step_due_at,
        note=note,
    )
    clock.session.add(step)
    await outbox.emit(
        clock.session,
        "dossier.handoff",
        DossierHandedOff(
            code=dossier.code,
            agency=dossier.agency,
            from_whom=from_whom,
            to_whom=to_whom,
            handed_at=at,
            step_due_at=step_due_at,
            previous_step_timeliness=previous.timeliness if previous else None,
            actor=by,
        ),
        subject=dossier.code,
        agency=dossier.agency,
    )
    return step


async def add_handoff(session: AsyncSession, ctx: Context, caller: Caller, code: str, body: HandoffIn) -> Handoff:
    dossier = await visible_dossier(session, caller, code, for_update=True)
    if not (caller.roles - OWNER_ROLES):
        raise Forbidden("hand-offs are between officers")
    if dossier.status not in (S.ACCEPTED, S.PROCESSING, S.SUPPLEMENT_REQUESTED, S.FEES_REQUESTED):
        raise Conflict(f"a dossier in status {dossier.status} is not being handled", status=dossier.status)
    step = await hand_off(
        DossierClock(session, ctx, dossier),
        from_whom=caller.name,
        to_whom=body.to_whom,
        allotted_hours=body.allotted_hours,
        note=body.note,
        at=_now(),
        by=Actor.of(caller),
    )
    _touch(dossier)
    await session.flush()
    return step


def _touch(dossier: Dossier) -> None:
    dossier.version += 1
    dossier.updated_at = _now()


# ------------------------------------------------------------------ actions


def _check_fields(action: Action, body: ActionRequest) -> None:
    required, allowed = ACTION_FIELDS[action]
    given = {name for name in body.model_fields_set if getattr(body, name) is not None} - {"note"}
    missing = sorted(required - given)
    extra = sorted(given - required - allowed)
    if missing:
        raise Unprocessable(f"{action} needs: {', '.join(missing)}", missing=missing)
    if extra:
        raise Unprocessable(f"{action} does not take: {', '.join(extra)}", not_taken=extra)


def _authorise(caller: Caller, action: Action, dossier: Dossier) -> None:
    roles = ACTION_ROLES[action]
    if "service" in caller.roles:
        return
    if not caller.roles & roles:
        raise Forbidden(f"{action} needs one of the roles: {', '.join(sorted(roles))}")
    staff_roles = (caller.roles & roles) - OWNER_ROLES
    if staff_roles and caller.acts_in(dossier.agency):
        return
    if caller.roles & roles & OWNER_ROLES and dossier.owner == caller.sub:
        return
    raise Forbidden(f"{action} on this dossier is not yours to take")


async def act(
    session: AsyncSession, ctx: Context, caller: Caller, code: str, action_name: str, body: ActionRequest
) -> DossierOut:
    try:
        action = Action(action_name)
    except ValueError:
        raise NotFound(f"no action {action_name}; actions: {', '.join(a.value for a in Action)}") from None
    dossier = await visible_dossier(session, caller, code, for_update=True)
    _authorise(caller, action, dossier)
    _check_fields(action, body)
    try:
        target = next_status(dossier.status, action, paused_from=dossier.paused_from)
    except TransitionNotAllowed as exc:
        raise Conflict(
            str(exc),
            status=dossier.status,
            allowed_actions=[str(a) for a in allowed_actions(dossier.status, paused_from=dossier.paused_from)],
        ) from None
    checked = []
    if body.components:
        version = await session.get(ProcedureVersion, dossier.procedure_version_id)
        assert version is not None
        checked = await _checked_components(ctx, version, body.components, online=False, prefix="components")
    issued: IssuedResult | None = None
    if action is Action.FINISH:
        assert body.result is not None  # _check_fields
        issued = await _issued_result_named(session, dossier, body.result.document_number)
    await transition(
        session,
        ctx,
        dossier,
        action,
        target,
        actor=caller.sub,
        actor_name=caller.name,
        by=Actor.of(caller),
        body=body,
        new_components=checked,
        result=_result_of(issued) if issued else None,
    )
    if issued is not None:
        issued.applied_at = dossier.finished_at
    elif target in FINISHABLE:
        # a result issued while the dossier could not take it is applied as soon as it can
        await apply_pending_result(session, ctx, dossier)
    return await dossier_out(session, ctx, _record(dossier))


class ResultNotIssued(Unprocessable):
    """A manual finish names a result: only a document issued for this dossier will do."""

    code = "result_not_issued"
    title = "No such result was issued for this dossier"


class NotReceivedHere(Unprocessable):
    """The agency is not among the procedure's receiving agencies."""

    code = "procedure_not_received_here"
    title = "This agency does not receive this procedure"


async def _issued_result_named(session: AsyncSession, dossier: Dossier, number: str) -> IssuedResult:
    rows = await session.execute(
        select(IssuedResult)
        .where(IssuedResult.dossier_id == dossier.id, IssuedResult.number == number.strip())
        .order_by(IssuedResult.id)
    )
    found = rows.scalars().first()
    if found is None:
        known = (
            await session.execute(select(IssuedResult.number).where(IssuedResult.dossier_id == dossier.id))
        ).scalars()
        raise ResultNotIssued(
            f"no document {number} was issued for dossier {dossier.code}; a result comes from the "
            "document system (document.issued) and finishes the dossier by itself",
            field="result.document_number",
            issued=[n for n in known if n],
        )
    if found.applied_at is not None:
        raise Conflict(f"document {number} is already this dossier's result", status=dossier.status)
    return found


async def transition(
    session: AsyncSession,
    ctx: Context,
    dossier: Dossier,
    action: Action,
    target: DossierStatus,
    *,
    actor: str,
    actor_name: str,
    by: Actor,
    body: ActionRequest,
    new_components: list[tuple[ComponentIn, dict[str, Any], CheckedFile | None]] = (),  # type: ignore[assignment]
    result: DossierResult | None = None,
    details: dict[str, Any] | None = None,
    from_whom: str | None = None,
) -> None:
    """Apply an allowed action: status, clock, hand-offs, history, due-date changes, event."""
    now = _now()
    source = DossierStatus(dossier.status)
    was_running = dossier.accepted_at is not None and clock_runs(source)
    extra: dict[str, Any] = {}
    details = dict(details or {})
    if body.note:
        details["note"] = body.note

    if action is Action.REQUEST_SUPPLEMENT:
        dossier.paused_from = int(source)
        details["missing_items"] = [m.model_dump() for m in body.missing_items or []]
        extra["missing_items"] = [m.name for m in body.missing_items or []]
    elif action is Action.SUPPLEMENT_RECEIVED:
        dossier.paused_from = None
        await _store_files(ctx, list(new_components))
        if new_components:
            rows = _component_rows(dossier.id, list(new_components), now=now, supplement=True)
            await session.execute(_INSERT_COMPONENTS, rows)
        details["components_added"] = extra["components_added"] = len(new_components)
    elif action in (Action.REFUSE, Action.STOP):
        details["reasons"] = extra["reasons"] = list(body.reasons or [])
    elif action is Action.WITHDRAW:
        details["reason"] = extra["reason"] = body.note
    elif action is Action.REQUEST_FEES:
        details["amount_vnd"] = extra["amount_vnd"] = body.amount_vnd
    elif action is Action.START_PROCESSING:
        extra["to_whom"] = body.to_whom
    elif action is Action.FINISH:
        # only an issued document is a result (see apply_pending_result and act)
        assert result is not None, "a dossier is finished with an issued result"
        dossier.result = result.model_dump(mode="json")
        details["result"] = dossier.result

    dossier.status = int(target)
    session.add(
        DossierEvent(
            dossier_id=dossier.id,
            action=str(action),
            from_status=int(source),
            to_status=int(target),
            at=now,
            actor=actor,
            actor_name=actor_name,
            details=details,
        )
    )
    # What follows reads (the open hand-off step, the history, the calendar) before anything is
    # written, and every change goes in the one flush at the end: one UPDATE of the dossier,
    # not one per step. The clock counts this step's event, which is not in the database yet.
    clock = DossierClock(session, ctx, dossier, step=(now, int(target)))
    with session.no_autoflush:
        if action is Action.ACCEPT:
            await _start_clock(session, ctx, dossier, now=now, actor=actor_name)
            extra["accepted_at"] = now
        elif dossier.accepted_at is not None:
            now_running = clock_runs(target)
            if was_running and not now_running and action not in (Action.FINISH,):
                cause = "paused" if target in (S.SUPPLEMENT_REQUESTED, S.FEES_REQUESTED) else str(action)
                new_due = None if cause == "paused" else dossier.due_at
                _record_due_change(session, dossier, new_due, cause=cause, reason=body.note, actor=actor_name, at=now)
            elif not was_running and now_running:
                _record_due_change(
                    session, dossier, await recompute_due(clock), cause="resumed", reason=None, actor=actor_name, at=now
                )

        if action is Action.START_PROCESSING:
            await hand_off(
                clock,
                from_whom=from_whom or actor_name,
                to_whom=body.to_whom or DEFAULT_PROCESSING_UNIT,
                allotted_hours=body.allotted_hours,
                note=body.note,
                at=now,
                by=by,
            )
        if action is Action.FINISH:
            dossier.finished_at = now
            dossier.finished_on_time = dossier.due_at is not None and now <= dossier.due_at
            dossier.hours_used = await hours_used(clock, now)
            await _result_to_desk(clock, now, by=by, result=result)
            extra.update(result=result, on_time=dossier.finished_on_time, hours_used=dossier.hours_used)
        if action is Action.RETURN_RESULT:
            dossier.returned_at = now
        if target in (S.REFUSED, S.WITHDRAWN, S.STOPPED):
            await _close_step(clock, now)
        _touch(dossier)
    await session.flush()

    version, _ = await ctx.labels.label(session, dossier.procedure_version_id)
    model = STEP_EVENTS[str(action)]
    await outbox.emit(
        session,
        f"dossier.{action}",
        model(
            code=dossier.code,
            agency=dossier.agency,
            procedure_code=dossier.procedure_code,
            procedure_version=version,
            channel=dossier.channel,
            owner=dossier.owner,
            action=str(action),
            from_status=int(source),
            status=int(target),
            at=now,
            due_at=dossier.due_at,
            actor=by,
            **extra,
        ),
        subject=dossier.code,
        agency=dossier.agency,
    )


# ------------------------------------------------------------------ extension


async def extend(session: AsyncSession, ctx: Context, caller: Caller, code: str, body: ExtensionIn) -> DueDateChange:
    """Gia hạn: move the due date, only before it passes, with the reason (apology, form 04)."""
    dossier = await visible_dossier(session, caller, code, for_update=True)
    if not (caller.roles - OWNER_ROLES):
        raise Forbidden("an extension is decided by the agency")
    now = _now()
    if dossier.due_at is None or not clock_runs(dossier.status):
        raise Conflict("only a dossier whose clock runs has a due date to extend", status=dossier.status)
    if now >= dossier.due_at:
        raise Conflict(
            "the due date has passed: an extension must be issued before it", due_at=dossier.due_at.isoformat()
        )
    if body.new_due_at <= dossier.due_at:
        raise Unprocessable("the new due date must be after the current one", field="new_due_at")
    old_due = dossier.due_at
    clock = DossierClock(session, ctx, dossier)
    added = (await clock.calendar()).working_hours_between(old_due, body.new_due_at)
    if added <= 0:
        raise Unprocessable("no working time between the current and the new due date", field="new_due_at")
    dossier.extension_hours = Decimal(dossier.extension_hours) + added
    new_due = await recompute_due(clock)
    assert new_due is not None
    new_due = new_due.astimezone(UTC)
    change = DueDateChange(
        dossier_id=dossier.id,
        at=now,
        old_due_at=old_due,
        new_due_at=new_due,
        cause="extended",
        reason=body.reason,
        actor_name=caller.name,
    )
    session.add(change)
    dossier.due_at = new_due
    session.add(
        DossierEvent(
            dossier_id=dossier.id,
            action="extend",
            from_status=dossier.status,
            to_status=dossier.status,
            at=now,
            actor=caller.sub,
            actor_name=caller.name,
            details={
                "reason": body.reason,
                "old_due_at": old_due.isoformat(),
                "new_due_at": new_due.isoformat(),
                "signer_title": body.signer_title,
            },
        )
    )
    _touch(dossier)
    await session.flush()
    await outbox.emit(
        session,
        "dossier.extend",
        DossierExtended(
            code=dossier.code,
            agency=dossier.agency,
            owner=dossier.owner,
            old_due_at=old_due,
            new_due_at=new_due,
            reason=body.reason,
            at=now,
            actor=Actor.of(caller),
        ),
        subject=dossier.code,
        agency=dossier.agency,
    )
    return change


# ------------------------------------------------------------------ result from document


# Statuses a dossier can be finished from by the system: processing (4 → 9), or accepted but
# not yet transferred (2 → 4 → 9, both steps in the history). In any other status an issued
# result waits, pending, until the dossier reaches one of these.
FINISHABLE: frozenset[DossierStatus] = frozenset({S.ACCEPTED, S.PROCESSING})
SYSTEM = "system"
SYSTEM_NAME = "Hệ thống"
DESK_UNIT = "Bộ phận Tiếp nhận và Trả kết quả"


def _result_of(issued: IssuedResult) -> DossierResult:
    return DossierResult(
        document_id=issued.document_id,
        number=issued.number,
        content_sha256=issued.content_sha256,
        download_path=issued.download_path,
        summary=issued.summary,
        issued_at=issued.issued_at,
    )


def _parse_instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


async def finish_from_document(session: AsyncSession, ctx: Context, data: dict[str, Any]) -> str:
    """``document.issued`` naming a dossier: the result is never dropped. It is attached to the
    dossier, and applied at once when the status allows (``FINISHABLE``), otherwise kept
    pending until it does. Returns what happened (for logs and tests): finished, pending,
    already, unknown, no_dossier."""
    code = data.get("dossier_code")
    if not isinstance(code, str) or not code:
        return "no_dossier"
    dossier = await find_dossier(session, code, for_update=True)
    document_id = data.get("id")
    if dossier is None or not isinstance(document_id, int):
        log.warning("document_for_unknown_dossier", dossier_code=code, document=document_id)
        return "unknown"
    known = await session.execute(
        select(IssuedResult.id).where(IssuedResult.dossier_id == dossier.id, IssuedResult.document_id == document_id)
    )
    if known.first() is not None:
        return "already"
    number = data.get("number") or data.get("code")
    session.add(
        IssuedResult(
            dossier_id=dossier.id,
            document_id=document_id,
            number=str(number)[:60] if number else None,
            summary=data.get("subject") if isinstance(data.get("subject"), str) else None,
            content_sha256=data.get("content_sha256") if isinstance(data.get("content_sha256"), str) else None,
            download_path=data.get("download_path") if isinstance(data.get("download_path"), str) else None,
            issued_at=_parse_instant(data.get("issued_at")),
            learnt_at=_now(),
            applied_at=None,
        )
    )
    await session.flush()
    if await apply_pending_result(session, ctx, dossier):
        return "finished"
    log.info("document_issued_pending", dossier_code=code, status=dossier.status, document=document_id)
    _touch(dossier)  # the view changed: it shows the pending result
    return "pending"


_FIRST_PENDING = (
    select(IssuedResult)
    .where(IssuedResult.dossier_id == bindparam("dossier_id"), IssuedResult.applied_at.is_(None))
    .order_by(IssuedResult.id)
    .limit(1)
)


async def apply_pending_result(session: AsyncSession, ctx: Context, dossier: Dossier) -> bool:
    """Finish the dossier with its first pending result if its status now allows it: from 4,
    or from 2 through 4; the system acts, giving the issued document as its reason."""
    if dossier.status not in FINISHABLE:
        return False
    issued = (await session.execute(_FIRST_PENDING, {"dossier_id": dossier.id})).scalars().first()
    if issued is None:
        return False
    label = issued.number or f"#{issued.document_id}"
    reason = f"document.issued: văn bản {label} (document {issued.document_id})"
    by = Actor.system(reason)
    details = {"reason": reason, "document_id": issued.document_id, "number": issued.number}
    if dossier.status == S.ACCEPTED:
        await transition(
            session,
            ctx,
            dossier,
            Action.START_PROCESSING,
            S.PROCESSING,
            actor=SYSTEM,
            actor_name=SYSTEM_NAME,
            by=by,
            body=ActionRequest(to_whom=DEFAULT_PROCESSING_UNIT),
            details=details,
            from_whom=dossier.received_by or DESK_UNIT,
        )
    await transition(
        session,
        ctx,
        dossier,
        Action.FINISH,
        S.FINISHED,
        actor=SYSTEM,
        actor_name=SYSTEM_NAME,
        by=by,
        body=ActionRequest(note=f"Kết quả: văn bản {label}"),
        result=_result_of(issued),
        details=details,
    )
    issued.applied_at = dossier.finished_at
    await session.flush()
    return True


def parse_cursor(cursor: str) -> tuple[datetime, int]:
    import base64

    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(raw["r"]), int(raw["i"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest("cursor is not one this service gave", field="cursor") from exc


def make_cursor(received_at: datetime, id_: int) -> str:
    import base64

    raw = json.dumps({"r": received_at.astimezone(UTC).isoformat(), "i": id_}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

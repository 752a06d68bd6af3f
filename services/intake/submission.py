"""Submitting a dossier: checks against the procedure in force, the files, the idempotency key,
and the gap-free dossier code taken last.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ColumnElement, Select, String, Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.applicant_search import id_number_key, name_key
from services.intake.blobs import CheckedFile
from services.intake.calendar import VN_TZ
from services.intake.components import INSERT_COMPONENTS, checked_components, component_rows, store_files
from services.intake.config import IntakeSettings
from services.intake.context import Context
from services.intake.deadlines import due_on_acceptance
from services.intake.events import DossierCode, DossierReceived
from services.intake.models import Agency, Dossier, DossierEvent, DueDateChange, IdempotencyRecord, counters, outbox
from services.intake.schemas import DossierOut, DossierSubmission
from services.intake.views import component_data, view_data
from services.intake.workflow import Channel, clock_runs, initial_status
from shared import clock
from shared.auth import Caller
from shared.db import CodeCounter, execute_rows, fetch_rows, insert_ignoring_duplicates, replace_in
from shared.errors import Conflict, Unprocessable
from shared.events import Actor

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


class NotReceivedHere(Unprocessable):
    """The agency is not among the procedure's receiving agencies."""

    code = "procedure_not_received_here"
    title = "This agency does not receive this procedure"


# A new dossier's rows (and a supplement's components) go in by plain INSERTs: nothing reads
# them back as ORM objects, and the unit of work cost as much again as the statements.
_DOSSIERS, _EVENTS, _DUE_DATE_CHANGES = Dossier.__table__, DossierEvent.__table__, DueDateChange.__table__
_INSERT_DOSSIER = insert(_DOSSIERS).returning(_DOSSIERS.c.id)
_INSERT_EVENT = insert(_EVENTS)
_INSERT_DUE_DATE_CHANGE = insert(_DUE_DATE_CHANGES)


@functools.cache
def _dossier_with_entries(columns: tuple[str, ...], due_date: bool) -> Select[Any]:
    """On PostgreSQL: a new dossier, its first history entry and (accepted) its first due date as
    one statement, the entries taking the dossier's id from its RETURNING. Parameters: the
    dossier's ``columns`` as ``dossier_<column>``, the entries' as ``history_<column>`` and
    ``due_change_<column>``."""
    new = (
        insert(_DOSSIERS)
        .values({c: bindparam(f"dossier_{c}", type_=_DOSSIERS.c[c].type) for c in columns})
        .returning(_DOSSIERS.c.id)
        .cte("new_dossier")
    )

    def entry(table: Table, name: str) -> Any:
        given = [c for c in table.c if c.key not in ("id", "dossier_id")]
        row = select(new.c.id, *(bindparam(f"{name}_{c.key}", type_=c.type) for c in given))
        return insert(table).from_select(["dossier_id", *(c.key for c in given)], row).cte(name)

    entries = [entry(_EVENTS, "history"), *([entry(_DUE_DATE_CHANGES, "due_change")] if due_date else [])]
    return select(new.c.id).add_cte(*entries)


async def _insert_dossier(
    session: AsyncSession, dossier: dict[str, Any], history: dict[str, Any], first_due: dict[str, Any] | None
) -> int:
    """Insert a new dossier with its first history entry and due date change; its id. Three
    statements made one on PostgreSQL: two round trips fewer for every submission."""
    if session.bind.dialect.name == "postgresql":
        params = {f"dossier_{k}": v for k, v in dossier.items()} | {f"history_{k}": v for k, v in history.items()}
        params |= {f"due_change_{k}": v for k, v in (first_due or {}).items()}
        [row] = await execute_rows(session, _dossier_with_entries(tuple(dossier), first_due is not None), params)
        return int(row["id"])
    dossier_id = int((await execute_rows(session, _INSERT_DOSSIER, dossier))[0]["id"])
    await execute_rows(session, _INSERT_EVENT, {"dossier_id": dossier_id, **history})
    if first_due is not None:
        await execute_rows(session, _INSERT_DUE_DATE_CHANGE, {"dossier_id": dossier_id, **first_due})
    return dossier_id


# the receiving agency's name and state, as a plain row: loading it as an ORM object was about a
# tenth of intake's CPU for a submission (py-spy, one client)
_AGENCY = select(Agency.__table__.c.name, Agency.__table__.c.active).where(Agency.__table__.c.code == bindparam("code"))


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
            insert_ignoring_duplicates(IdempotencyRecord.__table__),
            {"caller": caller.sub, "key": idempotency_key, "request_hash": digest, "created_at": clock.now()},
        )
        if not inserted.rowcount:
            earlier = await session.get(IdempotencyRecord, (caller.sub, idempotency_key))
            assert earlier is not None
            if earlier.request_hash != digest or earlier.response is None:
                raise Conflict("this Idempotency-Key was used with another body", code_hint="idempotency_key_reused")
            return DossierOut.model_validate(earlier.response), False

    desk = caller.has_any("desk_officer")
    channel = Channel.DESK if desk else Channel.ONLINE
    now = clock.now()
    local = now.astimezone(VN_TZ)

    procedure_code, agency_suffix = catalogue.split_procedure_code(body.procedure_code)
    if agency_suffix is not None and agency_suffix != body.agency:
        raise Unprocessable("procedure_code names another agency than agency", field="procedure_code")
    version = catalogue.in_force(await catalogue.versions_of(session, procedure_code), local.date())
    if version is None:
        raise Unprocessable(f"no procedure {procedure_code} in force", field="procedure_code")
    found = await fetch_rows(session, _AGENCY, {"code": body.agency})
    if not found or not found[0]["active"]:
        raise Unprocessable(f"no active agency {body.agency}", field="agency")
    agency_name = found[0]["name"]
    if desk:
        caller.require_agency(body.agency)
    if not catalogue.may_receive(body.agency, version):
        raise NotReceivedHere(
            f"{agency_name} does not receive procedure {procedure_code}; submit it at one of its receiving agencies",
            field="agency",
            receiving_agencies=list(version.receiving_agencies),
        )
    if channel is Channel.ONLINE and version.online_level == "none":
        raise Unprocessable(f"procedure {procedure_code} cannot be submitted online", field="procedure_code")
    checked = await checked_components(
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

    await store_files(ctx, checked)

    status = initial_status(channel)
    # at the desk a dossier enters accepted and its clock starts at once: it is inserted with its due date
    accepted = clock_runs(status)
    due_at = await due_on_acceptance(session, ctx, now, version.processing_hours, version.cutoff) if accepted else None
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
        "applicant_search": name_key(body.applicant.full_name),
        "applicant_id_number": id_number_key(body.applicant.id_number),
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
    history = {
        "action": "receive",
        "from_status": None,
        "to_status": int(status),
        "at": now,
        "actor": caller.sub,
        "actor_name": caller.name,
        "details": {"channel": str(channel)},
    }
    first_due = (
        {
            "at": now,
            "old_due_at": None,
            "new_due_at": due_at,
            "cause": "accepted",
            "reason": None,
            "actor_name": caller.name,
        }
        if accepted
        else None
    )
    dossier["id"] = await _insert_dossier(session, dossier, history, first_due)
    components = component_rows(dossier["id"], checked, now=now, supplement=False)
    if components:
        await execute_rows(session, INSERT_COMPONENTS, components)
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
        view_data(dossier, (version.version, version.name), [component_data(c) for c in components])
    )
    code = await DOSSIER_CODES.take(
        session,
        key=_sequence_key(ctx.settings, body.agency, local),
        prefix=DossierCode.prefix(body.agency, local.date()),
        dossier_id=dossier["id"],
        stand_in=stand_in,
        event_ids=[received.id],
        idempotency_caller=caller.sub,
        idempotency_key=idempotency_key,
        answer=view.model_dump(mode="json") if idempotency_key else None,
    )
    return view.model_copy(update={"code": code}), True

"""What a dossier looks like to a reader: its view (components, pending results, allowed
actions) read as plain rows, and the list's page cursors.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.context import Context
from services.intake.dossiers import may_see
from services.intake.models import Dossier, DossierComponent, IssuedResult
from services.intake.schemas import Applicant, ComponentOut, DossierOut, IssuedResultOut
from services.intake.workflow import DossierStatus, allowed_actions
from shared.auth import Caller
from shared.db import among, fetch_rows
from shared.errors import BadRequest, NotFound

# What a view of a dossier shows, read as plain rows where the request only reads: building ORM
# objects cost more than the queries themselves (see ``shared.db.fetch_rows`` for why dicts).
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
    select(*_COMPONENT_COLUMNS).where(among(_C.dossier_id, "dossier_ids")).order_by(_C.dossier_id, _C.id)
)

_R = IssuedResult.__table__.c
_PENDING_OF_MANY = (
    select(_R.dossier_id, _R.document_id, _R.number, _R.summary, _R.issued_at, _R.download_path, _R.learnt_at)
    .where(among(_R.dossier_id, "dossier_ids"), _R.applied_at.is_(None))
    .order_by(_R.dossier_id, _R.id)
)
PENDING_DOSSIERS = select(_R.dossier_id).where(_R.applied_at.is_(None))
"""Ids of dossiers with a result waiting, for the list's ``has_pending_result`` filter."""

DossierRecord = Mapping[str, Any]
"""A dossier as a view reads it: a row of ``_DOSSIER_COLUMNS`` by column name."""


def dossier_query() -> Select[Any]:
    """The dossier columns views need, for a list's filters to be added to."""
    return select(*_DOSSIER_COLUMNS)


def record(dossier: Dossier) -> DossierRecord:
    """The ORM dossier (as a request changed it) as the row a view reads."""
    return {column.key: getattr(dossier, column.key) for column in _DOSSIER_COLUMNS}


def component_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """A component's row as written (``component_rows``) as the view ``_COMPONENT_COLUMNS`` reads."""
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


# the fields of the response models, in their order: a view's data holds exactly these
_APPLICANT_FIELDS = tuple(Applicant.model_fields)
_COMPONENT_FIELDS = tuple(ComponentOut.model_fields)
_PENDING_FIELDS = tuple(IssuedResultOut.model_fields)


def _shaped(row: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {field: row.get(field) for field in fields}


def view_data(
    dossier: DossierRecord,
    label: tuple[int, str],
    components: Sequence[Mapping[str, Any]],
    pending: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A dossier's view as plain data shaped as ``DossierOut`` (its fields and its parts',
    in order, nothing else): what the model would give, so that a read can send it as JSON
    without building the model (``shared.http.json_response``); building a model of each part first (and
    the page's model of those) cost as much again."""
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
        "applicant": _shaped(dossier["applicant"], _APPLICANT_FIELDS),
        "received_at": dossier["received_at"],
        "accepted_at": dossier["accepted_at"],
        "due_at": dossier["due_at"],
        "finished_at": dossier["finished_at"],
        "finished_on_time": dossier["finished_on_time"],
        "returned_at": dossier["returned_at"],
        "components": [_shaped(c, _COMPONENT_FIELDS) for c in components],
        "result": dossier["result"],
        "pending_results": [_shaped(p, _PENDING_FIELDS) for p in pending],
        "allowed_actions": list(_allowed_action_names(status, paused_from)),
    }


async def dossier_view(session: AsyncSession, ctx: Context, dossier: DossierRecord) -> dict[str, Any]:
    """One dossier's view as data (see ``view_data``)."""
    label = await ctx.labels.label(session, dossier["procedure_version_id"])
    components = await fetch_rows(session, _COMPONENTS_OF, {"dossier_id": dossier["id"]})
    pending = await fetch_rows(session, _PENDING_OF_MANY, {"dossier_ids": [dossier["id"]]})
    return view_data(dossier, label, components, pending)


async def dossier_out(session: AsyncSession, ctx: Context, dossier: DossierRecord) -> DossierOut:
    return DossierOut.model_validate(await dossier_view(session, ctx, dossier))


async def dossier_views(session: AsyncSession, ctx: Context, dossiers: Sequence[DossierRecord]) -> list[dict[str, Any]]:
    """Views of a page of dossiers (as data for ``DossierPage``) with one query for all their
    components, not one per item."""
    if not dossiers:
        return []
    labels = await ctx.labels.of(session, {d["procedure_version_id"] for d in dossiers})
    by_dossier: dict[int, list[dict[str, Any]]] = {d["id"]: [] for d in dossiers}
    for component in await fetch_rows(session, _COMPONENTS_OF_MANY, {"dossier_ids": list(by_dossier)}):
        by_dossier[component["dossier_id"]].append(component)
    pending: dict[int, list[dict[str, Any]]] = {d["id"]: [] for d in dossiers}
    for row in await fetch_rows(session, _PENDING_OF_MANY, {"dossier_ids": list(pending)}):
        pending[row["dossier_id"]].append(row)
    return [view_data(d, labels[d["procedure_version_id"]], by_dossier[d["id"]], pending[d["id"]]) for d in dossiers]


async def visible_record(session: AsyncSession, caller: Caller, code: str) -> DossierRecord:
    """``visible_dossier`` for a request that only reads: the row, not the ORM object."""
    found = await fetch_rows(session, _DOSSIER_BY_CODE, {"code": code})
    if not found or not may_see(caller, agency=found[0]["agency"], owner=found[0]["owner"]):
        raise NotFound(f"no dossier {code}")
    return found[0]


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

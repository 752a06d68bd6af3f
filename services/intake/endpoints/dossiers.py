"""Dossiers as staff and applicants read and move them: the list, one dossier, its history, the
workflow actions, hand-offs and extensions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import Select, Table, and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import actions, applicant_search, catalogue, deadlines, handoffs, views
from services.intake.applicant_search import ApplicantQuery
from services.intake.context import Context
from services.intake.endpoints.common import DOSSIER_READERS, Ctx, Me, Session, period_start
from services.intake.models import Dossier, DossierEvent, DueDateChange, Handoff
from services.intake.schemas import (
    ORGAN_PATTERN,
    PROCEDURE_PATTERN,
    ActionRequest,
    DossierHistory,
    DossierOut,
    DossierPage,
    DueDateChangeOut,
    ExtensionIn,
    HandoffIn,
    HandoffOut,
    HistoryEntry,
    IsoDate,
)
from services.intake.workflow import RUNNING_STATUSES, DossierStatus
from shared import clock, organ_id
from shared.auth import Caller, allow
from shared.db import fetch_rows
from shared.errors import BadRequest, Forbidden, problem_responses
from shared.http import StrictRoute, json_response

router = APIRouter(prefix="/dossiers", tags=["dossiers"], route_class=StrictRoute)


@router.get("", response_model=DossierPage, responses=problem_responses(400, 401, 403), **allow(*DOSSIER_READERS))
async def list_dossiers(
    status: Annotated[list[int] | None, Query(description="one or more status codes")] = None,
    procedure: Annotated[str | None, Query(pattern=PROCEDURE_PATTERN)] = None,
    agency: Annotated[str | None, Query(pattern=ORGAN_PATTERN, description="a subtree inside yours")] = None,
    received_from: Annotated[IsoDate | None, Query(description="Vietnam date, inclusive")] = None,
    received_to: Annotated[IsoDate | None, Query(description="Vietnam date, inclusive")] = None,
    due_before: Annotated[datetime | None, Query()] = None,
    overdue: Annotated[bool | None, Query(description="being handled and past its due date now")] = None,
    applicant: Annotated[
        str | None,
        Query(
            max_length=200,
            description="any part of the applicant's name, accents and case optional (every word typed must be "
            "found), and/or a whole ID number (CCCD, CMND, passport), matched exactly",
        ),
    ] = None,
    has_pending_result: Annotated[
        bool | None,
        Query(description="true: only dossiers with an issued result waiting for a status that takes it"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: Context = Ctx,
) -> Response:
    """Dossiers newest first: staff see their agency subtree, a citizen or portal their own."""
    query = views.dossier_query()
    subtree = None  # the agency subtree the list keeps to, the narrowest one given
    if "service" in caller.roles:
        pass
    elif caller.roles - {"citizen", "integrator"}:
        if caller.agency is None:
            raise Forbidden("your account has no agency")
        subtree = catalogue.agency_path(caller.agency)
        query = query.where(Dossier.agency_path.startswith(subtree))
    else:
        query = query.where(Dossier.owner == caller.sub)
    if agency:
        if not organ_id.is_valid(agency):
            raise BadRequest("agency: not a valid identifier", field="agency")
        if (
            "service" not in caller.roles
            and (caller.agency is None or not organ_id.within(agency, caller.agency))
            and caller.roles - {"citizen", "integrator"}
        ):
            raise Forbidden("outside your agency", agency=agency)
        subtree = catalogue.agency_path(agency)
        query = query.where(Dossier.agency_path.startswith(subtree))
    if status:
        if any(s not in DossierStatus._value2member_map_ for s in status):
            raise BadRequest("status: codes are 1 to 10", field="status")
        query = query.where(Dossier.status.in_(status))
    if procedure:
        query = query.where(Dossier.procedure_code == procedure)
    if received_from:
        query = query.where(Dossier.received_at >= period_start(received_from))
    if received_to:
        query = query.where(Dossier.received_at < period_start(received_to + timedelta(days=1)))
    if due_before:
        if due_before.tzinfo is None:
            raise BadRequest("due_before: give a timezone", field="due_before")
        query = query.where(Dossier.due_at < due_before)
    running = [int(s) for s in sorted(RUNNING_STATUSES)]
    now = clock.now()
    if overdue is True:
        query = query.where(Dossier.status.in_(running), Dossier.due_at < now)
    elif overdue is False:
        query = query.where(or_(Dossier.status.not_in(running), Dossier.due_at.is_(None), Dossier.due_at >= now))
    if has_pending_result is True:
        query = query.where(Dossier.id.in_(views.PENDING_DOSSIERS))
    elif has_pending_result is False:
        query = query.where(Dossier.id.not_in(views.PENDING_DOSSIERS))
    after = None
    if cursor:
        at, id_ = views.parse_cursor(cursor)
        after = or_(Dossier.received_at < at, and_(Dossier.received_at == at, Dossier.id < id_))
    search = ApplicantQuery.parse(applicant or "")
    rows = await applicant_search.read_page(session, query, search, after=after, limit=limit, subtree=subtree)
    more = len(rows) > limit
    rows = rows[:limit]
    return json_response(
        {
            "items": await views.dossier_views(session, ctx, rows),
            "next": views.make_cursor(rows[-1]["received_at"], rows[-1]["id"]) if more else None,
        }
    )


@router.get("/{code}", response_model=DossierOut, responses=problem_responses(401, 403, 404), **allow(*DOSSIER_READERS))
async def get_dossier(code: str, caller: Caller = Me, session: AsyncSession = Session, ctx: Context = Ctx) -> Response:
    return json_response(await views.dossier_view(session, ctx, await views.visible_record(session, caller, code)))


def _of_dossier(table: Table, *fields: str) -> Select[Any]:
    """``fields`` of ``table``'s rows of one dossier (parameter ``dossier_id``) in order, built once."""
    of_dossier = table.c.dossier_id == bindparam("dossier_id")
    return select(*(table.c[f] for f in fields)).where(of_dossier).order_by(table.c.id)


_EVENTS_OF = _of_dossier(DossierEvent.__table__, *HistoryEntry.model_fields)
_DUE_DATE_CHANGES_OF = _of_dossier(DueDateChange.__table__, *DueDateChangeOut.model_fields)
_HANDOFFS_OF = _of_dossier(Handoff.__table__, *HandoffOut.model_fields)


@router.get(
    "/{code}/history",
    response_model=DossierHistory,
    responses=problem_responses(401, 403, 404),
    **allow(*DOSSIER_READERS),
)
async def dossier_history(code: str, caller: Caller = Me, session: AsyncSession = Session) -> DossierHistory:
    """Every status change, every due-date change with why, and the hand-offs (tracking sheet)."""
    dossier = await views.visible_record(session, caller, code)
    ids = {"dossier_id": dossier["id"]}
    # plain rows of exactly the fields shown, validated in one go (see views.view_data)
    return DossierHistory.model_validate(
        {
            "code": dossier["code"],
            "events": await fetch_rows(session, _EVENTS_OF, ids),
            "due_date_changes": await fetch_rows(session, _DUE_DATE_CHANGES_OF, ids),
            "handoffs": await fetch_rows(session, _HANDOFFS_OF, ids),
        }
    )


def _handoff_out(s: Handoff) -> HandoffOut:
    return HandoffOut(
        from_whom=s.from_whom,
        to_whom=s.to_whom,
        handed_at=s.handed_at,
        allotted_hours=s.allotted_hours,
        step_due_at=s.step_due_at,
        completed_at=s.completed_at,
        used_hours=s.used_hours,
        timeliness=s.timeliness,
        note=s.note,
    )


ACTION_CALLERS = sorted({role for roles in actions.ACTION_ROLES.values() for role in roles})


@router.post(
    "/{code}/actions/{action}",
    response_model=DossierOut,
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422),
    **allow(*ACTION_CALLERS),
)
async def take_action(
    code: str,
    action: str,
    body: ActionRequest,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: Context = Ctx,
) -> DossierOut:
    """One workflow action (accept, refuse, start_processing, request_supplement,
    supplement_received, request_fees, fees_paid, withdraw, stop, finish, return_result).
    Not allowed from the current status: 409 and nothing changes. Emits ``dossier.<action>``."""
    return await actions.act(session, ctx, caller, code, action, body)


@router.post(
    "/{code}/handoffs",
    status_code=201,
    response_model=HandoffOut,
    responses=problem_responses(401, 403, 404, 409),
    **allow("desk_officer", "specialist", "leader"),
)
async def add_handoff(
    code: str,
    body: HandoffIn,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: Context = Ctx,
) -> HandoffOut:
    """Hand the dossier to another unit or person: closes the current step with its timeliness."""
    return _handoff_out(await handoffs.add_handoff(session, ctx, caller, code, body))


@router.post(
    "/{code}/extension",
    response_model=DueDateChangeOut,
    responses=problem_responses(401, 403, 404, 409, 422),
    **allow("desk_officer", "specialist", "leader"),
)
async def extend(
    code: str,
    body: ExtensionIn,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: Context = Ctx,
) -> DueDateChangeOut:
    """Extend the due date before it passes, with the reason; the apology is form 04."""
    c = await deadlines.extend(session, ctx, caller, code, body)
    return DueDateChangeOut(
        at=c.at,
        old_due_at=c.old_due_at,
        new_due_at=c.new_due_at,
        cause=c.cause,
        reason=c.reason,
        actor_name=c.actor_name,
    )

"""Intake's HTTP API (through the gateway at ``/api/intake/…``): agencies, procedure catalogue,
calendar, dossiers and their workflow, forms, public look-up, indicators."""

from __future__ import annotations

import csv
import hmac
import io
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import Select, Table, and_, bindparam, case, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue, printing, service, uploads
from services.intake.calendar import VN_TZ, CalendarError, as_vietnam_time
from services.intake.config import IntakeSettings
from services.intake.models import (
    Agency,
    CalendarOverrideRow,
    Dossier,
    DossierComponent,
    DossierEvent,
    DueDateChange,
    Handoff,
    ProcedureVersion,
)
from services.intake.schemas import (
    ORGAN_PATTERN,
    PROCEDURE_PATTERN,
    ActionRequest,
    AgencyIn,
    AgencyOut,
    CalendarDay,
    CalendarOverrideIn,
    CalendarOverrideOut,
    CalendarYearOut,
    DossierHistory,
    DossierOut,
    DossierPage,
    DossierSubmission,
    DueDateChangeOut,
    DueOut,
    ExtensionIn,
    HandoffIn,
    HandoffOut,
    HistoryEntry,
    IndicatorsOut,
    IsoDate,
    LookupOut,
    ProcedureOut,
    ProcedureVersionIn,
    ProcedureVersionOut,
)
from services.intake.workflow import DossierStatus
from shared import clock, organ_id
from shared.auth import Caller, allow, current_caller, public
from shared.db import request_session
from shared.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
    problem_responses,
)
from shared.events import Actor
from shared.http import StrictRoute
from shared.text import fold, tokens

Session = Depends(request_session, scope="function")
Me = Depends(current_caller)
STAFF = ("desk_officer", "specialist", "leader", "admin")
DOSSIER_READERS = (*STAFF, "citizen", "integrator", "auditor")
PDF = {"content": {"application/pdf": {}}, "description": "a printable form"}


def settings_of(request: Request) -> IntakeSettings:
    return request.app.state.runtime.settings


async def context(request: Request) -> service.Context:
    # async, though it awaits nothing: FastAPI runs a plain function dependency in a worker thread
    extras = request.app.state.runtime.extras
    return service.Context(settings=settings_of(request), blobs=extras["blobs"], labels=extras["version_labels"])


Ctx = Depends(context)


def _pdf(content: bytes, name: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}.pdf"', **(headers or {})},
    )


# ======================================================================== agencies

agencies = APIRouter(prefix="/agencies", tags=["agencies"], route_class=StrictRoute)


@agencies.get("", response_model=list[AgencyOut], **public())
async def list_agencies(
    under: Annotated[str | None, Query(pattern=ORGAN_PATTERN, description="only this agency's subtree")] = None,
    session: AsyncSession = Session,
) -> list[AgencyOut]:
    """The agency tree (Decision 20/2020 identifiers), the suite's one source of truth."""
    query = select(Agency).order_by(Agency.path)
    if under:
        query = query.where(Agency.path.startswith(catalogue.agency_path(under)))
    return [catalogue.agency_out(a) for a in (await session.execute(query)).scalars()]


@agencies.get("/{code}", response_model=AgencyOut, responses=problem_responses(404), **public())
async def get_agency(code: Annotated[str, Path(pattern=ORGAN_PATTERN)], session: AsyncSession = Session) -> AgencyOut:
    return catalogue.agency_out(await catalogue.get_agency(session, code))


@agencies.put(
    "/{code}",
    response_model=AgencyOut,
    responses={
        200: {"description": "the agency existed: changed (or already as given)"},
        201: {"model": AgencyOut, "description": "the agency was created"},
        **problem_responses(401, 403, 422),
    },
    **allow("admin"),
)
async def put_agency(
    code: Annotated[str, Path(pattern=ORGAN_PATTERN)],
    body: AgencyIn,
    response: Response,
    caller: Caller = Me,
    session: AsyncSession = Session,
) -> AgencyOut:
    """Create (201) or rename/deactivate (200) an agency; emits ``agency.changed``."""
    agency, created = await catalogue.put_agency(session, code, body, by=Actor.of(caller))
    response.status_code = 201 if created else 200
    return catalogue.agency_out(agency)


# ======================================================================== procedures

procedures = APIRouter(prefix="/procedures", tags=["procedures"], route_class=StrictRoute)


@procedures.get("", response_model=list[ProcedureVersionOut], **public())
async def list_procedures(
    agency: Annotated[str | None, Query(pattern=ORGAN_PATTERN, description="received at this agency's desk")] = None,
    sector: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=200, description="words of the name, accents optional")] = None,
    session: AsyncSession = Session,
) -> list[ProcedureVersionOut]:
    """The catalogue as in force today (Vietnam date)."""
    rows = (
        await session.execute(select(ProcedureVersion).order_by(ProcedureVersion.code, ProcedureVersion.version))
    ).scalars()
    by_code: dict[str, list[ProcedureVersion]] = {}
    for row in rows:
        by_code.setdefault(row.code, []).append(row)
    today = catalogue.today_in_vietnam()
    out = []
    for versions in by_code.values():
        current = catalogue.in_force(versions, today)
        if current is None:
            continue
        if agency and not catalogue.may_receive(agency, current):
            continue
        if sector and fold(sector) != fold(current.sector):
            continue
        if q and not all(word in current.name_search for word in tokens(q)):
            continue
        out.append(catalogue.version_out(current))
    return out


@procedures.get("/{code}", response_model=ProcedureOut, responses=problem_responses(404), **public())
async def get_procedure(
    code: Annotated[str, Path(pattern=PROCEDURE_PATTERN)], session: AsyncSession = Session
) -> ProcedureOut:
    versions = await catalogue.versions_of(session, code)
    if not versions:
        raise NotFound(f"no procedure {code}")
    current = catalogue.in_force(versions, catalogue.today_in_vietnam())
    return ProcedureOut(
        code=code,
        current=catalogue.version_out(current) if current else None,
        versions=[catalogue.version_out(v) for v in versions],
    )


@procedures.post(
    "/{code}/versions",
    status_code=201,
    response_model=ProcedureVersionOut,
    responses=problem_responses(401, 403, 409, 422),
    **allow("admin"),
)
async def add_procedure_version(
    code: Annotated[str, Path(pattern=PROCEDURE_PATTERN)],
    body: ProcedureVersionIn,
    caller: Caller = Me,
    session: AsyncSession = Session,
) -> ProcedureVersionOut:
    """A new version of a procedure (or its first); dossiers keep the version they came under."""
    return catalogue.version_out(
        await catalogue.add_version(session, code, body, actor=caller.name, by=Actor.of(caller))
    )


# ======================================================================== calendar

calendar = APIRouter(prefix="/calendar", tags=["calendar"], route_class=StrictRoute)


def _parse_instant(value: str, name: str) -> datetime:
    try:
        # a "+" of an offset arrives as a space when the client did not encode it
        moment = datetime.fromisoformat(value.strip().replace(" ", "+") if "T" in value else value)
    except ValueError as exc:
        raise BadRequest(f"{name}: not an ISO 8601 date-time", field=name) from exc
    if moment.tzinfo is None:
        raise BadRequest(f"{name}: give a timezone (e.g. +07:00)", field=name)
    return moment


@calendar.get("/due", response_model=DueOut, responses=problem_responses(400, 404, 422), **public())
async def due(
    accepted_at: Annotated[str, Query(description="ISO 8601 with offset, e.g. 2026-02-13T10:00+07:00")],
    hours: Annotated[Decimal | None, Query(gt=0, le=100_000, description="working hours")] = None,
    procedure: Annotated[
        str | None, Query(pattern=PROCEDURE_PATTERN, description="take hours and cut-off from it")
    ] = None,
    cutoff: Annotated[str | None, Query(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="with hours")] = None,
    pauses: Annotated[list[str] | None, Query(description="start/end intervals (ISO 8601); end may be empty")] = None,
    session: AsyncSession = Session,
    ctx: service.Context = Ctx,
) -> DueOut:
    """When is a dossier accepted at ``accepted_at`` due: server-side deadline arithmetic."""
    start = _parse_instant(accepted_at, "accepted_at")
    if (hours is None) == (procedure is None):
        raise BadRequest("give either hours or procedure")
    if procedure is not None:
        if cutoff is not None:
            raise BadRequest("the cut-off comes from the procedure")
        version = catalogue.in_force(await catalogue.versions_of(session, procedure), as_vietnam_time(start).date())
        if version is None:
            raise NotFound(f"no procedure {procedure} in force then")
        hours, cutoff = Decimal(version.processing_hours), version.cutoff
    intervals: list[tuple[datetime, datetime | None]] = []
    for i, item in enumerate(pauses or []):
        begin, sep, end = item.partition("/")
        if not sep:
            raise BadRequest(f"pauses[{i}]: write start/end", field="pauses")
        b = _parse_instant(begin, f"pauses[{i}]")
        e = _parse_instant(end, f"pauses[{i}]") if end.strip() else None
        if e is not None and e < b:
            raise BadRequest(f"pauses[{i}]: ends before it starts", field="pauses")
        intervals.append((b, e))
    assert hours is not None
    cut = catalogue.parse_cutoff(cutoff)
    working = await ctx.calendar(session)
    try:
        clock_start = working.clock_start(start, cutoff=cut)
        due_at = working.due_date(start, hours, cutoff=cut, pauses=intervals)
    except CalendarError as exc:
        raise Unprocessable(str(exc)) from exc
    return DueOut(accepted_at=start, clock_start=clock_start, hours=hours, cutoff=cutoff, due_at=due_at)


@calendar.get("/overrides", response_model=list[CalendarOverrideOut], **allow("admin"))
async def list_overrides(
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None, session: AsyncSession = Session
) -> list[CalendarOverrideOut]:
    query = select(CalendarOverrideRow).order_by(CalendarOverrideRow.day)
    if year:
        query = query.where(CalendarOverrideRow.day >= date(year, 1, 1), CalendarOverrideRow.day <= date(year, 12, 31))
    return [
        CalendarOverrideOut(day=r.day, working=r.working, reason=r.reason)
        for r in (await session.execute(query)).scalars()
    ]


@calendar.put(
    "/overrides/{day}", response_model=CalendarOverrideOut, responses=problem_responses(401, 403, 422), **allow("admin")
)
async def put_override(
    day: Annotated[IsoDate, Path(description="YYYY-MM-DD")],
    body: CalendarOverrideIn,
    caller: Caller = Me,
    session: AsyncSession = Session,
) -> CalendarOverrideOut:
    """Make ``day`` a working day (swap) or a day off, beating the computed calendar.

    Dossiers already accepted keep their due date; the change applies to new computations."""
    row = await catalogue.put_override(session, day, working=body.working, reason=body.reason, actor=caller.name)
    return CalendarOverrideOut(day=row.day, working=row.working, reason=row.reason)


@calendar.delete("/overrides/{day}", status_code=204, responses=problem_responses(401, 403, 404), **allow("admin"))
async def delete_override(
    day: Annotated[IsoDate, Path(description="YYYY-MM-DD")], session: AsyncSession = Session
) -> Response:
    result = await session.execute(delete(CalendarOverrideRow).where(CalendarOverrideRow.day == day))
    if not result.rowcount:
        raise NotFound(f"no override on {day}")
    return Response(status_code=204)


@calendar.get("/{year}", response_model=CalendarYearOut, **public())
async def calendar_year(
    year: Annotated[int, Path(ge=2000, le=2100)], session: AsyncSession = Session, ctx: service.Context = Ctx
) -> CalendarYearOut:
    """Days off (holidays, made-up days, extra days off) and working weekend days of a year."""
    rows = (
        await session.execute(
            select(CalendarOverrideRow)
            .where(CalendarOverrideRow.day >= date(year, 1, 1), CalendarOverrideRow.day <= date(year, 12, 31))
            .order_by(CalendarOverrideRow.day)
        )
    ).scalars()
    working = await ctx.calendar(session)
    return CalendarYearOut(
        year=year,
        days_off=[CalendarDay(day=d.day, name=d.name) for d in working.holidays_in(year)],
        working_weekend_days=[CalendarDay(day=d.day, name=d.name) for d in working.working_weekend_days_in(year)],
        overrides=[CalendarOverrideOut(day=r.day, working=r.working, reason=r.reason) for r in rows],
    )


# ======================================================================== dossiers

dossiers = APIRouter(prefix="/dossiers", tags=["dossiers"], route_class=StrictRoute)


# The submission's two forms, as the OpenAPI shows them (the body is read by hand: a multipart
# body is streamed to disk, never parsed into memory by the framework first).
_SUBMISSION_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/DossierSubmission"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["dossier"],
                "properties": {
                    "dossier": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "description": "the DossierSubmission as JSON, its components listed without file contents",
                    }
                },
                "patternProperties": {
                    "^component-[0-9]{1,3}$": {
                        "type": "string",
                        "format": "binary",
                        "description": "a file of component <no>; repeat the part for a component of several files",
                    }
                },
                "additionalProperties": False,
            },
            "encoding": {"dossier": {"contentType": "application/json"}},
        },
    },
}


def _with_body(route: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    route["openapi_extra"]["requestBody"] = body
    return route


def submission_schemas(app: FastAPI, settings: IntakeSettings) -> None:
    """Put ``DossierSubmission`` (and what it uses) in the app's OpenAPI components: the route
    that takes it reads its body by hand, so the framework does not list it by itself. And say
    how large the file routes' bodies may be (``x-max-body-bytes``), which the gateway enforces
    at the edge instead of its generic upload limit."""
    original = app.openapi
    limits = {
        ("/dossiers", "post"): files_body_limit(settings),
        ("/dossiers/{code}/components/{no}/files", "post"): settings.max_dossier_bytes + MULTIPART_OVERHEAD,
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = original()
        schema = DossierSubmission.model_json_schema(ref_template="#/components/schemas/{model}")
        found = document.setdefault("components", {}).setdefault("schemas", {})
        # a model another route lists already (Applicant, ComponentIn…) is kept as listed there:
        # the same class, written out by the framework
        for name, definition in {**schema.pop("$defs", {}), "DossierSubmission": schema}.items():
            found.setdefault(name, definition)
        for (path, method), limit in limits.items():
            document["paths"][path][method]["x-max-body-bytes"] = limit
        return document

    app.openapi = openapi  # type: ignore[method-assign]


async def _json_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"a JSON submission is at most {limit} bytes; send large files as multipart/form-data")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"a JSON submission is at most {limit} bytes; send large files as multipart/form-data"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _submission(raw: str | bytes, *, prefix: tuple[str, ...]) -> DossierSubmission:
    try:
        return DossierSubmission.model_validate_json(raw)
    except ValidationError as exc:
        # the same 422 (or 400 for JSON that is not JSON) as a body the framework parsed
        raise RequestValidationError(
            [{**e, "loc": (*prefix, *e.get("loc", ()))} for e in exc.errors(include_url=False, include_context=False)]
        ) from None


@dossiers.post(
    "",
    status_code=201,
    response_model=DossierOut,
    responses=problem_responses(400, 401, 403, 409, 413, 415, 422),
    **_with_body(allow("citizen", "desk_officer", "integrator"), _SUBMISSION_BODY),
)
async def submit_dossier(
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: service.Context = Ctx,
) -> DossierOut:
    """Submit a dossier: online by a citizen or portal (status 1) or at the desk (status 2, the
    clock starts). Two forms: JSON with files as base64 in ``components[].file`` (small files),
    or ``multipart/form-data`` with the same JSON in a part named ``dossier`` and each file as a
    part named ``component-<no>`` (streamed; up to ``max_file_bytes`` a file and
    ``max_dossier_bytes`` together). The same ``Idempotency-Key`` with the same body answers
    exactly as the first time (201, the same dossier, with ``Idempotent-Replayed: true``), with
    another body 409."""
    settings = ctx.settings
    if uploads.is_multipart(request):
        async with uploads.receive_form(
            request,
            incoming=ctx.blobs.incoming,
            file_parts=service.UPLOAD_PART.pattern,
            text_parts=frozenset({"dossier"}),
            max_file_bytes=settings.max_file_bytes,
            max_total_bytes=settings.max_dossier_bytes,
            max_files=settings.max_files_per_request,
            accepted=settings.accepted_file_types,
        ) as form:
            if "dossier" not in form.fields:
                raise Unprocessable("a multipart submission carries its JSON in a part named dossier", field="dossier")
            body = _submission(form.fields["dossier"], prefix=("body", "dossier"))
            view, created = await service.submit(
                session, ctx, caller, body, idempotency_key=idempotency_key, uploads=form.files
            )
    else:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType("send application/json or multipart/form-data", accepted=SUBMISSION_MEDIA)
        body = _submission(await _json_body(request, json_submission_limit(settings)), prefix=("body",))
        view, created = await service.submit(session, ctx, caller, body, idempotency_key=idempotency_key)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return view


SUBMISSION_MEDIA = ["application/json", "multipart/form-data"]


MULTIPART_OVERHEAD = 1024 * 1024  # the dossier part and the parts' headers


def json_submission_limit(settings: IntakeSettings) -> int:
    """A JSON submission carries its files in base64 (4/3 larger), a few of them at most."""
    return settings.max_file_bytes * 4 // 3 * 3 + 1024 * 1024


def files_body_limit(settings: IntakeSettings) -> int:
    """The largest body of the routes under ``/dossiers``: a JSON submission, or a multipart one
    whose files stay within the dossier's total."""
    return max(json_submission_limit(settings), settings.max_dossier_bytes + MULTIPART_OVERHEAD)


@dossiers.post(
    "/{code}/components/{no}/files",
    status_code=201,
    response_model=DossierOut,
    responses={
        200: {"description": "every file was already there: nothing added"},
        **problem_responses(400, 401, 403, 404, 409, 413, 415, 422),
    },
    **_with_body(
        allow("citizen", "integrator", "desk_officer"),
        {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "one or more parts named file",
                            }
                        },
                        "additionalProperties": False,
                    }
                }
            },
        },
    ),
)
async def add_component_files(
    code: str,
    no: Annotated[int, Path(ge=1, le=100, description="the component's number in the procedure")],
    request: Request,
    response: Response,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: service.Context = Ctx,
) -> DossierOut:
    """Add file(s) to a component of a dossier that takes them: submitted online and not yet
    accepted (1), or waiting for a supplement (5). Streamed like a multipart submission, within
    the per-file and per-dossier limits; a file the component already has is not added again.
    Emits ``dossier.files_added``."""
    if not uploads.is_multipart(request):
        raise UnsupportedMediaType("send the files as multipart/form-data parts named file")
    settings = ctx.settings
    room = await service.files_room(session, ctx, caller, code, no)
    # nothing is written yet: end the read so that no connection is held while the body streams
    # in (add_files checks again, under the dossier's lock)
    await session.rollback()
    async with uploads.receive_form(
        request,
        incoming=ctx.blobs.incoming,
        file_parts="file",
        max_file_bytes=settings.max_file_bytes,
        max_total_bytes=max(room, 0),
        max_files=settings.max_files_per_request,
        accepted=settings.accepted_file_types,
    ) as form:
        view, added = await service.add_files(session, ctx, caller, code, no, form.files.get("file", []))
    if not added:
        response.status_code = 200
    return view


def _period_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=VN_TZ)


@dossiers.get("", response_model=DossierPage, responses=problem_responses(400, 401, 403), **allow(*DOSSIER_READERS))
async def list_dossiers(
    status: Annotated[list[int] | None, Query(description="one or more status codes")] = None,
    procedure: Annotated[str | None, Query(pattern=PROCEDURE_PATTERN)] = None,
    agency: Annotated[str | None, Query(pattern=ORGAN_PATTERN, description="a subtree inside yours")] = None,
    received_from: Annotated[IsoDate | None, Query(description="Vietnam date, inclusive")] = None,
    received_to: Annotated[IsoDate | None, Query(description="Vietnam date, inclusive")] = None,
    due_before: Annotated[datetime | None, Query()] = None,
    overdue: Annotated[bool | None, Query(description="being handled and past its due date now")] = None,
    applicant: Annotated[str | None, Query(max_length=200, description="name or ID number; accents optional")] = None,
    has_pending_result: Annotated[
        bool | None,
        Query(description="true: only dossiers with an issued result waiting for a status that takes it"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: service.Context = Ctx,
) -> DossierPage:
    """Dossiers newest first: staff see their agency subtree, a citizen or portal their own."""
    query = service.dossier_query()
    if "service" in caller.roles:
        pass
    elif caller.roles - {"citizen", "integrator"}:
        if caller.agency is None:
            raise Forbidden("your account has no agency")
        query = query.where(Dossier.agency_path.startswith(catalogue.agency_path(caller.agency)))
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
        query = query.where(Dossier.agency_path.startswith(catalogue.agency_path(agency)))
    if status:
        if any(s not in DossierStatus._value2member_map_ for s in status):
            raise BadRequest("status: codes are 1 to 10", field="status")
        query = query.where(Dossier.status.in_(status))
    if procedure:
        query = query.where(Dossier.procedure_code == procedure)
    if received_from:
        query = query.where(Dossier.received_at >= _period_start(received_from))
    if received_to:
        query = query.where(Dossier.received_at < _period_start(received_to + timedelta(days=1)))
    if due_before:
        if due_before.tzinfo is None:
            raise BadRequest("due_before: give a timezone", field="due_before")
        query = query.where(Dossier.due_at < due_before)
    running = (int(DossierStatus.ACCEPTED), int(DossierStatus.PROCESSING))
    now = clock.now()
    if overdue is True:
        query = query.where(Dossier.status.in_(running), Dossier.due_at < now)
    elif overdue is False:
        query = query.where(or_(Dossier.status.not_in(running), Dossier.due_at.is_(None), Dossier.due_at >= now))
    if has_pending_result is True:
        query = query.where(Dossier.id.in_(service.PENDING_DOSSIERS))
    elif has_pending_result is False:
        query = query.where(Dossier.id.not_in(service.PENDING_DOSSIERS))
    for word in tokens(applicant or ""):
        query = query.where(Dossier.applicant_search.contains(word, autoescape=True))
    if cursor:
        at, id_ = service.parse_cursor(cursor)
        query = query.where(or_(Dossier.received_at < at, and_(Dossier.received_at == at, Dossier.id < id_)))
    query = query.order_by(Dossier.received_at.desc(), Dossier.id.desc()).limit(limit + 1)
    rows = await service.read_rows(session, query)
    more = len(rows) > limit
    rows = rows[:limit]
    return DossierPage.model_validate(
        {
            "items": await service.dossier_views(session, ctx, rows),
            "next": service.make_cursor(rows[-1]["received_at"], rows[-1]["id"]) if more else None,
        }
    )


@dossiers.get(
    "/{code}", response_model=DossierOut, responses=problem_responses(401, 403, 404), **allow(*DOSSIER_READERS)
)
async def get_dossier(
    code: str, caller: Caller = Me, session: AsyncSession = Session, ctx: service.Context = Ctx
) -> DossierOut:
    return await service.dossier_out(session, ctx, await service.visible_record(session, caller, code))


def _of_dossier(table: Table, *fields: str) -> Select[Any]:
    """``fields`` of ``table``'s rows of one dossier (parameter ``dossier_id``) in order, built once."""
    of_dossier = table.c.dossier_id == bindparam("dossier_id")
    return select(*(table.c[f] for f in fields)).where(of_dossier).order_by(table.c.id)


_EVENTS_OF = _of_dossier(DossierEvent.__table__, *HistoryEntry.model_fields)
_DUE_DATE_CHANGES_OF = _of_dossier(DueDateChange.__table__, *DueDateChangeOut.model_fields)
_HANDOFFS_OF = _of_dossier(Handoff.__table__, *HandoffOut.model_fields)


@dossiers.get(
    "/{code}/history",
    response_model=DossierHistory,
    responses=problem_responses(401, 403, 404),
    **allow(*DOSSIER_READERS),
)
async def dossier_history(code: str, caller: Caller = Me, session: AsyncSession = Session) -> DossierHistory:
    """Every status change, every due-date change with why, and the hand-offs (tracking sheet)."""
    dossier = await service.visible_record(session, caller, code)
    ids = {"dossier_id": dossier["id"]}
    # plain rows of exactly the fields shown, validated in one go (see service._view_data)
    return DossierHistory.model_validate(
        {
            "code": dossier["code"],
            "events": await service.read_rows(session, _EVENTS_OF, ids),
            "due_date_changes": await service.read_rows(session, _DUE_DATE_CHANGES_OF, ids),
            "handoffs": await service.read_rows(session, _HANDOFFS_OF, ids),
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


ACTION_CALLERS = sorted({role for roles in service.ACTION_ROLES.values() for role in roles})


@dossiers.post(
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
    ctx: service.Context = Ctx,
) -> DossierOut:
    """One workflow action (accept, refuse, start_processing, request_supplement,
    supplement_received, request_fees, fees_paid, withdraw, stop, finish, return_result).
    Not allowed from the current status: 409 and nothing changes. Emits ``dossier.<action>``."""
    return await service.act(session, ctx, caller, code, action, body)


@dossiers.post(
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
    ctx: service.Context = Ctx,
) -> HandoffOut:
    """Hand the dossier to another unit or person: closes the current step with its timeliness."""
    return _handoff_out(await service.add_handoff(session, ctx, caller, code, body))


@dossiers.post(
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
    ctx: service.Context = Ctx,
) -> DueDateChangeOut:
    """Extend the due date before it passes, with the reason; the apology is form 04."""
    c = await service.extend(session, ctx, caller, code, body)
    return DueDateChangeOut(
        at=c.at,
        old_due_at=c.old_due_at,
        new_due_at=c.new_due_at,
        cause=c.cause,
        reason=c.reason,
        actor_name=c.actor_name,
    )


@dossiers.post(
    "/{code}/receipt",
    response_class=Response,
    responses={200: PDF, **problem_responses(401, 403, 404, 409, 422)},
    **allow("desk_officer", "citizen", "integrator"),
)
async def issue_receipt(
    code: str,
    request: Request,
    rotate_secret: Annotated[
        bool, Query(description="desk only: replace the look-up secret (the printed one stops working)")
    ] = False,
    reason: Annotated[str | None, Query(min_length=1, max_length=500, description="why, with rotate_secret")] = None,
    caller: Caller = Me,
    session: AsyncSession = Session,
    ctx: service.Context = Ctx,
) -> Response:
    """Form 01 with the dossier's look-up secret (also in the ``Lookup-Secret`` header). The
    first receipt makes the secret; printing again shows the same one, so the paper receipt
    keeps working. ``rotate_secret=true`` with a ``reason`` (desk only) makes a new one and
    records it in the history."""
    dossier = await service.visible_dossier(session, caller, code, for_update=True)
    secret = await service.receipt_secret(session, ctx, caller, dossier, rotate=rotate_secret, reason=reason)
    pdf = await printing.receipt(session, settings_of(request), dossier, secret=secret)
    return _pdf(pdf, f"{code}-01", {"Lookup-Secret": secret, "Cache-Control": "no-store"})


FORMS = {
    "02": printing.supplement_request,
    "03": printing.refusal,
    "04": printing.apology,
    "05": printing.tracking_sheet,
}


@dossiers.get(
    "/{code}/forms/{form}",
    response_class=Response,
    responses={200: PDF, **problem_responses(401, 403, 404, 409)},
    **allow(*DOSSIER_READERS),
)
async def print_form(
    code: str,
    form: Annotated[
        str, Path(pattern=r"^0[2-5]$", description="02 supplement request, 03 refusal, 04 apology, 05 tracking sheet")
    ],
    caller: Caller = Me,
    session: AsyncSession = Session,
) -> Response:
    dossier = await service.visible_dossier(session, caller, code)
    return _pdf(await FORMS[form](session, dossier), f"{code}-{form}")


@dossiers.get(
    "/{code}/files/{sha256}",
    response_class=Response,
    responses=problem_responses(401, 403, 404),
    **allow(*DOSSIER_READERS),
)
async def get_file(
    code: str,
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    request: Request,
    caller: Caller = Me,
    session: AsyncSession = Session,
) -> Response:
    """A component file of the dossier, as received."""
    dossier = await service.visible_dossier(session, caller, code)
    component = (
        (
            await session.execute(
                select(DossierComponent).where(
                    DossierComponent.dossier_id == dossier.id, DossierComponent.sha256 == sha256
                )
            )
        )
        .scalars()
        .first()
    )
    if component is None:
        raise NotFound("no such file in this dossier")
    content = request.app.state.runtime.extras["blobs"].get(sha256)
    return Response(content, media_type=component.content_type or "application/octet-stream")


# ======================================================================== public look-up

lookup = APIRouter(tags=["lookup"], route_class=StrictRoute)


_NOT_FOUND = "no dossier with this code and secret"

# what the look-up shows and its check, as a plain row (a public route: kept cheap)
_DOSSIER = Dossier.__table__.c
_LOOKED_UP = select(
    _DOSSIER.code,
    _DOSSIER.status,
    _DOSSIER.received_at,
    _DOSSIER.accepted_at,
    _DOSSIER.due_at,
    _DOSSIER.finished_at,
    _DOSSIER.returned_at,
    _DOSSIER.lookup_hash,
).where(_DOSSIER.code == bindparam("code"))


@lookup.get("/lookup", response_model=LookupOut, responses=problem_responses(404), **public())
async def public_lookup(
    request: Request,
    code: Annotated[str, Query(max_length=40)],
    secret: Annotated[str, Query(max_length=40)],
    session: AsyncSession = Session,
) -> LookupOut:
    """Tra cứu hồ sơ: status and dates of a dossier for whoever holds its receipt (code and
    secret). A wrong code and a wrong secret get the same 404; the gateway limits tries per
    client address (its ``rate_routes``)."""
    settings = settings_of(request)
    given = service.lookup_hash(settings, code, secret.strip().upper())
    dossier = (await session.execute(_LOOKED_UP, {"code": code})).mappings().first()
    stored = dossier["lookup_hash"] if dossier is not None and dossier["lookup_hash"] else "0" * 64
    # compare even when there is no dossier, so that timing does not tell codes apart
    if not hmac.compare_digest(given, stored) or dossier is None:
        raise NotFound(_NOT_FOUND)
    return LookupOut(
        code=dossier["code"],
        status=dossier["status"],
        status_label=DossierStatus(dossier["status"]).label_vi,
        received_at=dossier["received_at"],
        accepted_at=dossier["accepted_at"],
        due_at=dossier["due_at"],
        finished_at=dossier["finished_at"],
        returned_at=dossier["returned_at"],
    )


# ======================================================================== indicators

indicators = APIRouter(prefix="/indicators", tags=["indicators"], route_class=StrictRoute)


async def compute_indicators(
    session: AsyncSession, settings: IntakeSettings, agency: str, period_from: date, period_to: date
) -> IndicatorsOut:
    path = catalogue.agency_path(agency)
    start, end = _period_start(period_from), _period_start(period_to + timedelta(days=1))
    in_scope = Dossier.agency_path.startswith(path)
    received_row = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(case((Dossier.channel == "online", 1), else_=0)), 0)).where(
                in_scope, Dossier.received_at >= start, Dossier.received_at < end
            )
        )
    ).one()
    finished_row = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((Dossier.finished_on_time.is_(True), 1), else_=0)), 0),
                func.coalesce(func.sum(case((Dossier.finished_on_time.is_(False), 1), else_=0)), 0),
                func.avg(Dossier.hours_used),
            ).where(in_scope, Dossier.finished_at >= start, Dossier.finished_at < end)
        )
    ).one()
    overdue_now = (
        await session.execute(
            select(func.count()).where(
                in_scope,
                Dossier.status.in_((int(DossierStatus.ACCEPTED), int(DossierStatus.PROCESSING))),
                Dossier.due_at < clock.now(),
            )
        )
    ).scalar_one()
    components_row = (
        await session.execute(
            select(func.count(DossierComponent.id), func.count(DossierComponent.sha256))
            .join(Dossier, Dossier.id == DossierComponent.dossier_id)
            .where(in_scope, Dossier.received_at >= start, Dossier.received_at < end)
        )
    ).one()
    received, online = int(received_row[0]), int(received_row[1])
    on_time, late = int(finished_row[0]), int(finished_row[1])
    total_components, digitised = int(components_row[0]), int(components_row[1])

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return IndicatorsOut(
        agency=agency,
        period_from=period_from,
        period_to=period_to,
        received=received,
        received_online=online,
        online_share=share(online, received),
        finished_on_time=on_time,
        finished_late=late,
        on_time_rate=share(on_time, on_time + late),
        overdue_now=int(overdue_now),
        average_processing_hours=round(float(finished_row[2]), 2) if finished_row[2] is not None else None,
        components_total=total_components,
        components_digitised=digitised,
        digitised_components_share=share(digitised, total_components),
        weights=dict(settings.indicator_weights),
    )


@indicators.get(
    "",
    response_model=IndicatorsOut,
    responses={200: {"content": {"text/csv": {}}}, **problem_responses(400, 401, 403)},
    **allow("leader", "admin", "auditor"),
)
async def get_indicators(
    request: Request,
    agency: Annotated[str | None, Query(pattern=ORGAN_PATTERN, description="default: yours")] = None,
    period_from: Annotated[
        IsoDate | None, Query(alias="from", description="Vietnam date; default: first of this month")
    ] = None,
    period_to: Annotated[
        IsoDate | None, Query(alias="to", description="Vietnam date, inclusive; default: today")
    ] = None,
    format: Annotated[str, Query(pattern=r"^(json|csv)$")] = "json",
    caller: Caller = Me,
    session: AsyncSession = Session,
) -> Any:
    """Decision 766 raw rates of an agency subtree over a period, with the configured weights."""
    agency = agency or caller.agency
    if agency is None:
        raise BadRequest("agency: yours is not known, name one", field="agency")
    caller.require_agency(agency)
    today = catalogue.today_in_vietnam()
    period_to = period_to or today
    period_from = period_from or period_to.replace(day=1)
    if period_from > period_to:
        raise BadRequest("from is after to", field="from")
    result = await compute_indicators(session, settings_of(request), agency, period_from, period_to)
    if format == "json":
        return result
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["indicator", "value"])
    for name, value in result.model_dump(mode="json").items():
        if name == "weights":
            for key, weight in value.items():
                writer.writerow([f"weight_{key}", weight])
        else:
            writer.writerow([name, "" if value is None else value])
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="indicators-{agency}-{period_from}-{period_to}.csv"'},
    )


routers = [agencies, procedures, calendar, dossiers, lookup, indicators]

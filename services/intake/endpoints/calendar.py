"""The working calendar: deadline arithmetic for anyone, days off and swaps set by the admin."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.calendar import CalendarError, as_vietnam_time
from services.intake.context import Context
from services.intake.endpoints.common import Ctx, Me, Session
from services.intake.models import CalendarOverrideRow
from services.intake.schemas import (
    PROCEDURE_PATTERN,
    CalendarDay,
    CalendarOverrideIn,
    CalendarOverrideOut,
    CalendarYearOut,
    DueOut,
    IsoDate,
)
from shared.auth import Caller, allow, public
from shared.errors import BadRequest, NotFound, Unprocessable, problem_responses
from shared.http import StrictRoute

router = APIRouter(prefix="/calendar", tags=["calendar"], route_class=StrictRoute)


def _parse_instant(value: str, name: str) -> datetime:
    try:
        # a "+" of an offset arrives as a space when the client did not encode it
        moment = datetime.fromisoformat(value.strip().replace(" ", "+") if "T" in value else value)
    except ValueError as exc:
        raise BadRequest(f"{name}: not an ISO 8601 date-time", field=name) from exc
    if moment.tzinfo is None:
        raise BadRequest(f"{name}: give a timezone (e.g. +07:00)", field=name)
    return moment


@router.get("/due", response_model=DueOut, responses=problem_responses(400, 404, 422), **public())
async def due(
    accepted_at: Annotated[str, Query(description="ISO 8601 with offset, e.g. 2026-02-13T10:00+07:00")],
    hours: Annotated[Decimal | None, Query(gt=0, le=100_000, description="working hours")] = None,
    procedure: Annotated[
        str | None, Query(pattern=PROCEDURE_PATTERN, description="take hours and cut-off from it")
    ] = None,
    cutoff: Annotated[str | None, Query(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="with hours")] = None,
    pauses: Annotated[list[str] | None, Query(description="start/end intervals (ISO 8601); end may be empty")] = None,
    session: AsyncSession = Session,
    ctx: Context = Ctx,
) -> DueOut:
    """When is a dossier accepted at ``accepted_at`` due: server-side deadline arithmetic."""
    start = _parse_instant(accepted_at, "accepted_at")
    if (hours is None) == (procedure is None):
        raise BadRequest("give either hours or procedure")
    if procedure is not None:
        if cutoff is not None:
            raise BadRequest("the cut-off comes from the procedure")
        version = await catalogue.terms_in_force(session, procedure, as_vietnam_time(start).date())
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


@router.get("/overrides", response_model=list[CalendarOverrideOut], **allow("admin"))
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


@router.put(
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


@router.delete("/overrides/{day}", status_code=204, responses=problem_responses(401, 403, 404), **allow("admin"))
async def delete_override(
    day: Annotated[IsoDate, Path(description="YYYY-MM-DD")], session: AsyncSession = Session
) -> Response:
    result = await session.execute(delete(CalendarOverrideRow).where(CalendarOverrideRow.day == day))
    if not result.rowcount:
        raise NotFound(f"no override on {day}")
    return Response(status_code=204)


@router.get("/{year}", response_model=CalendarYearOut, **public())
async def calendar_year(
    year: Annotated[int, Path(ge=2000, le=2100)], session: AsyncSession = Session, ctx: Context = Ctx
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

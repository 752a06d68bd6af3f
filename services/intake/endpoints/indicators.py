"""Decision 766 indicators of an agency subtree over a period, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.endpoints.common import Me, Session, settings_of
from services.intake.indicators import subtree_indicators
from services.intake.models import Agency
from services.intake.schemas import ORGAN_PATTERN, IndicatorsByAgencyOut, IndicatorsOut, IsoDate
from shared.auth import Caller, allow
from shared.errors import BadRequest, problem_responses
from shared.http import StrictRoute

router = APIRouter(prefix="/indicators", tags=["indicators"], route_class=StrictRoute)


MOST_UNITS = 200

# the query both endpoints take: whose indicators, over which days
AgencyQuery = Annotated[str | None, Query(pattern=ORGAN_PATTERN, description="default: yours")]
FromQuery = Annotated[IsoDate | None, Query(alias="from", description="Vietnam date; default: first of this month")]
ToQuery = Annotated[IsoDate | None, Query(alias="to", description="Vietnam date, inclusive; default: today")]


def scope(
    caller: Caller, agency: str | None, period_from: date | None, period_to: date | None
) -> tuple[str, date, date]:
    """The agency and period asked for, defaults filled in: the caller's own agency, from the
    first of the month to today. 400 when neither names an agency or the period runs backwards;
    403 for an agency outside the caller's subtree."""
    agency = agency or caller.agency
    if agency is None:
        raise BadRequest("agency: yours is not known, name one", field="agency")
    caller.require_agency(agency)
    period_to = period_to or catalogue.today_in_vietnam()
    period_from = period_from or period_to.replace(day=1)
    if period_from > period_to:
        raise BadRequest("from is after to", field="from")
    return agency, period_from, period_to


@router.get(
    "/by-agency",
    response_model=IndicatorsByAgencyOut,
    responses=problem_responses(400, 401, 403),
    **allow("leader", "admin", "auditor"),
)
async def get_indicators_by_agency(
    request: Request,
    agency: AgencyQuery = None,
    period_from: FromQuery = None,
    period_to: ToQuery = None,
    caller: Caller = Me,
    session: AsyncSession = Session,
) -> IndicatorsByAgencyOut:
    """The indicators of an agency subtree and of each active direct unit's subtree (at most
    200 units), as ``GET /indicators`` gives them one by one."""
    agency, period_from, period_to = scope(caller, agency, period_from, period_to)
    units = (
        (
            await session.execute(
                select(Agency.code)
                .where(Agency.parent_code == agency, Agency.active.is_(True))
                .order_by(Agency.code)
                .limit(MOST_UNITS)
            )
        )
        .scalars()
        .all()
    )
    items = await subtree_indicators(
        session,
        agency=agency,
        units=units,
        period_from=period_from,
        period_to=period_to,
        weights=settings_of(request).indicator_weights,
    )
    return IndicatorsByAgencyOut(items=items)


@router.get(
    "",
    response_model=IndicatorsOut,
    responses={200: {"content": {"text/csv": {}}}, **problem_responses(400, 401, 403)},
    **allow("leader", "admin", "auditor"),
)
async def get_indicators(
    request: Request,
    agency: AgencyQuery = None,
    period_from: FromQuery = None,
    period_to: ToQuery = None,
    format: Annotated[str, Query(pattern=r"^(json|csv)$")] = "json",
    caller: Caller = Me,
    session: AsyncSession = Session,
) -> Any:
    """Decision 766 raw rates of an agency subtree over a period, with the configured weights."""
    agency, period_from, period_to = scope(caller, agency, period_from, period_to)
    [result] = await subtree_indicators(
        session,
        agency=agency,
        period_from=period_from,
        period_to=period_to,
        weights=settings_of(request).indicator_weights,
    )
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

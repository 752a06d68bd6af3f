"""Decision 766 indicators of an agency subtree over a period, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.config import IntakeSettings
from services.intake.endpoints.common import Me, Session, period_start, settings_of
from services.intake.models import Agency, Dossier, DossierComponent
from services.intake.schemas import ORGAN_PATTERN, IndicatorsByAgencyOut, IndicatorsOut, IsoDate
from services.intake.workflow import RUNNING_STATUSES
from shared import clock
from shared.auth import Caller, allow
from shared.errors import BadRequest, problem_responses
from shared.http import StrictRoute

router = APIRouter(prefix="/indicators", tags=["indicators"], route_class=StrictRoute)


async def compute_indicators(
    session: AsyncSession, settings: IntakeSettings, agency: str, period_from: date, period_to: date
) -> IndicatorsOut:
    path = catalogue.agency_path(agency)
    start, end = period_start(period_from), period_start(period_to + timedelta(days=1))
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
                Dossier.status.in_([int(s) for s in sorted(RUNNING_STATUSES)]),
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
    settings = settings_of(request)
    return IndicatorsByAgencyOut(
        items=[await compute_indicators(session, settings, code, period_from, period_to) for code in [agency, *units]]
    )


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

"""An agency's document capabilities: its numbering profile, this year's series and registers.

A clerk who cannot number a draft needs to see why without reading the deployment's settings.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import service as svc
from services.document.endpoints.common import STAFF, Session
from services.document.models import Document, counters
from services.document.numbering import rule_in_force
from services.document.schemas import AgencyOut, RegisterOut, SeriesOut, SeriesRuleOut
from shared.auth import Caller, allow, current_caller
from shared.errors import NotFound, problem_responses
from shared.http import StrictRoute

agencies = APIRouter(prefix="/agencies", tags=["agencies"], route_class=StrictRoute)


@agencies.get("/{organ_id}", response_model=AgencyOut, responses=problem_responses(401, 403, 404), **allow(*STAFF))
async def get_agency(
    organ_id: str,
    request: Request,
    year: int | None = Query(default=None, ge=1900, le=2999, description="default: this year in Vietnam"),
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> AgencyOut:
    """Name, issuer abbreviation, number series rules, this year's series with their last
    number, and the registers. 404 for an agency this deployment does not number for."""
    caller.require_agency(organ_id)
    settings = svc.toolkit(request).settings
    profile = settings.agencies.get(organ_id)
    if profile is None:
        raise NotFound(f"agency {organ_id} has no numbering profile in this deployment")
    today = svc.vietnam_today()
    year = year or today.year
    rules = [r.to_rule() for r in profile.series]
    try:
        current = rule_in_force(rules, today)
    except LookupError:
        current = None
    prefix = f"{organ_id}:{year}/"
    rows = await session.execute(
        select(counters.c.key, counters.c.value).where(counters.c.key.like(prefix + "%")).order_by(counters.c.key)
    )
    series = []
    for key, value in rows:
        name = key.removeprefix(f"{organ_id}:")
        if name == f"{year}/{svc.ARRIVAL_SERIES}":
            continue
        if name.split("/", 1)[1].startswith("mat") and not caller.may_see_secrecy(1):
            continue  # how many secret documents were numbered is itself not for everyone
        series.append(SeriesOut(key=name, last_number=int(value)))
    outgoing = await session.scalar(
        select(func.count(Document.id)).where(
            Document.agency == organ_id,
            Document.direction == "outgoing",
            Document.code_number.is_not(None),
            Document.series_key.like(f"{year}/%"),
            Document.secrecy_rank <= caller.clearance,
        )
    )
    incoming = await session.scalar(
        select(func.count(Document.id)).where(
            Document.agency == organ_id,
            Document.direction == "incoming",
            Document.arrival_series == f"{year}/{svc.ARRIVAL_SERIES}",
            Document.secrecy_rank <= caller.clearance,
        )
    )
    return AgencyOut(
        organ_id=organ_id,
        name=profile.name,
        abbreviation=profile.abbreviation,
        tier=profile.tier,
        year=year,
        series_rules=[
            SeriesRuleOut(
                effective_from=r.effective_from,
                in_force=r is current,
                administrative=r.administrative.value,
                administrative_groups=dict(r.administrative_groups),
                secret_apart=r.secret_apart,
                secret_per_group=r.secret_per_group,
                copies_apart=r.copies_apart,
            )
            for r in rules
        ],
        series=series,
        registers=[
            RegisterOut(
                kind=kind,
                year=year,
                entries=int(count or 0),
                path=f"/api/document/registers/{kind}?agency={organ_id}&year={year}",
            )
            for kind, count in (("outgoing", outgoing), ("incoming", incoming))
        ],
    )


ROUTERS = (agencies,)

"""The agency tree (Decision 20/2020 identifiers): read by anyone, changed by the admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.endpoints.common import Me, Session
from services.intake.models import Agency
from services.intake.schemas import ORGAN_PATTERN, AgencyIn, AgencyOut
from shared.auth import Caller, allow, public
from shared.errors import problem_responses
from shared.events import Actor
from shared.http import StrictRoute

router = APIRouter(prefix="/agencies", tags=["agencies"], route_class=StrictRoute)


@router.get("", response_model=list[AgencyOut], **public())
async def list_agencies(
    under: Annotated[str | None, Query(pattern=ORGAN_PATTERN, description="only this agency's subtree")] = None,
    session: AsyncSession = Session,
) -> list[AgencyOut]:
    """The agency tree (Decision 20/2020 identifiers), the suite's one source of truth."""
    query = select(Agency).order_by(Agency.path)
    if under:
        query = query.where(Agency.path.startswith(catalogue.agency_path(under)))
    return [catalogue.agency_out(a) for a in (await session.execute(query)).scalars()]


@router.get("/{code}", response_model=AgencyOut, responses=problem_responses(404), **public())
async def get_agency(code: Annotated[str, Path(pattern=ORGAN_PATTERN)], session: AsyncSession = Session) -> AgencyOut:
    return catalogue.agency_out(await catalogue.get_agency(session, code))


@router.put(
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

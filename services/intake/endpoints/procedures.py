"""The procedure catalogue (TTHC) and its versions: read by anyone, versions added by the admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.endpoints.common import Me, Session
from services.intake.models import ProcedureVersion
from services.intake.schemas import (
    ORGAN_PATTERN,
    PROCEDURE_PATTERN,
    ProcedureOut,
    ProcedureVersionIn,
    ProcedureVersionOut,
)
from shared.auth import Caller, allow, public
from shared.errors import NotFound, problem_responses
from shared.events import Actor
from shared.http import StrictRoute
from shared.text import fold, tokens

router = APIRouter(prefix="/procedures", tags=["procedures"], route_class=StrictRoute)


@router.get("", response_model=list[ProcedureVersionOut], **public())
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


@router.get("/{code}", response_model=ProcedureOut, responses=problem_responses(404), **public())
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


@router.post(
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

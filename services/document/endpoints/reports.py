"""Reports over documents: the Directive 15 report (JSON or CSV)."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import directive15
from services.document import service as svc
from services.document.endpoints.common import Session
from shared.auth import Caller, allow, current_caller
from shared.errors import Unprocessable, problem_responses
from shared.http import StrictRoute

reports = APIRouter(prefix="/reports", tags=["reports"], route_class=StrictRoute)


@reports.get(
    "/directive15",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}, **problem_responses(401, 403, 422)},
    **allow("leader", "admin", "auditor"),
)
async def directive15_report(
    request: Request,
    from_: date = Query(alias="from", description="first day of the period (Vietnam date)"),
    to: date = Query(description="last day of the period, inclusive"),
    agency: str | None = Query(default=None, max_length=13, description="root of the subtree; default: yours"),
    format: Literal["json", "csv"] = "json",
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Any:
    """Per agency and level, the share of documents created, exchanged, processed and signed
    electronically against the target, counting from each level's start date."""
    if to < from_:
        raise Unprocessable("'to' is before 'from'")
    root = agency or caller.agency
    caller.require_agency(root)
    assert root is not None
    settings = svc.toolkit(request).settings
    agencies = directive15.agencies_in_scope(settings, root)
    tallies = await directive15.tally(
        session, settings, agencies=agencies, start=from_, end=to, clearance=caller.clearance
    )
    data = directive15.report(settings, tallies, start=from_, end=to, root=root)
    if format == "json":
        return data
    out = io.StringIO()
    out.write("\ufeff")  # spreadsheet programs then read the Vietnamese names as UTF-8
    writer = csv.writer(out)
    writer.writerow(directive15.CSV_COLUMNS)
    writer.writerows(directive15.csv_rows(data))
    name = f"chi-thi-15-{root}-{from_.isoformat()}-{to.isoformat()}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


ROUTERS = (reports,)

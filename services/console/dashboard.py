"""The province dashboard (leader, admin, auditor): each agency's indicators for a period as a
table and server-drawn SVG bars, and the Directive 15 report, both also as CSV."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from markupsafe import Markup, escape

from services.console.api import ApiError
from services.console.web import Visit, require, visit
from shared import clock

router = APIRouter(include_in_schema=False)
V = Depends(visit)
ROLES = ("leader", "admin", "auditor")
MOST_AGENCIES = 20


def _day(text: str) -> date | None:
    """``dd/mm/yyyy`` as people write it, or ISO as links carry it."""
    text = text.strip()
    try:
        if "/" in text:
            day, month, year = (int(x) for x in text.split("/"))
            return date(year, month, day)
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _period(start: str, end: str) -> tuple[date, date]:
    to = _day(end) or clock.vn_today()
    since = _day(start) or to.replace(day=1)
    return (since, to) if since <= to else (to, since)


def bar_chart(rows: list[tuple[str, float, float]], *, title: str, legend: tuple[str, str]) -> Markup:
    """Horizontal bars, one per row: ``(label, whole, part)`` — the part drawn darker inside the
    whole. Plain SVG with a title and text values, readable without colour."""
    bar_h, gap, label_w, chart_w = 22, 10, 260, 420
    height = len(rows) * (bar_h + gap) + 40
    most = max((r[1] for r in rows), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {label_w + chart_w + 90} {height}" '
        f'class="chart" aria-labelledby="chart-{abs(hash(title))}">',
        f'<title id="chart-{abs(hash(title))}">{escape(title)}</title>',
    ]
    y = 10
    for label, whole, part in rows:
        w_whole = chart_w * whole / most
        w_part = chart_w * part / most
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" font-size="13" fill="#1a1a1a">'
            f"{escape(label[:40])}</text>"
        )
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w_whole:.1f}" height="{bar_h}" fill="#9dbbe0"/>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w_part:.1f}" height="{bar_h}" fill="#0b4f9c"/>')
        parts.append(
            f'<text x="{label_w + w_whole + 6:.1f}" y="{y + 16}" font-size="13" fill="#1a1a1a">'
            f"{whole:g} / {part:g}</text>"
        )
        y += bar_h + gap
    parts.append(
        f'<rect x="{label_w}" y="{y + 4}" width="14" height="14" fill="#9dbbe0"/>'
        f'<text x="{label_w + 20}" y="{y + 16}" font-size="12" fill="#1a1a1a">{escape(legend[0])}</text>'
        f'<rect x="{label_w + 200}" y="{y + 4}" width="14" height="14" fill="#0b4f9c"/>'
        f'<text x="{label_w + 220}" y="{y + 16}" font-size="12" fill="#1a1a1a">{escape(legend[1])}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


@router.get("/tong-hop")
async def dashboard(v: Visit = V, start: str = "", end: str = "") -> Response:
    user = require(v, *ROLES)
    since, to = _period(start, end)

    async def directive15() -> dict[str, Any] | None:
        try:
            return await v.api.directive15(user.token, start=since, end=to)
        except ApiError as exc:
            if not exc.is_client_error:
                raise
            return None

    # one call for the agency and all its units (one per unit was the page's whole cost: every
    # part runs in one process in the embedded mode, so calls in flight only queued), the
    # Directive 15 report and the agencies' names beside it
    listed, found, report = await asyncio.gather(
        v.api.agencies(under=user.agency),
        v.api.indicators_by_agency(user.token, agency=user.agency, start=since, end=to),
        directive15(),
    )
    agencies = [a for a in listed if a.get("active", True)]
    mine = [a for a in agencies if a["code"] == user.agency]
    children = [a for a in agencies if a.get("parent_code") == user.agency][:MOST_AGENCIES]
    figures = {f["agency"]: f for f in found}
    shown = [a for a in mine + children if a["code"] in figures]
    rows = [{**figures[a["code"]], "organ": a} for a in shown]
    _ = v._
    received = bar_chart(
        [(r["organ"]["name"], r["received"], r["received_online"]) for r in rows],
        title=_("Dossiers received"),
        legend=(_("All received"), _("of which online")),
    )
    on_time = bar_chart(
        [(r["organ"]["name"], r["finished_on_time"] + r["finished_late"], r["finished_on_time"]) for r in rows],
        title=_("Dossiers finished"),
        legend=(_("All finished"), _("of which on time")),
    )
    return v.render(
        "dashboard.html", rows=rows, since=since, to=to, report=report, received_chart=received, on_time_chart=on_time
    )


@router.get("/tong-hop/{name}.csv")
async def dashboard_csv(name: str, v: Visit = V, start: str = "", end: str = "") -> Response:
    user = require(v, *ROLES)
    since, to = _period(start, end)
    if name == "chi-so":
        binary = await v.api.indicators(user.token, agency=user.agency, start=since, end=to, csv=True)
    elif name == "chi-thi-15":
        binary = await v.api.directive15(user.token, start=since, end=to, csv=True)
    else:
        raise ApiError(404, detail="no such report")
    response = Response(binary.content, media_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}-{since}-{to}.csv"'
    return v.finish(response)

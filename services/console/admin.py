"""The administrator's calendar: a year at a glance (days off, working weekend days), and the
one-off swaps the government announces, added and removed here (they beat the computed
calendar for new due dates; dossiers already accepted keep theirs)."""

from __future__ import annotations

import calendar as months
import re
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.console.api import ApiError
from services.console.dashboard import _day
from services.console.i18n import N_
from services.console.web import Visit, require, visit
from shared import clock

router = APIRouter(include_in_schema=False)
V = Depends(visit)


def year_grid(year: int, off: dict[date, str], working: dict[date, str]) -> list[dict[str, Any]]:
    """Twelve months as weeks of days (Monday first), each day marked for the page."""
    grid = []
    for month in range(1, 13):
        weeks = []
        for week in months.Calendar(firstweekday=0).monthdatescalendar(year, month):
            row = []
            for day in week:
                if day.month != month:
                    row.append(None)
                    continue
                if day in off:
                    kind, name = "off", off[day]
                elif day in working:
                    kind, name = "swap", working[day]
                elif day.weekday() >= 5:
                    kind, name = "weekend", ""
                else:
                    kind, name = "work", ""
                row.append({"day": day, "kind": kind, "name": name})
            weeks.append(row)
        grid.append({"month": month, "weeks": weeks})
    return grid


async def _page(
    v: Visit, year: int, *, status: int = 200, error: str | None = None, values: dict[str, str]
) -> Response:
    user = require(v, "admin")
    found = await v.api.calendar_year(year)
    off = {date.fromisoformat(d["day"]): d["name"] for d in found["days_off"]}
    working = {date.fromisoformat(d["day"]): d["name"] for d in found["working_weekend_days"]}
    overrides = await v.api.calendar_overrides(user.token, year)
    return v.render(
        "calendar.html",
        status=status,
        year=year,
        grid=year_grid(year, off, working),
        days_off=found["days_off"],
        overrides=overrides,
        error=error,
        values=values,
    )


@router.get("/quan-tri/lich")
async def calendar_page(v: Visit = V, year: int = 0) -> Response:
    year = year if 2000 <= year <= 2100 else clock.vn_today().year
    return await _page(v, year, values={})


@router.post("/quan-tri/lich")
async def add_override(request: Request, v: Visit = V) -> Response:
    user = require(v, "admin")
    form = await request.form()
    values = {k: str(x) for k, x in form.items() if isinstance(x, str)}
    day = _day(values.get("day", ""))
    reason = values.get("reason", "").strip()
    year = day.year if day else clock.vn_today().year
    if day is None or not reason:
        error = v._("Enter the day as dd/mm/yyyy and the reason (the decision that announces it).")
        return await _page(v, year, status=400, error=error, values=values)
    try:
        await v.api.put_calendar_override(user.token, day, working=values.get("working") == "1", reason=reason)
    except ApiError as exc:
        if not exc.is_client_error:
            raise
        return await _page(v, year, status=exc.status, error=v.problem(exc), values=values)
    return v.redirect(f"/quan-tri/lich?year={day.year}", notice=v._("Saved: {day}.").format(day=v.fmt.day(day)))


@router.post("/quan-tri/lich/{day}/xoa")
async def remove_override(day: date, v: Visit = V) -> Response:
    user = require(v, "admin")
    await v.api.delete_calendar_override(user.token, day)
    return v.redirect(f"/quan-tri/lich?year={day.year}", notice=v._("Removed: {day}.").format(day=v.fmt.day(day)))


# --- users ------------------------------------------------------------------------------------

GRANTABLE = ("citizen", "desk_officer", "specialist", "leader", "clerk", "admin", "auditor", "integrator")
ROLE_NAMES = {
    "citizen": N_("Citizen"),
    "desk_officer": N_("Desk officer"),
    "specialist": N_("Specialist"),
    "leader": N_("Leader"),
    "clerk": N_("Clerk"),
    "admin": N_("Administrator"),
    "auditor": N_("Auditor"),
    "integrator": N_("Integrator"),
}


async def _users_page(
    v: Visit,
    *,
    cursor: str = "",
    agency: str = "",
    status: int = 200,
    error: str | None = None,
    values: dict[str, Any],
) -> Response:
    user = require(v, "admin")
    page = await v.api.users(user.token, limit=v.settings.page_size, cursor=cursor or None, agency=agency or None)
    return v.render(
        "users.html",
        status=status,
        page=page,
        cursor=cursor,
        agency=agency,
        roles=[(r, v._(ROLE_NAMES[r])) for r in GRANTABLE],
        role_names={r: v._(n) for r, n in ROLE_NAMES.items()},
        error=error,
        values=values,
    )


@router.get("/quan-tri/nguoi-dung")
async def users_page(v: Visit = V, cursor: str = "", agency: str = "") -> Response:
    agency = agency.strip() if re.fullmatch(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}", agency.strip()) else ""
    return await _users_page(
        v, cursor=cursor, agency=agency, values={"agency": agency or (v.user.agency if v.user else "")}
    )


@router.post("/quan-tri/nguoi-dung")
async def create_user(request: Request, v: Visit = V) -> Response:
    user = require(v, "admin")
    form = await request.form()
    values: dict[str, Any] = {k: str(x) for k, x in form.items() if isinstance(x, str)}
    values["roles"] = [r for r in form.getlist("roles") if r in GRANTABLE]
    clearance = values.get("clearance", "0")
    body = {
        "username": values.get("username", "").strip(),
        "full_name": values.get("full_name", "").strip(),
        "password": values.get("password", ""),
        "roles": values["roles"],
        "agency": values.get("agency", "").strip(),
        "clearance": int(clearance) if clearance.isdigit() else clearance,
    }
    try:
        await v.api.create_user(user.token, body)
    except ApiError as exc:
        if not exc.is_client_error:
            raise
        values.pop("password", None)
        return await _users_page(v, status=exc.status, error=v.problem(exc), values=values)
    return v.redirect("/quan-tri/nguoi-dung", notice=v._("Account {name} created.").format(name=body["username"]))


@router.post("/quan-tri/nguoi-dung/{username}/{state}")
async def set_active(username: str, state: str, v: Visit = V) -> Response:
    user = require(v, "admin")
    if state not in ("khoa", "mo"):
        raise ApiError(404, detail="no such action")
    await v.api.set_user_active(user.token, username, state == "mo")
    done = v._("Account {name} unlocked.") if state == "mo" else v._("Account {name} locked.")
    return v.redirect("/quan-tri/nguoi-dung", notice=done.format(name=username))


# --- procedures -------------------------------------------------------------------------------


@router.get("/quan-tri/thu-tuc")
async def procedures_page(v: Visit = V, q: str = "") -> Response:
    require(v, "admin")
    from services.console.endpoints import search_procedures

    found = await search_procedures(v, q.strip()) if q.strip() else await v.api.procedures()
    return v.render("procedures.html", procedures=found, q=q, chosen=None)


VERSION_FIELDS = (
    "effective_from", "name", "sector", "receiving_agencies", "deciding_agency",
    "processing_hours", "cutoff", "fee_vnd", "online_level",
)  # fmt: skip
ONLINE_LEVELS = {"full": N_("Fully online"), "partial": N_("Partly online"), "none": N_("At the desk only")}


# blank rows under a procedure's components, for new ones (a row left blank adds nothing)
SPARE_COMPONENT_ROWS = 2
MOST_COMPONENTS = 100


def _component_values(components: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "name": c["name"],
            "kind": "original" if c["original_required"] else "copy",
            "copies": str(c["copies"]),
            "required": "1" if c["required"] else "",
        }
        for c in components
    ]


def _version_values(current: dict[str, Any] | None) -> dict[str, Any]:
    """The form for a new version starts from the one in force, from tomorrow."""
    tomorrow = clock.vn_today().toordinal() + 1
    values: dict[str, Any] = {"effective_from": date.fromordinal(tomorrow).strftime("%d/%m/%Y"), "components": []}
    if current:
        values |= {
            "name": current["name"],
            "sector": current["sector"],
            "receiving_agencies": ", ".join(current["receiving_agencies"]),
            "deciding_agency": current["deciding_agency"],
            "processing_hours": f"{float(current['processing_hours']):g}",
            "cutoff": current.get("cutoff") or "",
            "fee_vnd": str(current["fee_vnd"]),
            "online_level": current["online_level"],
            "components": _component_values(current.get("components", [])),
        }
    return values


def _components_of_form(form: Any) -> list[dict[str, str]]:
    """The component rows as typed (kept for the form if the API refuses them)."""
    rows = []
    for i in range(1, MOST_COMPONENTS + SPARE_COMPONENT_ROWS + 1):
        if f"component-{i}-name" not in form:
            break
        rows.append(
            {
                "name": str(form.get(f"component-{i}-name") or "").strip(),
                "kind": "copy" if form.get(f"component-{i}-kind") == "copy" else "original",
                "copies": str(form.get(f"component-{i}-copies") or "").strip(),
                "required": "1" if form.get(f"component-{i}-required") else "",
            }
        )
    return rows


def _components_for_api(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Rows with a name, in order: a row whose name was cleared is a component removed. A count
    that is not a number goes as typed, for the API to name it wrong."""
    return [
        {
            "name": row["name"],
            "original_required": row["kind"] == "original",
            "copies": int(row["copies"]) if row["copies"].isdigit() else row["copies"],
            "required": bool(row["required"]),
        }
        for row in rows
        if row["name"]
    ]


async def _procedure_page(
    v: Visit, code: str, *, status: int = 200, error: str | None = None, values: dict[str, Any] | None = None
) -> Response:
    require(v, "admin")
    if not code.replace(".", "").isdigit():
        raise ApiError(404, detail="no such procedure")
    chosen = await v.api.procedure(code)
    values = values if values is not None else _version_values(chosen.get("current"))
    rows = [
        *values["components"],
        *({"name": "", "kind": "original", "copies": "1", "required": "1"},) * SPARE_COMPONENT_ROWS,
    ]
    return v.render(
        "procedures.html",
        status=status,
        procedures=[],
        q="",
        chosen=chosen,
        error=error,
        values=values,
        component_rows=rows[: MOST_COMPONENTS + SPARE_COMPONENT_ROWS],
        online_levels=ONLINE_LEVELS,
    )


@router.get("/quan-tri/thu-tuc/{code}")
async def procedure_versions(code: str, v: Visit = V) -> Response:
    return await _procedure_page(v, code)


@router.post("/quan-tri/thu-tuc/{code}")
async def add_procedure_version(code: str, request: Request, v: Visit = V) -> Response:
    """A new version from the form, with its components as edited (intake keeps components per
    version, so dossiers already received keep theirs)."""
    user = require(v, "admin")
    form = await request.form()
    values: dict[str, Any] = {k: str(form.get(k) or "").strip() for k in VERSION_FIELDS}
    values["components"] = _components_of_form(form)
    if "component-1-name" not in form:
        # a form without the component rows (a page from before they were editable, a script)
        # changes the rest and keeps the components of the version in force
        current = (await v.api.procedure(code)).get("current") or {}
        values["components"] = _component_values(current.get("components", []))
    effective = _day(values["effective_from"])
    if effective is None:
        error = v._("Enter the day as dd/mm/yyyy.")
        return await _procedure_page(v, code, status=400, error=error, values=values)
    version: dict[str, Any] = {
        "effective_from": effective.isoformat(),
        "name": values["name"],
        "sector": values["sector"],
        "receiving_agencies": [a.strip() for a in re.split(r"[,\s]+", values["receiving_agencies"]) if a.strip()],
        "deciding_agency": values["deciding_agency"],
        "processing_hours": values["processing_hours"].replace(",", ".") or "0",
        "cutoff": values["cutoff"] or None,
        "fee_vnd": int(values["fee_vnd"].replace(".", "")) if values["fee_vnd"].replace(".", "").isdigit() else -1,
        "online_level": values["online_level"],
        "components": _components_for_api(values["components"]),
    }
    try:
        added = await v.api.add_procedure_version(user.token, code, version)
    except ApiError as exc:
        if not exc.is_client_error:
            raise
        return await _procedure_page(v, code, status=exc.status, error=v.problem(exc), values=values)
    v.api.forget_catalogue()
    done = v._("Version {n} added, in force from {day}.").format(n=added["version"], day=v.fmt.day(effective))
    return v.redirect(f"/quan-tri/thu-tuc/{code}", notice=done)

"""Danh mục: agencies (the suite's agency tree), procedure versions and the working calendar as
stored in intake's database, and the idempotent demo seed.

The agency tree lives here and only here; other parts learn of it from ``agency.changed`` events
(emitted in the transaction of every change, including the demo seed) or ``GET /agencies``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import date, datetime, time
from decimal import Decimal
from types import SimpleNamespace
from typing import TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue_seed
from services.intake.calendar import VN_TZ, CalendarOverride, WorkingCalendar
from services.intake.config import IntakeSettings
from services.intake.events import AgencyChanged, ProcedureChanged
from services.intake.models import Agency, CalendarOverrideRow, ProcedureVersion, outbox
from services.intake.schemas import AgencyIn, AgencyOut, ComponentSpecOut, ProcedureVersionIn, ProcedureVersionOut
from shared import clock, organ_id
from shared.db import fetch_rows, insert_ignoring_duplicates
from shared.errors import Conflict, NotFound, Unprocessable
from shared.events import Actor
from shared.text import fold

V = TypeVar("V")

PROCEDURE_AT_AGENCY_LENGTH = len("1.010708.000.00.00.H56")


def agency_path(code: str) -> str:
    """``000.17.22.H56`` → ``/H56/22/17/``: a subtree is then a string prefix."""
    return "/" + "/".join(organ_id.path(code)) + "/"


def today_in_vietnam(now: datetime | None = None) -> date:
    return (now or clock.now()).astimezone(VN_TZ).date()


# ------------------------------------------------------------------ agencies


def agency_out(agency: Agency) -> AgencyOut:
    return AgencyOut(
        code=agency.code,
        name=agency.name,
        parent_code=agency.parent_code,
        level=agency.level,
        active=agency.active,
        version=agency.version,
        updated_at=agency.updated_at,
    )


SEED_ACTOR = Actor.system("demo seed (LIENTHONG_DEMO=true)")


async def _emit_agency(session: AsyncSession, agency: Agency, by: Actor) -> None:
    await outbox.emit(
        session,
        "agency.changed",
        AgencyChanged(
            code=agency.code,
            name=agency.name,
            parent_code=agency.parent_code,
            level=agency.level,
            active=agency.active,
            version=agency.version,
            actor=by,
        ),
        subject=f"agency:{agency.code}",
        agency=agency.code,
    )


async def put_agency(session: AsyncSession, code: str, body: AgencyIn, *, by: Actor) -> tuple[Agency, bool]:
    """Create or change an agency; the parent follows from the code and must exist."""
    if not organ_id.is_valid(code):
        raise Unprocessable("not a Decision 20/2020 agency identifier", field="code")
    parent = organ_id.parent(code)
    if parent is not None and await session.get(Agency, parent) is None:
        raise Unprocessable(f"the parent agency {parent} does not exist yet", field="code")
    now = clock.now()
    agency = await session.get(Agency, code, with_for_update=True)
    created = agency is None
    if agency is None:
        agency = Agency(
            code=code,
            name=body.name,
            parent_code=parent,
            level=organ_id.level(code),
            path=agency_path(code),
            active=body.active,
            version=1,
            updated_at=now,
        )
        session.add(agency)
    else:
        if agency.name == body.name and agency.active == body.active:
            return agency, False
        agency.name, agency.active = body.name, body.active
        agency.version += 1
        agency.updated_at = now
    await session.flush()
    await _emit_agency(session, agency, by)
    return agency, created


async def get_agency(session: AsyncSession, code: str) -> Agency:
    agency = await session.get(Agency, code)
    if agency is None:
        raise NotFound(f"no agency {code}")
    return agency


# ------------------------------------------------------------------ procedures


def split_procedure_code(value: str) -> tuple[str, str | None]:
    """``1.010708`` → (code, None); ``1.010708.000.00.00.H56`` → (code, agency)."""
    if len(value) == PROCEDURE_AT_AGENCY_LENGTH and value[8:9] == ".":
        return value[:8], value[9:]
    return value, None


def version_out(row: ProcedureVersion) -> ProcedureVersionOut:
    return ProcedureVersionOut(
        code=row.code,
        version=row.version,
        effective_from=row.effective_from,
        name=row.name,
        sector=row.sector,
        receiving_agencies=list(row.receiving_agencies),
        codes_at_agencies=[f"{row.code}.{a}" for a in row.receiving_agencies],
        deciding_agency=row.deciding_agency,
        processing_hours=Decimal(row.processing_hours),
        cutoff=row.cutoff,
        fee_vnd=row.fee_vnd,
        components=[ComponentSpecOut(no=i + 1, **c) for i, c in enumerate(row.components)],
        online_level=row.online_level,
    )


# built once: every submission runs it, and building a query costs about what running it does
_VERSIONS_OF = (
    select(ProcedureVersion).where(ProcedureVersion.code == bindparam("code")).order_by(ProcedureVersion.version)
)


async def versions_of(session: AsyncSession, code: str) -> list[ProcedureVersion]:
    return list((await session.execute(_VERSIONS_OF, {"code": code})).scalars())


_TERMS_OF = (
    select(ProcedureVersion.effective_from, ProcedureVersion.processing_hours, ProcedureVersion.cutoff)
    .where(ProcedureVersion.code == bindparam("code"))
    .order_by(ProcedureVersion.version)
)


async def terms_in_force(session: AsyncSession, code: str, day: date) -> SimpleNamespace | None:
    """The processing hours and cut-off of ``code``'s version in force on ``day``: for the public
    due-date calculator, a plain read (no ORM objects, and on PostgreSQL no transaction)."""
    return in_force([SimpleNamespace(**row) for row in await fetch_rows(session, _TERMS_OF, {"code": code})], day)


_LABELS = select(ProcedureVersion.id, ProcedureVersion.version, ProcedureVersion.name).where(
    ProcedureVersion.id.in_(bindparam("ids", expanding=True))
)


class VersionLabels:
    """(version number, name) of procedure versions by id, as every dossier view and event shows
    them. A version is never changed once written (a change of procedure is a new version), so
    what was read once stays true and is kept: views and actions no longer ask the database for
    it. One per part's database; the catalogue is small enough to be kept whole."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[int, str]] = {}

    async def of(self, session: AsyncSession, ids: Iterable[int]) -> dict[int, tuple[int, str]]:
        """The labels of ``ids`` (and any others already known), reading only those not known."""
        missing = {id_ for id_ in ids if id_ not in self._known}
        if missing:
            rows = await session.execute(_LABELS, {"ids": sorted(missing)})
            self._known.update({id_: (number, name) for id_, number, name in rows})
        return self._known

    async def label(self, session: AsyncSession, id_: int) -> tuple[int, str]:
        return (await self.of(session, (id_,)))[id_]


def in_force(versions: list[V], day: date) -> V | None:
    """The version in force on ``day`` (anything with an ``effective_from``)."""
    current = None
    for row in versions:  # ordered by version; effective_from grows with it
        if row.effective_from <= day:
            current = row
    return current


async def add_version(
    session: AsyncSession, code: str, body: ProcedureVersionIn, *, actor: str, by: Actor
) -> ProcedureVersion:
    """A new version; it must take effect after the previous one (history is never rewritten)."""
    for agency in {*body.receiving_agencies, body.deciding_agency}:
        if await session.get(Agency, agency) is None:
            raise Unprocessable(f"unknown agency {agency}", field="receiving_agencies")
    numbers = [c.name for c in body.components]
    if len(set(numbers)) != len(numbers):
        raise Unprocessable("two components with the same name", field="components")
    existing = await versions_of(session, code)
    if existing and body.effective_from <= existing[-1].effective_from:
        raise Conflict(
            f"version {existing[-1].version} takes effect on {existing[-1].effective_from}: "
            "a new version must take effect later",
        )
    row = ProcedureVersion(
        code=code,
        version=(existing[-1].version + 1) if existing else 1,
        effective_from=body.effective_from,
        name=body.name,
        name_search=fold(body.name)[:500],
        sector=body.sector,
        receiving_agencies=list(dict.fromkeys(body.receiving_agencies)),
        deciding_agency=body.deciding_agency,
        processing_hours=body.processing_hours,
        cutoff=body.cutoff,
        fee_vnd=body.fee_vnd,
        components=[c.model_dump() for c in body.components],
        online_level=body.online_level,
        created_at=clock.now(),
        created_by=actor,
    )
    session.add(row)
    await session.flush()
    await _emit_procedure(session, row, by)
    return row


async def _emit_procedure(session: AsyncSession, row: ProcedureVersion, by: Actor) -> None:
    await outbox.emit(
        session,
        "procedure.changed",
        ProcedureChanged(
            code=row.code,
            version=row.version,
            effective_from=row.effective_from,
            name=row.name,
            sector=row.sector,
            receiving_agencies=list(row.receiving_agencies),
            deciding_agency=row.deciding_agency,
            processing_hours=Decimal(row.processing_hours),
            actor=by,
        ),
        subject=f"procedure:{row.code}",
    )


def may_receive(agency: str, version: ProcedureVersion) -> bool:
    """An agency's desk receives a procedure only when it is one of the procedure's receiving
    agencies, whatever its place in the tree: a desk that receives for others (the province's
    public administration centre) is listed among them, never implied by being above them."""
    return agency in version.receiving_agencies


# ------------------------------------------------------------------ calendar

_CALENDARS: OrderedDict[tuple[object, ...], WorkingCalendar] = OrderedDict()
# plain columns, not ORM rows, in a query built once: this runs on every request that needs deadlines
_OVERRIDES = select(CalendarOverrideRow.day, CalendarOverrideRow.working, CalendarOverrideRow.reason).order_by(
    CalendarOverrideRow.day
)


def _parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def parse_cutoff(value: str | None) -> time | None:
    return _parse_hhmm(value) if value else None


async def working_calendar(session: AsyncSession, settings: IntakeSettings) -> WorkingCalendar:
    """The calendar with the administrators' overrides as stored now (cached per override set)."""
    rows = await fetch_rows(session, _OVERRIDES)  # a plain read: on PostgreSQL it begins no transaction
    overrides = tuple(CalendarOverride(day=r["day"], working=r["working"], reason=r["reason"]) for r in rows)
    periods = tuple((_parse_hhmm(a), _parse_hhmm(b)) for a, b in settings.office_hours)
    key = (overrides, periods)
    calendar = _CALENDARS.get(key)
    if calendar is None:
        calendar = WorkingCalendar(overrides=overrides, office_hours=periods)
        _CALENDARS[key] = calendar
        while len(_CALENDARS) > 16:
            _CALENDARS.popitem(last=False)
    return calendar


async def put_override(
    session: AsyncSession, day: date, *, working: bool, reason: str, actor: str
) -> CalendarOverrideRow:
    row = await session.get(CalendarOverrideRow, day, with_for_update=True)
    now = clock.now()
    if row is None:
        row = CalendarOverrideRow(day=day, working=working, reason=reason, created_at=now, created_by=actor)
        session.add(row)
    else:
        row.working, row.reason, row.created_at, row.created_by = working, reason, now, actor
    await session.flush()
    return row


# ------------------------------------------------------------------ demo seed


def _conditional(name: str) -> bool:
    """A seed component that applies only in some cases says so in brackets: "(nếu …)"."""
    folded = fold(name)
    return "(neu " in folded or "(khi " in folded


async def seed_demo(session: AsyncSession) -> int:
    """Insert the demo agencies and procedures that are missing; safe to run at every start and
    from several replicas at once. Returns how many rows were added."""
    added = 0
    now = clock.now()
    for seed in catalogue_seed.AGENCIES:
        result = await session.execute(
            insert_ignoring_duplicates(Agency.__table__).values(
                code=seed.code,
                name=seed.name,
                parent_code=organ_id.parent(seed.code),
                level=organ_id.level(seed.code),
                path=agency_path(seed.code),
                active=True,
                version=1,
                updated_at=now,
            )
        )
        if result.rowcount:
            added += 1
            await _emit_agency(session, await get_agency(session, seed.code), SEED_ACTOR)
    for proc in catalogue_seed.PROCEDURES:
        result = await session.execute(
            insert_ignoring_duplicates(ProcedureVersion.__table__).values(
                code=proc.code,
                version=1,
                effective_from=proc.effective_from,
                name=proc.name,
                name_search=fold(proc.name)[:500],
                sector=proc.sector,
                receiving_agencies=[proc.receiving_agency],
                deciding_agency=proc.receiving_agency,
                processing_hours=Decimal(proc.processing_hours),
                cutoff=proc.cutoff.strftime("%H:%M") if proc.cutoff else None,
                fee_vnd=proc.fee_vnd,
                components=[
                    {
                        "name": c.name,
                        "copies": c.copies,
                        "original_required": c.original_required,
                        "required": not _conditional(c.name),
                    }
                    for c in proc.components
                ],
                online_level=str(proc.online_level),
                created_at=now,
                created_by="demo seed",
            )
        )
        if result.rowcount:
            added += 1
            row = (
                await session.execute(
                    select(ProcedureVersion).where(ProcedureVersion.code == proc.code, ProcedureVersion.version == 1)
                )
            ).scalar_one()
            await _emit_procedure(session, row, SEED_ACTOR)
    return added

"""Decision 766 indicators per agency: ``GET /indicators/by-agency`` answers each unit exactly as
the per-unit queries did (kept here as the reference), on SQLite and PostgreSQL, for the demo
flow's dossier alone and for dossiers spread over wards, departments and their nested units,
the province itself, and outside the period; and it costs the same few queries however many
units the agency has."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import case, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.catalogue_seed import (
    AGENCIES,
    CHI_NHANH_VPDKDD_1,
    PHUONG_SAM_SON,
    SO_NONG_NGHIEP_MOI_TRUONG,
    SO_XAY_DUNG,
    VP_DANG_KY_DAT_DAI,
)
from services.intake.endpoints.common import period_start
from services.intake.models import Dossier, DossierComponent
from services.intake.workflow import RUNNING_STATUSES
from shared import clock
from tests.services.intake.harness import (
    PROVINCE,
    WARD,
    Intake,
    birth_registration,
    intake_on,
    pdf_file,
    running_intake,
)

BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("pg", id="pg", marks=pytest.mark.pg)]


async def reference(
    session: AsyncSession, agency: str, period_from: date, period_to: date, weights: dict[str, int]
) -> dict[str, Any]:
    """One agency's subtree as the endpoint computed it before it grouped: four queries of its
    own, the average taken by the database."""
    start, end = period_start(period_from), period_start(period_to + timedelta(days=1))
    in_scope = Dossier.agency_path.startswith(catalogue.agency_path(agency))
    received, online = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(case((Dossier.channel == "online", 1), else_=0)), 0)).where(
                in_scope, Dossier.received_at >= start, Dossier.received_at < end
            )
        )
    ).one()
    on_time, late, average = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((Dossier.finished_on_time.is_(True), 1), else_=0)), 0),
                func.coalesce(func.sum(case((Dossier.finished_on_time.is_(False), 1), else_=0)), 0),
                func.avg(Dossier.hours_used),
            ).where(in_scope, Dossier.finished_at >= start, Dossier.finished_at < end)
        )
    ).one()
    overdue = (
        await session.execute(
            select(func.count()).where(
                in_scope, Dossier.status.in_([int(s) for s in RUNNING_STATUSES]), Dossier.due_at < clock.now()
            )
        )
    ).scalar_one()
    components, digitised = (
        await session.execute(
            select(func.count(DossierComponent.id), func.count(DossierComponent.sha256))
            .join(Dossier, Dossier.id == DossierComponent.dossier_id)
            .where(in_scope, Dossier.received_at >= start, Dossier.received_at < end)
        )
    ).one()

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        "agency": agency,
        "period_from": period_from.isoformat(),
        "period_to": period_to.isoformat(),
        "received": received,
        "received_online": online,
        "online_share": share(online, received),
        "finished_on_time": on_time,
        "finished_late": late,
        "on_time_rate": share(on_time, on_time + late),
        "overdue_now": overdue,
        "average_processing_hours": round(float(average), 2) if average is not None else None,
        "components_total": components,
        "components_digitised": digitised,
        "digitised_components_share": share(digitised, components),
        "weights": weights,
    }


async def by_agency(intake: Intake, agency: str) -> list[dict[str, Any]]:
    r = await intake.client.get("/indicators/by-agency", params={"agency": agency}, headers=intake.as_("leader"))
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def assert_each_as_before(intake: Intake, roots: list[str]) -> None:
    """Every root's by-agency answer, and ``GET /indicators`` of every seeded agency, equal the
    reference's, item by item; units are the root's active direct units by code."""
    weights = dict(intake.settings.indicator_weights)
    async with intake.app.state.runtime.db.sessionmaker() as session:
        for root in roots:
            items = await by_agency(intake, root)
            units = sorted(a.code for a in AGENCIES if a.parent_code == root)
            assert [i["agency"] for i in items] == [root, *units]
            for item in items:
                period = date.fromisoformat(item["period_from"]), date.fromisoformat(item["period_to"])
                assert item == await reference(session, item["agency"], *period, weights)
        for agency in AGENCIES:
            r = await intake.client.get("/indicators", params={"agency": agency.code}, headers=intake.as_("auditor"))
            assert r.status_code == 200, r.text
            period = date.fromisoformat(r.json()["period_from"]), date.fromisoformat(r.json()["period_to"])
            assert r.json() == await reference(session, agency.code, *period, weights)


async def finished(intake: Intake, code: str, patience: float = 10) -> None:
    """Wait (bounded) for intake to apply ``document.issued`` and finish the dossier."""
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        found = await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))
        if found.json()["finished_at"]:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{code} not finished: {found.text}"
        await asyncio.sleep(0.05)


def at(agency: str, procedure: str, components: int, *, files: bool) -> dict[str, Any]:
    return {
        "agency": agency,
        "procedure_code": procedure,
        "applicant": {"full_name": "Lê Thị Lan", "id_number": "038090005678"},
        "components": [
            {"no": n, **({"file": pdf_file(b"%PDF-1.4\n%" + agency.encode() + bytes([n]))} if files else {})}
            for n in range(1, components + 1)
        ],
    }


async def set_dossier(intake: Intake, code: str, **values: Any) -> None:
    async with intake.app.state.runtime.db.sessionmaker() as session:
        await session.execute(update(Dossier).where(Dossier.code == code).values(**values))
        await session.commit()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_demo_flows_dossier_counts_as_before(backend: str, tmp_path: Path) -> None:
    """The demo's one dossier (``lienthong demo``): submitted online at the ward, accepted,
    finished by the issued decision, returned — the province's figures are the ward's."""
    async with intake_on(backend, tmp_path) as intake:
        demo = await intake.submit("citizen", birth_registration(files=True))
        assert (await intake.act("desk_officer", demo["code"], "accept")).status_code == 200
        await intake.issue(demo["code"], 7)
        await finished(intake, demo["code"])
        assert (await intake.act("desk_officer", demo["code"], "return_result")).status_code == 200
        await assert_each_as_before(intake, [PROVINCE])
        province, *units = await by_agency(intake, PROVINCE)
        ward = next(u for u in units if u["agency"] == WARD)
        assert (province["received"], province["received_online"], province["finished_on_time"]) == (1, 1, 1)
        assert {k: ward[k] for k in province if k != "agency"} == {k: province[k] for k in province if k != "agency"}
        assert all(u["received"] == 0 and u["average_processing_hours"] is None for u in units if u is not ward)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_dossiers_across_wards_and_nested_units_count_as_before(backend: str, tmp_path: Path) -> None:
    async with intake_on(backend, tmp_path) as intake:
        await intake.submit("citizen", birth_registration(files=True))
        overdue = await intake.submit("desk_officer", birth_registration(files=True))
        sam_son = await intake.submit("desk_officer", at(PHUONG_SAM_SON, "1.000656", 2, files=False))
        branch = await intake.submit("desk_officer", at(CHI_NHANH_VPDKDD_1, "1.004227", 3, files=True))
        building = await intake.submit("desk_officer", at(SO_XAY_DUNG, "1.009982", 4, files=True))
        at_province = await intake.submit("desk_officer", birth_registration())
        last_month = await intake.submit("desk_officer", at(PHUONG_SAM_SON, "1.000656", 2, files=True))
        now = clock.now()
        await set_dossier(intake, overdue["code"], due_at=now - timedelta(minutes=5))
        await set_dossier(intake, sam_son["code"], finished_at=now, finished_on_time=False, hours_used=Decimal("12.50"))
        await set_dossier(intake, branch["code"], finished_at=now, finished_on_time=True, hours_used=Decimal("3.25"))
        await set_dossier(intake, building["code"], due_at=now - timedelta(days=2))
        # a dossier of the province's own (no unit's): in the province's figures only
        await set_dossier(intake, at_province["code"], agency=PROVINCE, agency_path=catalogue.agency_path(PROVINCE))
        # received before the period, finished in it: finished counts, received does not
        await set_dossier(
            intake,
            last_month["code"],
            received_at=now - timedelta(days=40),
            finished_at=now,
            finished_on_time=True,
            hours_used=Decimal("7.01"),
        )

        await assert_each_as_before(intake, [PROVINCE, SO_NONG_NGHIEP_MOI_TRUONG, VP_DANG_KY_DAT_DAI, WARD])

        province, *units = await by_agency(intake, PROVINCE)
        unit = {u["agency"]: u for u in units}
        assert province["received"] == 6 and province["received_online"] == 1
        assert (province["finished_on_time"], province["finished_late"], province["overdue_now"]) == (2, 1, 2)
        assert province["average_processing_hours"] == round((12.5 + 3.25 + 7.01) / 3, 2)
        # the branch two levels down counts in its department's figures
        assert unit[SO_NONG_NGHIEP_MOI_TRUONG]["received"] == 1
        assert unit[SO_NONG_NGHIEP_MOI_TRUONG]["components_digitised"] == 3
        assert unit[SO_NONG_NGHIEP_MOI_TRUONG]["average_processing_hours"] == 3.25
        assert unit[PHUONG_SAM_SON]["received"] == 1 and unit[PHUONG_SAM_SON]["finished_late"] == 1
        # (12.50 + 7.01) / 2 = 9.755, a tie: SQLite averages in floating point (9.7549…) and
        # PostgreSQL in decimal, as they did when each unit was asked alone
        assert unit[PHUONG_SAM_SON]["average_processing_hours"] == (9.75 if backend == "sqlite" else 9.76)
        assert (unit[WARD]["received"], unit[WARD]["overdue_now"]) == (2, 1)
        assert unit[SO_XAY_DUNG]["overdue_now"] == 1
        assert sum(u["received"] for u in units) == province["received"] - 1  # the province's own


async def test_by_agency_costs_the_same_queries_for_one_unit_or_many(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        await intake.submit("desk_officer", birth_registration(files=True))
        await intake.submit("desk_officer", at(CHI_NHANH_VPDKDD_1, "1.004227", 3, files=True))
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "dossier" in statement or "agency" in statement:
                statements.append(statement)

        engine = intake.app.state.runtime.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            counts = {}
            for root in (PROVINCE, VP_DANG_KY_DAT_DAI):
                statements.clear()
                items = await by_agency(intake, root)
                counts[root] = (len(items), len(statements))
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert counts[PROVINCE][0] > 10 and counts[VP_DANG_KY_DAT_DAI][0] == 2
        # the units, then one grouped query per measure
        assert counts[PROVINCE][1] == counts[VP_DANG_KY_DAT_DAI][1] == 5, counts

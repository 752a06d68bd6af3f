"""Decision 766 indicators (chỉ số đánh giá) of an agency's subtree and of its units' subtrees.

Each measure is one statement whatever the number of units: the agency's whole subtree, then its
dossiers grouped by the unit they fall under, the unit being the first levels of the dossier's
agency path (a unit's path is its subtree's prefix, and units of one level have paths of one
length). One query set per unit made the province dashboard the console's slowest page.

The database still takes every sum and average over the same dossiers as when each unit was asked
on its own, so the figures are the same to the last digit on both backends (adding up units'
averages in Python would not be: SQLite averages in floating point).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import catalogue
from services.intake.endpoints.common import period_start
from services.intake.models import Dossier, DossierComponent
from services.intake.schemas import IndicatorsOut
from services.intake.workflow import RUNNING_STATUSES
from shared import clock

WHOLE = ""  # the key of the whole subtree's row: no unit's path prefix is empty


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def subtree_indicators(
    session: AsyncSession,
    *,
    agency: str,
    units: Sequence[str] = (),
    period_from: date,
    period_to: date,
    weights: Mapping[str, int],
) -> list[IndicatorsOut]:
    """The indicators of ``agency``'s subtree, then of each of ``units``' subtrees (units below
    ``agency`` none of which contains another, e.g. its direct units), each as if asked alone."""
    within = catalogue.agency_path(agency)
    unit_of_path = {catalogue.agency_path(unit): unit for unit in units}
    if any(not path.startswith(within) or path == within for path in unit_of_path):
        raise ValueError(f"units {list(units)} are not all below {agency}")
    start, end = period_start(period_from), period_start(period_to + timedelta(days=1))
    path = Dossier.agency_path
    in_scope = path.startswith(within)
    # a dossier's path cut to the length of each units' paths (there is one length for units of
    # one level), inlined so that PostgreSQL sees the GROUP BY expression in the select list
    unit_keys = [
        func.substr(path, literal(1, literal_execute=True), literal(length, literal_execute=True))
        for length in sorted({len(unit_path) for unit_path in unit_of_path})
    ]

    async def measure(
        *columns: ColumnElement[Any], where: Sequence[ColumnElement[bool]], components: bool = False
    ) -> dict[str, Any]:
        """``columns`` over the whole subtree (key WHOLE) and over each unit (key: its path),
        in one statement; units without dossiers have no row."""

        def over(key: ColumnElement[str]) -> Select[Any]:
            query = select(key.label("unit"), *columns)
            if components:
                query = query.select_from(DossierComponent).join(Dossier, Dossier.id == DossierComponent.dossier_id)
            return query.where(in_scope, *where)

        statement = union_all(over(literal(WHOLE)), *(over(key).group_by(key) for key in unit_keys))
        return {row[0]: row[1:] for row in await session.execute(statement)}

    in_period = [Dossier.received_at >= start, Dossier.received_at < end]
    received = await measure(
        func.count(), func.coalesce(func.sum(case((Dossier.channel == "online", 1), else_=0)), 0), where=in_period
    )
    finished = await measure(
        func.coalesce(func.sum(case((Dossier.finished_on_time.is_(True), 1), else_=0)), 0),
        func.coalesce(func.sum(case((Dossier.finished_on_time.is_(False), 1), else_=0)), 0),
        func.avg(Dossier.hours_used),
        where=[Dossier.finished_at >= start, Dossier.finished_at < end],
    )
    overdue = await measure(
        func.count(),
        where=[Dossier.status.in_([int(s) for s in sorted(RUNNING_STATUSES)]), Dossier.due_at < clock.now()],
    )
    components = await measure(
        func.count(DossierComponent.id), func.count(DossierComponent.sha256), where=in_period, components=True
    )

    answers = []
    for code, key in [(agency, WHOLE), *((unit, catalogue.agency_path(unit)) for unit in units)]:
        got_received, got_online = (int(n) for n in received.get(key, (0, 0)))
        on_time, late, average = finished.get(key, (0, 0, None))
        total_components, digitised = (int(n) for n in components.get(key, (0, 0)))
        answers.append(
            IndicatorsOut(
                agency=code,
                period_from=period_from,
                period_to=period_to,
                received=got_received,
                received_online=got_online,
                online_share=_share(got_online, got_received),
                finished_on_time=int(on_time),
                finished_late=int(late),
                on_time_rate=_share(int(on_time), int(on_time) + int(late)),
                overdue_now=int(overdue.get(key, (0,))[0]),
                average_processing_hours=round(float(average), 2) if average is not None else None,
                components_total=total_components,
                components_digitised=digitised,
                digitised_components_share=_share(digitised, total_components),
                weights=dict(weights),
            )
        )
    return answers

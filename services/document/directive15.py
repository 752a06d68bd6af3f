"""Báo cáo Chỉ thị 15: how far each agency is from handling 100% of its documents electronically.

The target and the date each administrative level must meet it are configuration
(``directive15_target``, ``directive15_levels``, each level with the directive it comes from).
Four shares, for the documents of the period the caller is cleared to see:

- **created**: documents issued or registered whose text is an electronic file in the system;
- **exchanged**: issued documents that reached every recipient electronically (inside the
  deployment, or delivered by edXML), and incoming documents that arrived electronically;
- **processed**: incoming documents whose processing was assigned in the system;
- **signed**: issued documents whose file carries a digital signature.

Only the part of the period from the level's start date counts; before it, nothing is required.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import service as svc
from services.document.config import DocumentSettings
from services.document.models import Assignment, ContentVersion, Document, ExchangeMessage
from shared import organ_id

MEASURES = ("created", "exchanged", "processed", "signed")
MEASURE_TITLES = {
    "created": "Văn bản tạo lập điện tử",
    "exchanged": "Văn bản gửi, nhận điện tử",
    "processed": "Văn bản xử lý trên hệ thống",
    "signed": "Văn bản ký số",
}
TIER_TITLES = {"province": "Cấp tỉnh", "district": "Cấp huyện", "commune": "Cấp xã"}


@dataclass
class Share:
    done: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        self.total += 1
        self.done += int(ok)

    def as_dict(self, target: float) -> dict[str, Any]:
        share = self.done / self.total if self.total else None
        return {
            "done": self.done,
            "total": self.total,
            "share": None if share is None else round(share, 4),
            "gap": None if share is None else round(max(target - share, 0.0), 4),
            "meets_target": None if share is None else share >= target,
        }


@dataclass
class AgencyTally:
    shares: dict[str, Share] = field(default_factory=lambda: {m: Share() for m in MEASURES})


def agencies_in_scope(settings: DocumentSettings, root: str) -> list[str]:
    """The deployment's agencies inside ``root``'s subtree."""
    return sorted(a for a in settings.agencies if organ_id.within(a, root))


async def tally(
    session: AsyncSession,
    settings: DocumentSettings,
    *,
    agencies: list[str],
    start: date,
    end: date,
    clearance: int,
) -> dict[str, AgencyTally]:
    """Count each measure per agency for documents issued or arrived between ``start`` and
    ``end`` (inclusive, Vietnam dates), each agency from its level's start date at the earliest."""
    result: dict[str, AgencyTally] = {a: AgencyTally() for a in agencies}
    windows = []
    for agency in agencies:
        level = settings.directive15_levels.get(settings.agencies[agency].tier)
        begin = max(start, level.starts) if level else start
        if begin > end:
            continue
        low, high = svc.start_of(begin), svc.end_of(end)
        windows.append(
            and_(
                Document.agency == agency,
                or_(
                    and_(Document.direction == "outgoing", Document.issued_at >= low, Document.issued_at < high),
                    and_(Document.direction == "incoming", Document.arrival_date >= low, Document.arrival_date < high),
                ),
            )
        )
    if not windows:
        return result
    rows = (
        await session.execute(
            select(
                Document.id,
                Document.agency,
                Document.direction,
                Document.content_version,
                Document.recipients,
                Document.source_document,
                ContentVersion.signatures,
            )
            .outerjoin(
                ContentVersion,
                and_(ContentVersion.document_id == Document.id, ContentVersion.number == Document.content_version),
            )
            .where(or_(*windows), Document.secrecy_rank <= clearance)
        )
    ).all()
    ids = [r.id for r in rows]
    assigned: set[int] = set()
    delivered: dict[int, set[str]] = defaultdict(set)
    for chunk in range(0, len(ids), 5000):
        part = ids[chunk : chunk + 5000]
        assigned.update(
            (
                await session.execute(select(Assignment.document_id).where(Assignment.document_id.in_(part)).distinct())
            ).scalars()
        )
        for doc_id, partner in (
            await session.execute(
                select(ExchangeMessage.document_id, ExchangeMessage.partner).where(
                    ExchangeMessage.document_id.in_(part),
                    ExchangeMessage.kind == "envelope",
                    ExchangeMessage.state == "delivered",
                )
            )
        ).all():
            delivered[doc_id].add(partner)
    for r in rows:
        shares = result[r.agency].shares
        electronic_file = bool(r.content_version)
        # A recalled copy lost its file on purpose; it arrived electronically all the same.
        shares["created"].add(electronic_file or r.source_document is not None)
        if r.direction == "outgoing":
            shares["signed"].add((r.signatures or 0) > 0)
            recipients = [x.get("organ_id") for x in (r.recipients or [])]
            if recipients:
                shares["exchanged"].add(
                    all(o in settings.agencies or o in delivered.get(r.id, set()) for o in recipients)
                )
        else:
            shares["exchanged"].add(r.source_document is not None)
            shares["processed"].add(r.id in assigned)
    return result


def report(
    settings: DocumentSettings, tallies: dict[str, AgencyTally], *, start: date, end: date, root: str
) -> dict[str, Any]:
    target = settings.directive15_target
    agencies = []
    by_tier: dict[str, dict[str, Share]] = {}
    for agency, t in tallies.items():
        profile = settings.agencies[agency]
        level = settings.directive15_levels.get(profile.tier)
        agencies.append(
            {
                "organ_id": agency,
                "name": profile.name,
                "level": profile.tier,
                "level_name": TIER_TITLES.get(profile.tier, profile.tier),
                "required_from": level.starts if level else None,
                "required_in_period": bool(level and level.starts <= end),
                "measures": {m: t.shares[m].as_dict(target) for m in MEASURES},
            }
        )
        tier = by_tier.setdefault(profile.tier, {m: Share() for m in MEASURES})
        for m in MEASURES:
            tier[m].done += t.shares[m].done
            tier[m].total += t.shares[m].total
    return {
        "agency": root,
        "from": start,
        "to": end,
        "target": target,
        "measures": [{"key": m, "title": MEASURE_TITLES[m]} for m in MEASURES],
        "levels": [
            {
                "level": name,
                "level_name": TIER_TITLES.get(name, name),
                "required_from": lv.starts,
                "reference": lv.reference,
                "note": lv.note,
                "measures": {m: by_tier[name][m].as_dict(target) for m in MEASURES} if name in by_tier else None,
            }
            for name, lv in settings.directive15_levels.items()
        ],
        "agencies": agencies,
    }


CSV_COLUMNS = (
    "organ_id",
    "name",
    "level",
    "required_from",
    "measure",
    "done",
    "total",
    "share",
    "target",
    "gap",
    "meets_target",
)


def csv_rows(data: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    for a in data["agencies"]:
        for m in MEASURES:
            v = a["measures"][m]
            rows.append(
                [
                    a["organ_id"],
                    a["name"],
                    a["level"],
                    a["required_from"].isoformat() if a["required_from"] else "",
                    m,
                    str(v["done"]),
                    str(v["total"]),
                    "" if v["share"] is None else f"{v['share']:.4f}",
                    f"{data['target']:.4f}",
                    "" if v["gap"] is None else f"{v['gap']:.4f}",
                    "" if v["meets_target"] is None else ("yes" if v["meets_target"] else "no"),
                ]
            )
    return rows

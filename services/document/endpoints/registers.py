"""The registers (sổ đăng ký, annex IV of Decree 30): outgoing and incoming, a year at a time, JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import paging
from services.document import service as svc
from services.document.endpoints.common import Session
from services.document.lifecycle import Status
from services.document.models import Assignment, Document
from shared.auth import Caller, allow, current_caller
from shared.errors import problem_responses
from shared.http import StrictRoute

# ``format=csv`` answers the whole year as a spreadsheet; the JSON page is the response model
CSV = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "the register"}}

registers = APIRouter(prefix="/registers", tags=["registers"], route_class=StrictRoute)


OUTGOING_COLUMNS = (
    ("so_ky_hieu", "Số, ký hiệu văn bản"),
    ("ngay_thang", "Ngày tháng văn bản"),
    ("ten_loai_trich_yeu", "Tên loại và trích yếu nội dung"),
    ("nguoi_ky", "Người ký"),
    ("noi_nhan", "Nơi nhận văn bản"),
    ("don_vi_luu", "Đơn vị, người nhận bản lưu"),
    ("so_luong_ban", "Số lượng bản"),
    ("ngay_chuyen", "Ngày chuyển"),
    ("ghi_chu", "Ghi chú"),
)
INCOMING_COLUMNS = (
    ("ngay_den", "Ngày đến"),
    ("so_den", "Số đến"),
    ("tac_gia", "Tác giả"),
    ("so_ky_hieu", "Số, ký hiệu"),
    ("ngay_thang", "Ngày tháng"),
    ("ten_loai_trich_yeu", "Tên loại và trích yếu nội dung"),
    ("don_vi_nguoi_nhan", "Đơn vị hoặc người nhận"),
    ("ngay_chuyen", "Ngày chuyển"),
    ("ghi_chu", "Ghi chú"),
)


def _vn_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = svc.vietnam_today(value)
    return value.strftime("%d/%m/%Y")


def _register_response(
    rows: list[dict[str, str]], columns: tuple[tuple[str, str], ...], fmt: str, name: str, next_: str | None
) -> Any:
    if fmt == "json":
        return {"columns": [{"key": k, "title": t} for k, t in columns], "rows": rows, "next": next_}
    out = io.StringIO()
    out.write("\ufeff")  # so that spreadsheet programs read the Vietnamese as UTF-8
    writer = csv.writer(out)
    writer.writerow([t for _, t in columns])
    for row in rows:
        writer.writerow([row[k] for k, _ in columns])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# A CSV register is the whole year's book; it is read in keyset batches of this size.
_CSV_BATCH = 1000


async def _register_pages(
    session: AsyncSession, query: Select[tuple[Document]], fmt: str, limit: int, cursor: str | None, order: Any
) -> tuple[list[Document], str | None]:
    """One page of a register (JSON), or every entry of the year (CSV), in register order."""
    docs: list[Document] = []
    after = paging.decode(cursor, *order.types) if fmt == "json" else None
    batch = limit if fmt == "json" else _CSV_BATCH
    while True:
        page_query = query if after is None else query.where(order.after(after))
        rows = (await session.execute(page_query.order_by(*order.columns).limit(batch + 1))).scalars().all()
        items, next_ = paging.page(rows, batch, order.key)
        docs.extend(items)
        if fmt == "json" or next_ is None:
            return docs, next_
        after = order.key(items[-1])


class _OutgoingOrder:
    """Sổ văn bản đi: by series, then number."""

    types = (str, int)
    columns = (Document.series_key, Document.code_number)

    @staticmethod
    def key(d: Document) -> tuple[str, int]:
        return (d.series_key or "", d.code_number or 0)

    @staticmethod
    def after(key: tuple[Any, ...]) -> Any:
        return or_(Document.series_key > key[0], and_(Document.series_key == key[0], Document.code_number > key[1]))


class _IncomingOrder:
    """Sổ văn bản đến: by arrival number."""

    types = (int,)
    columns = (Document.arrival_number,)

    @staticmethod
    def key(d: Document) -> tuple[int]:
        return (d.arrival_number or 0,)

    @staticmethod
    def after(key: tuple[Any, ...]) -> Any:
        return Document.arrival_number > key[0]


@registers.get(
    "/outgoing",
    responses={**CSV, **problem_responses(400, 401, 403)},
    **allow("clerk", "leader", "admin", "auditor"),
)
async def outgoing_register(
    agency: str = Query(max_length=13),
    year: int = Query(ge=1900, le=2999),
    format: Literal["json", "csv"] = "json",
    limit: int = Query(default=500, ge=1, le=1000, description="rows per page (JSON; CSV is the whole year)"),
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Any:
    """Sổ đăng ký văn bản đi of one agency and year, in number order: JSON pages
    (``{columns, rows, next}``) or the whole year as CSV."""
    caller.require_agency(agency)
    query = svc.visible_query(caller).where(
        Document.agency == agency,
        Document.direction == "outgoing",
        Document.code_number.is_not(None),
        Document.series_key.like(f"{year}/%"),
    )
    docs, next_ = await _register_pages(session, query, format, limit, cursor, _OutgoingOrder)
    rows = []
    for d in docs:
        rows.append(
            {
                "so_ky_hieu": d.code_text or "",
                "ngay_thang": _vn_date(d.issued_date),
                "ten_loai_trich_yeu": f"{d.type_name}: {d.subject}",
                "nguoi_ky": d.signer_name or "",
                "noi_nhan": "; ".join(r.get("organ_name") or r["organ_id"] for r in d.recipients)
                or "; ".join(d.to_places),
                "don_vi_luu": d.unit_abbr or "",
                "so_luong_ban": "1",
                "ngay_chuyen": _vn_date(d.issued_at),
                "ghi_chu": "Đã thu hồi"
                if d.status == Status.RECALLED
                else ("" if d.status == Status.ISSUED else "Chưa ban hành"),
            }
        )
    return _register_response(rows, OUTGOING_COLUMNS, format, f"so-van-ban-di-{year}", next_)


@registers.get(
    "/incoming",
    responses={**CSV, **problem_responses(400, 401, 403)},
    **allow("clerk", "leader", "admin", "auditor"),
)
async def incoming_register(
    agency: str = Query(max_length=13),
    year: int = Query(ge=1900, le=2999),
    format: Literal["json", "csv"] = "json",
    limit: int = Query(default=500, ge=1, le=1000, description="rows per page (JSON; CSV is the whole year)"),
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> Any:
    """Sổ đăng ký văn bản đến of one agency and year, in arrival-number order: JSON pages
    (``{columns, rows, next}``) or the whole year as CSV."""
    caller.require_agency(agency)
    query = svc.visible_query(caller).where(
        Document.agency == agency,
        Document.direction == "incoming",
        Document.arrival_series == f"{year}/{svc.ARRIVAL_SERIES}",
    )
    docs, next_ = await _register_pages(session, query, format, limit, cursor, _IncomingOrder)
    assigned: dict[int, list[Assignment]] = {}
    if docs:
        rows_a = await session.execute(select(Assignment).where(Assignment.document_id.in_([d.id for d in docs])))
        for a in rows_a.scalars():
            assigned.setdefault(a.document_id, []).append(a)
    rows = []
    for d in docs:
        work = assigned.get(d.id, [])
        rows.append(
            {
                "ngay_den": _vn_date(d.arrival_date),
                "so_den": str(d.arrival_number or ""),
                "tac_gia": d.issuing_organ_name or d.issuing_organ_id or "",
                "so_ky_hieu": d.code_text or "",
                "ngay_thang": _vn_date(d.issued_date),
                "ten_loai_trich_yeu": f"{d.type_name}: {d.subject}",
                "don_vi_nguoi_nhan": "; ".join(a.assignee_name for a in work),
                "ngay_chuyen": _vn_date(min((a.assigned_at for a in work), default=None)),
                "ghi_chu": "; ".join(svc.duplicate_warning(d)) or ("Đã thu hồi" if d.status == Status.RECALLED else ""),
            }
        )
    return _register_response(rows, INCOMING_COLUMNS, format, f"so-van-ban-den-{year}", next_)


ROUTERS = (registers,)

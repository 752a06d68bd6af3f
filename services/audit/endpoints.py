"""Audit's HTTP API (through the gateway at ``/api/audit/…``)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.models import AuditEntry
from services.audit.schemas import EntryOut, EntryPage
from shared.auth import allow
from shared.db import request_session
from shared.errors import problem_responses
from shared.http import StrictRoute

router = APIRouter(prefix="/entries", tags=["audit"], route_class=StrictRoute)
Session = Depends(request_session, scope="function")


@router.get("", response_model=EntryPage, responses=problem_responses(400, 401, 403), **allow("auditor"))
async def list_entries(
    subject: str | None = Query(default=None, max_length=200, description="dossier code, document id…"),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: int | None = Query(default=None, ge=0, description="the `next` of the previous page"),
    session: AsyncSession = Session,
) -> EntryPage:
    """Log entries, oldest first."""
    query = select(AuditEntry).order_by(AuditEntry.index).limit(limit + 1)
    if subject is not None:
        query = query.where(AuditEntry.subject == subject)
    if cursor is not None:
        query = query.where(AuditEntry.index >= cursor)
    rows = (await session.execute(query)).scalars().all()
    items = [
        EntryOut(
            index=r.index,
            source=r.source,
            event_id=r.event_id,
            type=r.type,
            subject=r.subject,
            agency=r.agency,
            time=r.time,
            record=json.loads(r.leaf),
        )
        for r in rows[:limit]
    ]
    return EntryPage(items=items, next=str(rows[limit].index) if len(rows) > limit else None)

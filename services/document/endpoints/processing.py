"""Processing incoming documents: assignments (giao xử lý) with due dates, opinions, the overdue list."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.document import incoming, paging
from services.document import service as svc
from services.document.endpoints.common import STAFF, Session, rows_of_document
from services.document.lifecycle import AssignmentStatus
from services.document.models import Assignment, Comment, Document
from services.document.schemas import (
    AssignIn,
    AssignmentOut,
    AssignmentPage,
    CommentIn,
    CommentOut,
    CommentPage,
)
from shared.auth import Caller, allow, current_caller
from shared.errors import BadRequest, problem_responses
from shared.http import StrictRoute

on_documents = APIRouter(prefix="/documents", tags=["documents"], route_class=StrictRoute)
assignments = APIRouter(prefix="/assignments", tags=["processing"], route_class=StrictRoute)


def _assignment_out(row: Assignment, today: date) -> dict[str, Any]:
    data = {c.key: getattr(row, c.key) for c in Assignment.__table__.columns}
    data["overdue"] = row.status == AssignmentStatus.OPEN and row.due_date < today
    return data


@on_documents.post(
    "/{document_id}/assignments",
    status_code=201,
    response_model=AssignmentOut,
    responses=problem_responses(401, 403, 404, 409),
    **allow("leader"),
)
async def assign(
    document_id: int,
    body: AssignIn,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Assign an incoming document (giao xử lý) with a due date; without one, the urgency's
    configured number of working days from today."""
    doc = await svc.get_visible(session, caller, document_id, lock=True)
    row = await incoming.assign(session, svc.toolkit(request), caller, doc, body)
    return _assignment_out(row, svc.vietnam_today())


@on_documents.get(
    "/{document_id}/assignments",
    response_model=AssignmentPage,
    responses=problem_responses(400, 401, 403, 404),
    **allow(*STAFF),
)
async def document_assignments(
    document_id: int,
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    items, next_ = await rows_of_document(session, caller, document_id, Assignment.id, limit=limit, cursor=cursor)
    today = svc.vietnam_today()
    return {"items": [_assignment_out(r, today) for r in items], "next": next_}


@on_documents.post(
    "/{document_id}/comments",
    status_code=201,
    response_model=CommentOut,
    responses=problem_responses(401, 403, 404),
    **allow(*STAFF),
)
async def add_comment(
    document_id: int, body: CommentIn, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> Comment:
    """An opinion on the document (ý kiến xử lý)."""
    doc = await svc.get_visible(session, caller, document_id)
    row = Comment(
        document_id=doc.id, author=caller.sub, author_name=caller.name, text=body.text, created_at=svc.now_utc()
    )
    session.add(row)
    await session.flush()
    return row


@on_documents.get(
    "/{document_id}/comments",
    response_model=CommentPage,
    responses=problem_responses(400, 401, 403, 404),
    **allow(*STAFF),
)
async def list_comments(
    document_id: int,
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    items, next_ = await rows_of_document(session, caller, document_id, Comment.id, limit=limit, cursor=cursor)
    return {"items": items, "next": next_}


@assignments.get("", response_model=AssignmentPage, responses=problem_responses(400, 401, 403), **allow(*STAFF))
async def list_assignments(
    mine: bool = Query(default=False, description="only those assigned to me"),
    overdue: bool = Query(default=False, description="only open ones past their due date"),
    status: Literal["open", "completed"] | None = None,
    assignee: str | None = Query(default=None, max_length=100, description="user id (sub) of the assignee"),
    document_id: int | None = None,
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
    caller: Caller = Depends(current_caller),
    session: AsyncSession = Session,
) -> dict[str, Any]:
    """Processing work in the caller's agency, soonest due first; ``overdue=true`` is the
    overdue list."""
    today = svc.vietnam_today()
    query = (
        select(Assignment)
        .join(Document, Document.id == Assignment.document_id)
        .where(Document.secrecy_rank <= caller.clearance)
    )
    clause = svc.agency_filter(caller, Assignment.agency)
    if clause is not None:
        query = query.where(clause)
    if mine:
        query = query.where(Assignment.assignee == caller.sub)
    if overdue:
        query = query.where(Assignment.status == AssignmentStatus.OPEN, Assignment.due_date < today)
    elif status:
        query = query.where(Assignment.status == status)
    if assignee:
        query = query.where(Assignment.assignee == assignee)
    if document_id is not None:
        query = query.where(Assignment.document_id == document_id)
    after = paging.decode(cursor, str, int)
    if after:
        try:
            due = date.fromisoformat(after[0])
        except ValueError:
            raise BadRequest("not a cursor this API gave out") from None
        query = query.where(or_(Assignment.due_date > due, and_(Assignment.due_date == due, Assignment.id > after[1])))
    rows = (await session.execute(query.order_by(Assignment.due_date, Assignment.id).limit(limit + 1))).scalars().all()
    items, next_ = paging.page(rows, limit, lambda a: (a.due_date.isoformat(), a.id))
    return {"items": [_assignment_out(r, today) for r in items], "next": next_}


@assignments.post(
    "/{assignment_id}/complete",
    response_model=AssignmentOut,
    responses=problem_responses(401, 403, 404, 409),
    **allow(*STAFF),
)
async def complete_assignment(
    assignment_id: int, caller: Caller = Depends(current_caller), session: AsyncSession = Session
) -> dict[str, Any]:
    """The assignee (or a leader) marks the work done."""
    row = await incoming.complete_assignment(session, caller, assignment_id)
    return _assignment_out(row, svc.vietnam_today())


ROUTERS = (
    on_documents,
    assignments,
)

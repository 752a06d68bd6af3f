"""What every router module of document's HTTP API shares: the request's session, the staff
roles, the document's ETag, a page of a document's own rows."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from services.document import paging
from services.document import service as svc
from services.document.models import Document
from shared.auth import Caller
from shared.db import request_session
from shared.http import etag_for

Session = Depends(request_session, scope="function")
STAFF = svc.STAFF


def etag(response: Response, doc: Document) -> None:
    response.headers["ETag"] = etag_for(doc.version)


async def rows_of_document(
    session: AsyncSession,
    caller: Caller,
    document_id: int,
    key: InstrumentedAttribute[int],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    """A page of a visible document's versions, attachments, comments or assignments, in ``key`` order."""
    doc = await svc.get_visible(session, caller, document_id)
    query = select(key.class_).where(key.class_.document_id == doc.id)
    return await paging.ascending(session, query, key, limit=limit, cursor=cursor)

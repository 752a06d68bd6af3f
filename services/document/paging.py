"""Keyset pages for document's lists: ``limit``, an opaque ``cursor`` and ``next`` in the answer.

A cursor carries the sort key of the last row given (an id, or a date and an id, or a series
and a number), base64url-encoded JSON, so that a page is one index range scan however deep it
is, and rows added meanwhile neither repeat nor shift the pages after them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from fastapi import Query
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from shared.errors import BadRequest

Limit = Query(default=50, ge=1, le=500, description="rows per page")
Cursor = Query(default=None, max_length=200, description="the `next` of the previous page")


def encode(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None, *types: type) -> tuple[Any, ...] | None:
    """The sort key a cursor of ours carries, checked against ``types``; anything else is a 400."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("not a cursor this API gave out") from None
    if not isinstance(values, list) or len(values) != len(types):
        raise BadRequest("not a cursor this API gave out")
    for value, kind in zip(values, types, strict=True):
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadRequest("not a cursor this API gave out")
    return tuple(values)


def page(rows: Sequence[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """The first ``limit`` of ``rows`` (fetched as ``limit + 1``) and the cursor after them."""
    items = list(rows[:limit])
    if len(rows) <= limit:
        return items, None
    last = key(items[-1])
    return items, encode(*(last if isinstance(last, tuple) else (last,)))


async def ascending(
    session: AsyncSession, query: Select[Any], column: InstrumentedAttribute[int], *, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """A page of ``query``'s rows in ascending order of one integer ``column`` (a document's
    versions, attachments, comments…), after ``cursor``."""
    after = decode(cursor, int)
    if after:
        query = query.where(column > after[0])
    rows = (await session.execute(query.order_by(column).limit(limit + 1))).scalars().all()
    return page(rows, limit, lambda row: getattr(row, column.key))

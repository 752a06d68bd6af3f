"""The console's only table: who is logged in. Everything else is read through the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, new_metadata


class Base(ServiceBase):
    __abstract__ = True
    metadata = new_metadata()


class ConsoleSession(Base):
    """A logged-in browser. The cookie holds a random id; only its SHA-256 is stored, so the
    table leaking does not let anyone in. The access token is the user's own (the console acts
    with nothing else)."""

    __tablename__ = "console_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf: Mapped[str] = mapped_column(String(64))
    access_token: Mapped[str] = mapped_column(Text)
    sub: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(300))
    roles: Mapped[list[Any]] = mapped_column(JSON)
    agency: Mapped[str | None] = mapped_column(String(13))
    created_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column(index=True)
    token_expires_at: Mapped[datetime] = mapped_column()

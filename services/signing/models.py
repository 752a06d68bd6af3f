"""Signing's tables: certificates it issued and the signatures it made."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, counter_table, new_metadata
from shared.inbox import inbox_table
from shared.outbox import Outbox


class Base(ServiceBase):
    __abstract__ = True
    metadata = new_metadata()


counters = counter_table(Base.metadata)
inbox = inbox_table(Base.metadata)
outbox = Outbox(Base.metadata, service="signing")


class Certificate(Base):
    """A certificate issued by the local CA to a person (leader) or an organisation (seal)."""

    __tablename__ = "certificate"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(500))
    agency: Mapped[str] = mapped_column(String(13), index=True)
    not_after: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

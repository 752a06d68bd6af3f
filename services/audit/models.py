"""Audit's tables: the append-only log of every event and access record."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, counter_table, new_metadata
from shared.inbox import inbox_table


class Base(ServiceBase):
    __abstract__ = True
    metadata = new_metadata()


counters = counter_table(Base.metadata)
inbox = inbox_table(Base.metadata)


class AuditEntry(Base):
    """One leaf of the log: the canonical JSON of an event or access record."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_audit_entry_subject", "subject"),
        Index("ix_audit_entry_type", "type"),
    )

    index: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(200))
    agency: Mapped[str | None] = mapped_column(String(13))
    actor: Mapped[str | None] = mapped_column(String(200))
    time: Mapped[datetime] = mapped_column()
    leaf: Mapped[bytes] = mapped_column(LargeBinary)

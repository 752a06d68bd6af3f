"""Document's tables: work dossiers (hồ sơ công việc) and, later, documents and registers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, counter_table, new_metadata
from shared.inbox import inbox_table
from shared.outbox import Outbox


class Base(ServiceBase):
    __abstract__ = True
    metadata = new_metadata()


counters = counter_table(Base.metadata)
inbox = inbox_table(Base.metadata)
outbox = Outbox(Base.metadata, service="document")


class WorkFile(Base):
    """Hồ sơ công việc: groups the documents of one matter; file code {OrganId, year, notation}."""

    __tablename__ = "work_file"
    __table_args__ = (UniqueConstraint("organ_id", "file_catalog", "file_notation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organ_id: Mapped[str] = mapped_column(String(13), index=True)
    file_catalog: Mapped[int] = mapped_column(Integer)
    file_notation: Mapped[str] = mapped_column(String(60))
    title: Mapped[str] = mapped_column(String(500))
    dossier_code: Mapped[str | None] = mapped_column(String(30), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="open")
    opened_at: Mapped[datetime] = mapped_column()

"""Intake's tables: dossiers (hồ sơ TTHC) and the shared outbox/inbox/counter tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, counter_table, new_metadata
from shared.inbox import inbox_table
from shared.outbox import Outbox


class Base(ServiceBase):
    __abstract__ = True
    metadata = new_metadata()


counters = counter_table(Base.metadata)
inbox = inbox_table(Base.metadata)
outbox = Outbox(Base.metadata, service="intake")


class Dossier(Base):
    """Hồ sơ thủ tục hành chính: one application by a citizen or business."""

    __tablename__ = "dossier"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(30), unique=True)
    agency: Mapped[str] = mapped_column(String(13), index=True)
    procedure_code: Mapped[str] = mapped_column(String(40))
    status: Mapped[int] = mapped_column(Integer)
    applicant: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column()

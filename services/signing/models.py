"""Signing's tables: the certificates its CA issued (chứng thư số) and the signatures it made —
never a document's content, only its digest."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
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
    """A certificate issued by the local CA to a person (a leader: ``owner`` is their user id)
    or to an organisation (the agency's seal: ``owner`` is empty). The key sits in the token
    under ``signer_id``."""

    __tablename__ = "certificate"
    __table_args__ = (Index("ix_certificate_owner", "owner"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    signer_id: Mapped[str] = mapped_column(String(100), unique=True)
    owner: Mapped[str | None] = mapped_column(String(200))
    full_name: Mapped[str | None] = mapped_column(String(64))
    position: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(500))
    agency: Mapped[str] = mapped_column(String(13), index=True)
    agency_name: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime] = mapped_column()
    not_after: Mapped[datetime] = mapped_column()
    issued_at: Mapped[datetime] = mapped_column()
    issued_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column()
    revocation_reason: Mapped[str | None] = mapped_column(String(40))
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class Signature(Base):
    """One signature made through the service: who, with which certificate, on which bytes."""

    __tablename__ = "signature"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    certificate_serial: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    level: Mapped[str] = mapped_column(String(10))
    signer: Mapped[str] = mapped_column(String(200))
    agency: Mapped[str] = mapped_column(String(13))
    input_sha256: Mapped[str] = mapped_column(String(64))
    output_sha256: Mapped[str] = mapped_column(String(64), index=True)
    input_bytes: Mapped[int] = mapped_column(BigInteger)
    output_bytes: Mapped[int] = mapped_column(BigInteger)
    batch_id: Mapped[str | None] = mapped_column(String(36))
    signed_at: Mapped[datetime] = mapped_column()

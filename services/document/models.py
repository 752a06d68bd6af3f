"""Document's tables: work dossiers (hồ sơ công việc), documents (văn bản đi/đến/dự thảo),
their content versions and attachments, and the processing of incoming documents."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
    closed_at: Mapped[datetime | None] = mapped_column(default=None)


class PublishRequest(Base):
    """A clerk's ``Idempotency-Key`` for publishing a document: the request's hash and, once the
    document is issued, the answer given (a replay gets it again)."""

    __tablename__ = "publish_request"

    caller: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"), index=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column()


class DossierEnding(Base):
    """A one-stop-shop dossier whose matter ended before its work dossier was opened here
    (events reordered by a redelivery): the late opening then closes the work dossier at once."""

    __tablename__ = "dossier_ending"

    dossier_code: Mapped[str] = mapped_column(String(30), primary_key=True)
    agency: Mapped[str] = mapped_column(String(13))
    action: Mapped[str] = mapped_column(String(40))
    ended_at: Mapped[datetime] = mapped_column()


class Document(Base):
    """A văn bản with the annex VI metadata.

    ``direction`` is ``outgoing`` (drafts become outgoing documents when issued) or ``incoming``.
    ``version`` is the ETag: it grows on every change of metadata, content or state.
    """

    __tablename__ = "document"
    __table_args__ = (
        # The number is unique within its series and year (the year is in the series key).
        UniqueConstraint("agency", "series_key", "code_number", name="uq_document_series_number"),
        UniqueConstraint("agency", "arrival_series", "arrival_number", name="uq_document_arrival"),
        UniqueConstraint("agency", "source_document", name="uq_document_source"),
        Index("ix_document_agency_direction", "agency", "direction"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    direction: Mapped[str] = mapped_column(String(10))
    agency: Mapped[str] = mapped_column(String(13))
    status: Mapped[str] = mapped_column(String(20), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    type_key: Mapped[str] = mapped_column(String(20))
    type_name: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(500))
    search_text: Mapped[str] = mapped_column(Text, default="")
    secrecy: Mapped[str] = mapped_column(String(12), default="none")
    secrecy_rank: Mapped[int] = mapped_column(Integer, default=0)
    urgency: Mapped[str] = mapped_column(String(12), default="thuong")
    language: Mapped[str] = mapped_column(String(10), default="vi")
    page_amount: Mapped[int | None] = mapped_column(Integer)
    unit_abbr: Mapped[str | None] = mapped_column(String(20))
    # Number and symbol (số, ký hiệu): assigned by the system for outgoing, as written for incoming.
    series_key: Mapped[str | None] = mapped_column(String(60))
    code_number: Mapped[int | None] = mapped_column(Integer)
    code_text: Mapped[str | None] = mapped_column(String(45))
    code_notation: Mapped[str | None] = mapped_column(String(30))
    issued_date: Mapped[date | None] = mapped_column(Date)
    issuing_organ_id: Mapped[str | None] = mapped_column(String(13))
    issuing_organ_name: Mapped[str | None] = mapped_column(String(200))
    signer_position: Mapped[str | None] = mapped_column(String(100))
    signer_name: Mapped[str | None] = mapped_column(String(100))
    recipients: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    to_places: Mapped[list[str]] = mapped_column(JSON, default=list)
    due_date: Mapped[date | None] = mapped_column(Date)
    notes: Mapped[str | None] = mapped_column(String(500))
    # Incoming: arrival (đến) number per year.
    arrival_series: Mapped[str | None] = mapped_column(String(20))
    arrival_number: Mapped[int | None] = mapped_column(Integer)
    arrival_date: Mapped[datetime | None] = mapped_column()
    duplicate_of: Mapped[list[int]] = mapped_column(JSON, default=list)
    source_document: Mapped[str | None] = mapped_column(String(100))
    # Issue flow
    work_file_id: Mapped[int | None] = mapped_column(ForeignKey("work_file.id"), index=True)
    dossier_code: Mapped[str | None] = mapped_column(String(30), index=True)
    content_version: Mapped[int] = mapped_column(Integer, default=0)
    numbered_at_version: Mapped[int | None] = mapped_column(Integer)
    numbered_at: Mapped[datetime | None] = mapped_column()
    issued_at: Mapped[datetime | None] = mapped_column()
    recalled_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class ContentVersion(Base):
    """One version of a document's main file (PDF); the bytes live in the blob store."""

    __tablename__ = "content_version"
    __table_args__ = (UniqueConstraint("document_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    blob: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(String(200))
    signatures: Mapped[int] = mapped_column(Integer, default=0)
    stage: Mapped[str] = mapped_column(String(20))
    uploaded_by: Mapped[str] = mapped_column(String(100))
    uploaded_at: Mapped[datetime] = mapped_column()


class Attachment(Base):
    """A file travelling with the document (phụ lục, tài liệu kèm theo)."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    blob: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    uploaded_by: Mapped[str] = mapped_column(String(100))
    uploaded_at: Mapped[datetime] = mapped_column()


class Assignment(Base):
    """Giao xử lý: a leader passes an incoming document to a person with a due date."""

    __tablename__ = "assignment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"), index=True)
    agency: Mapped[str] = mapped_column(String(13), index=True)
    assignee: Mapped[str] = mapped_column(String(100), index=True)
    assignee_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(12), default="main")  # main (chủ trì) or support (phối hợp)
    assigned_by: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(String(1000))
    due_date: Mapped[date] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(12), default="open")
    assigned_at: Mapped[datetime] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()


class Comment(Base):
    """Ý kiến xử lý on a document, by someone it was assigned to or a leader."""

    __tablename__ = "comment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"), index=True)
    author: Mapped[str] = mapped_column(String(100))
    author_name: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(String(4000))
    created_at: Mapped[datetime] = mapped_column()


class ExchangeMessage(Base):
    """An edXML message to send to a partner agency, and its delivery state (trạng thái gửi).

    ``kind`` ``envelope`` is one issued document for one recipient (the per-recipient delivery
    state); ``status`` is a status message (``status_code``) about ``document_id`` — an incoming
    document we report on, or our own document we recall. Rows are written in the transaction
    of the change they carry and sent by the exchange worker, retried until the partner answers.
    """

    __tablename__ = "exchange_message"
    __table_args__ = (Index("ix_exchange_message_pending", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    partner: Mapped[str] = mapped_column(String(13))
    exchange_id: Mapped[str] = mapped_column(String(200))
    status_code: Mapped[str | None] = mapped_column(String(2))
    description: Mapped[str | None] = mapped_column(String(500))
    # pending → delivered | rejected (the partner refused it: 4xx) | cancelled | not_sent
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(1000))
    event_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()


class ExchangeStatus(Base):
    """A status message a partner sent about one of our documents (đã đến, vào sổ, …)."""

    __tablename__ = "exchange_status"
    __table_args__ = (UniqueConstraint("document_id", "from_organ_id", "status_code", "timestamp"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"), index=True)
    from_organ_id: Mapped[str] = mapped_column(String(13))
    status_code: Mapped[str] = mapped_column(String(2))
    description: Mapped[str] = mapped_column(String(500), default="")
    staff: Mapped[str] = mapped_column(String(200), default="")
    timestamp: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column()


class ExchangeInbound(Base):
    """An incoming document that arrived by edXML: who sent it, and the last status we reported."""

    __tablename__ = "exchange_inbound"
    __table_args__ = (Index("ix_exchange_inbound_exchange_id", "exchange_id", "sender"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("document.id"), unique=True)
    exchange_id: Mapped[str] = mapped_column(String(200))
    sender: Mapped[str] = mapped_column(String(13))
    reported: Mapped[str] = mapped_column(String(2))
    received_at: Mapped[datetime] = mapped_column()

"""Intake's tables: agencies, the procedure catalogue, calendar overrides, dossiers (hồ sơ TTHC)
with their components, history, due-date changes and hand-offs, and the shared outbox/inbox/counter.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
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


class Agency(Base):
    """Cơ quan (Decision 20/2020/QĐ-TTg identifier): the suite's one source of truth for the
    agency tree.

    Only intake writes this table (admin API, demo seed). Every change is recorded with an
    ``agency.changed`` event in the same transaction, so the other parts learn of the tree by
    consuming that event (each keeps the copy it needs) or read it through ``GET /agencies``;
    none reads this table. The tree's shape follows from the codes themselves
    (``shared.organ_id.parent``), so ``parent_code`` is derived, never chosen.
    """

    __tablename__ = "agency"

    code: Mapped[str] = mapped_column(String(13), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    parent_code: Mapped[str | None] = mapped_column(String(13), index=True)
    level: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(40), index=True)  # "/H56/22/17/", for subtree queries
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column()


class ProcedureVersion(Base):
    """Thủ tục hành chính, one version of it. A dossier keeps the version it was received under;
    the version in force on a day is the latest whose ``effective_from`` is not after that day."""

    __tablename__ = "procedure_version"
    __table_args__ = (UniqueConstraint("code", "version", name="uq_procedure_version_code_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(20), index=True)  # national code, 1.010708
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[date] = mapped_column(Date)
    name: Mapped[str] = mapped_column(String(500))
    name_search: Mapped[str] = mapped_column(String(500))
    sector: Mapped[str] = mapped_column(String(200))
    receiving_agencies: Mapped[list[str]] = mapped_column(JSON)
    deciding_agency: Mapped[str] = mapped_column(String(13))
    processing_hours: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    cutoff: Mapped[str | None] = mapped_column(String(5))  # "15:00"; None: clock starts at once
    fee_vnd: Mapped[int] = mapped_column(Integer)
    components: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    online_level: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(200))


class CalendarOverrideRow(Base):
    """An administrator's decision for one date (swapped working day, extra day off)."""

    __tablename__ = "calendar_override"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    working: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(200))


class Dossier(Base):
    """Hồ sơ thủ tục hành chính: one application by a citizen or business."""

    __tablename__ = "dossier"
    __table_args__ = (
        # an agency's subtree is a prefix of agency_path: pattern ops let PostgreSQL range-scan it
        # whatever the database's collation (and AND it with the applicant's trigram candidates);
        # one agency's dossiers newest first, with the folded name beside them, so that a search
        # in a small subtree walks them without reading the table (applicant_search.walk_page)
        Index(
            "ix_dossier_path_received_applicant",
            "agency_path",
            "received_at",
            "id",
            postgresql_ops={"agency_path": "varchar_pattern_ops"},
            postgresql_include=["applicant_search"],
        ),
        # the lists' order (newest first, keyset cursor on received_at, id), read backwards
        Index("ix_dossier_received", "received_at", "id"),
        Index("ix_dossier_owner_received", "owner", "received_at", "id"),
        Index("ix_dossier_status_due", "status", "due_at"),
        # finding a dossier by its applicant's ID number: an exact look-up (see applicant_search);
        # the name's trigram index is PostgreSQL's own, made in migration 15092952390a
        Index("ix_dossier_applicant_id_number", "applicant_id_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(30), unique=True)
    agency: Mapped[str] = mapped_column(String(13), index=True)
    agency_path: Mapped[str] = mapped_column(String(40))
    procedure_code: Mapped[str] = mapped_column(String(20), index=True)
    procedure_version_id: Mapped[int] = mapped_column(ForeignKey("procedure_version.id"))
    channel: Mapped[str] = mapped_column(String(10))
    status: Mapped[int] = mapped_column(Integer)
    paused_from: Mapped[int | None] = mapped_column(Integer)
    applicant: Mapped[dict[str, Any]] = mapped_column(JSON)
    applicant_search: Mapped[str] = mapped_column(String(500))  # the folded name (applicant_search.py)
    applicant_id_number: Mapped[str | None] = mapped_column(String(20))  # its key: folded letters and digits
    owner: Mapped[str | None] = mapped_column(String(200))  # citizen's token sub (online)
    received_by: Mapped[str | None] = mapped_column(String(200))  # desk officer's name
    received_at: Mapped[datetime] = mapped_column()  # submitted (online) or received (desk)
    accepted_at: Mapped[datetime | None] = mapped_column()
    processing_hours: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    extension_hours: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal(0))
    cutoff: Mapped[str | None] = mapped_column(String(5))
    due_at: Mapped[datetime | None] = mapped_column()  # None: not accepted yet, or paused
    finished_at: Mapped[datetime | None] = mapped_column()
    finished_on_time: Mapped[bool | None] = mapped_column(Boolean)
    hours_used: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    returned_at: Mapped[datetime | None] = mapped_column()
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    lookup_hash: Mapped[str | None] = mapped_column(String(64))  # set when a receipt is issued
    # the printed secret itself, sealed (AES-GCM, key from the settings, bound to the code): a
    # receipt printed again shows the same secret, so the paper one keeps working
    lookup_secret_sealed: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column()


class IssuedResult(Base):
    """A result document issued for a dossier (learnt from ``document.issued``): the only kind
    of result a dossier is finished with. ``applied_at`` is empty while it waits (pending) for
    the dossier to reach a status that allows finishing."""

    __tablename__ = "issued_result"
    __table_args__ = (
        UniqueConstraint("dossier_id", "document_id", name="uq_issued_result_dossier_document"),
        Index("ix_issued_result_pending", "applied_at", "dossier_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossier.id"), index=True)
    document_id: Mapped[int] = mapped_column(Integer)
    number: Mapped[str | None] = mapped_column(String(60))
    summary: Mapped[str | None] = mapped_column(Text)
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    download_path: Mapped[str | None] = mapped_column(String(300))
    issued_at: Mapped[datetime | None] = mapped_column()
    learnt_at: Mapped[datetime] = mapped_column()
    applied_at: Mapped[datetime | None] = mapped_column()


class DossierComponent(Base):
    """Thành phần hồ sơ received: the catalogue's component, copies, and its file if digitised."""

    __tablename__ = "dossier_component"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossier.id"), index=True)
    no: Mapped[int] = mapped_column(Integer)  # position in the procedure version, 0 = extra
    name: Mapped[str] = mapped_column(String(500))
    copies: Mapped[int] = mapped_column(Integer)
    original: Mapped[bool] = mapped_column(Boolean)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(100))
    filename: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column()
    supplement: Mapped[bool] = mapped_column(Boolean, default=False)


class DossierEvent(Base):
    """One step of a dossier's history: a status change (or not, e.g. an extension)."""

    __tablename__ = "dossier_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossier.id"), index=True)
    action: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[int | None] = mapped_column(Integer)
    to_status: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(200))
    actor_name: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class DueDateChange(Base):
    """Every change of a dossier's due date, with why (accepted, paused, resumed, extended)."""

    __tablename__ = "due_date_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossier.id"), index=True)
    at: Mapped[datetime] = mapped_column()
    old_due_at: Mapped[datetime | None] = mapped_column()
    new_due_at: Mapped[datetime | None] = mapped_column()
    cause: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    actor_name: Mapped[str] = mapped_column(String(200))


class Handoff(Base):
    """One line of the tracking sheet (phiếu kiểm soát, form 05): who gave, who took, when, and
    how the receiving step went against its allotted share of the deadline."""

    __tablename__ = "handoff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossier.id"), index=True)
    from_whom: Mapped[str] = mapped_column(String(300))
    to_whom: Mapped[str] = mapped_column(String(300))
    handed_at: Mapped[datetime] = mapped_column()
    allotted_hours: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    step_due_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    used_hours: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    timeliness: Mapped[str | None] = mapped_column(String(10))
    note: Mapped[str | None] = mapped_column(Text)


class IdempotencyRecord(Base):
    """A submission's ``Idempotency-Key``: per caller, the body's hash and the answer given."""

    __tablename__ = "idempotency_key"

    caller: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    dossier_code: Mapped[str | None] = mapped_column(String(30))
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column()

"""Audit's tables: the append-only log (nhật ký kiểm toán), its Merkle nodes, checkpoints, alerts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import ServiceBase, counter_table, new_metadata
from shared.outbox import Outbox

BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(ServiceBase):
    __abstract__ = True
    metadata = new_metadata()


counters = counter_table(Base.metadata)
outbox = Outbox(Base.metadata, service="audit")

# The complete-subtree hashes of the RFC 9162 tree (see merkle.py): written once, never updated.
merkle_node = Table(
    "audit_merkle_node",
    Base.metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
    CheckConstraint("level BETWEEN 0 AND 63", name="level_range"),
    CheckConstraint("idx >= 0", name="idx_range"),
)

# The tree head appenders start from, one row: the size and the frontier hashes (merkle.frontier_keys,
# 32 bytes each, left to right). An append locks it, reads it, and writes it back with the new
# nodes in the same transaction, instead of finding the size with max(idx) and reading the
# frontier nodes; the nodes stay the record proofs are read from, and the self-check compares
# the two.
log_head = Table(
    "audit_log_head",
    Base.metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    CheckConstraint("id = 1", name="one_row"),
    CheckConstraint("size >= 0", name="size_range"),
)


class AuditEntry(Base):
    """One leaf of the log: the exact canonical JSON (RFC 8785) of an event or access record.

    The other columns are copies taken from the leaf for querying; the self-check compares them
    with the leaf, so editing one of them is noticed as well. Indexed are the columns the entries
    API filters on with an equality or a range; ``agency`` is filtered with a LIKE whose pattern
    starts with wildcards for every agency with a subtree, which no B-tree serves, so it has none.
    """

    __tablename__ = "audit_entry"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_audit_entry_subject", "subject"),
        Index("ix_audit_entry_type", "type"),
        Index("ix_audit_entry_actor", "actor"),
        Index("ix_audit_entry_time", "time"),
    )

    index: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(200))
    agency: Mapped[str | None] = mapped_column(String(13))
    actor: Mapped[str | None] = mapped_column(String(200))
    time: Mapped[datetime] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column()
    leaf: Mapped[bytes] = mapped_column(LargeBinary)


class AuditCheckpoint(Base):
    """A signed tree head (C2SP checkpoint note); every one is kept."""

    __tablename__ = "audit_checkpoint"

    size: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()


class TamperAlert(Base):
    """What the self-check found wrong, once per finding (so the alert event is raised once)."""

    __tablename__ = "audit_tamper_alert"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    finding: Mapped[str] = mapped_column(String(100), unique=True)  # "entry:17", "node:3:2", …
    entry_index: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(String(500))
    detected_at: Mapped[datetime] = mapped_column()

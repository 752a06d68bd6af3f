"""The log in the database: the SQL node store, appending records, signing checkpoints.

Appends are serialised: on PostgreSQL by a transaction-scoped advisory lock taken just before the
tree's size is read, on SQLite by the write lock every transaction takes at BEGIN. The primary
key on ``(level, idx)`` is the backstop (a second writer from the same size fails whole).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.canonical import canonical_bytes, leaf_hash
from services.audit.checkpoint import NoteSigner, generate_signer_key, parse_signer_key, sign_checkpoint
from services.audit.config import AuditSettings
from services.audit.merkle import MerkleLog, NodeConflictError, NodeKey
from services.audit.models import AuditCheckpoint, AuditEntry, merkle_node
from shared import clock
from shared.db import insert_ignoring_duplicates
from shared.events import CloudEvent, routing_key_of
from shared.organ_id import is_valid as is_organ_id

APPEND_LOCK = zlib.crc32(b"lienthong-audit-log")
KEY_FILE = "audit-signing.key"
# Bind parameters per statement stay well under asyncpg's 32767 and SQLite's 32766.
_KEYS_PER_SELECT = 4000
# Where the actor may sit in an event's data, first match wins (access records use "actor").
ACTOR_FIELDS = ("actor", "actor_sub", "user", "username", "sub")


class UnknownEventError(ValueError):
    """Not a lienthong event, or a record that has no canonical JSON form."""


class SqlNodeStore:
    """``NodeStore`` over ``audit_merkle_node`` in the caller's session (SQLAlchemy Core)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_many(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
        t = merkle_node
        found: dict[NodeKey, bytes] = {}
        for start in range(0, len(keys), _KEYS_PER_SELECT):
            chunk = keys[start : start + _KEYS_PER_SELECT]
            rows = await self.session.execute(
                select(t.c.level, t.c.idx, t.c.hash).where(tuple_(t.c.level, t.c.idx).in_(chunk))
            )
            for level, idx, value in rows:
                found[(level, idx)] = bytes(value)
        return found

    async def put_many(self, items: list[tuple[NodeKey, bytes]]) -> None:
        rows = [{"level": level, "idx": idx, "hash": value} for (level, idx), value in items]
        if not rows:
            return
        try:
            # executemany of one cached statement: compiling a fresh multi-row VALUES each time
            # costs more than the database's work
            await self.session.execute(insert(merkle_node), rows)
        except IntegrityError as exc:
            raise NodeConflictError("another writer appended from the same tree size") from exc

    async def size(self) -> int:
        t = merkle_node
        value = await self.session.scalar(select(func.max(t.c.idx)).where(t.c.level == 0))
        return 0 if value is None else int(value) + 1


def tree(session: AsyncSession) -> MerkleLog:
    return MerkleLog(SqlNodeStore(session))


async def lock_log(session: AsyncSession) -> None:
    """Serialise appenders until the transaction ends (SQLite already holds its write lock)."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK})


# --- Records --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """An event made ready for the log: its leaf bytes and the columns derived from them."""

    leaf: bytes
    columns: dict[str, Any]


def _text(value: Any, limit: int) -> str:
    # PostgreSQL text cannot hold NUL; the leaf keeps the exact value, the query column need not.
    return str(value).replace("\x00", "")[:limit]


def _actor(data: Any) -> str | None:
    if not isinstance(data, Mapping):
        return None
    for name in ACTOR_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value:
            return _text(value, 200)
        if isinstance(value, Mapping):  # {"actor": {"sub": …, "name": …}}
            inner = value.get("sub") or value.get("id") or value.get("username")
            if isinstance(inner, str) and inner:
                return _text(inner, 200)
    return None


def _utc(moment: datetime) -> datetime:
    # An envelope without a zone is read as UTC, the bus's convention, never as local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def columns_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The query columns of a record, derived from the record alone (capture and self-check)."""
    data = record.get("data")
    agency = record.get("agency")
    if not (isinstance(agency, str) and is_organ_id(agency)) and isinstance(data, Mapping):
        agency = data.get("organ_id") or data.get("agency")
    return {
        "source": _text(record["source"], 200),
        "event_id": _text(record["id"], 100),
        "type": _text(record["type"], 200),
        "subject": _text(record["subject"], 200) if record.get("subject") is not None else None,
        "agency": agency if isinstance(agency, str) and is_organ_id(agency) else None,
        "actor": _actor(data),
        "time": _utc(datetime.fromisoformat(str(record["time"]))),
    }


def record_of(event: CloudEvent) -> Record:
    """The event as the log keeps it; ``UnknownEventError`` for what can never be a leaf."""
    try:
        routing_key_of(event.type)
    except ValueError as exc:
        raise UnknownEventError(str(exc)) from exc
    if len(event.source) > 200 or len(event.id) > 100:
        raise UnknownEventError("source or id longer than the log keeps (200, 100)")
    record = event.model_dump(mode="json", exclude_none=True)
    try:
        leaf = canonical_bytes(record)
    except ValueError as exc:
        raise UnknownEventError(f"no canonical JSON form: {exc}") from exc
    return Record(leaf=leaf, columns=columns_of(record))


async def append_records(session: AsyncSession, records: Sequence[Record]) -> int:
    """Append records as consecutive leaves in the caller's transaction; return the first index."""
    if not records:
        return -1
    await lock_log(session)
    return await _append_locked(session, records)


async def append_new(session: AsyncSession, records: Sequence[Record]) -> list[Record]:
    """Append, in order, the records the log does not hold yet; return them.

    The log's ``UNIQUE(source, event_id)`` is audit's only deduplication (there is no inbox
    table beside it): under the append lock, one indexed look-up finds which of the batch's
    events already have their entry, so a redelivered event adds nothing, whichever replica
    appended it first and however long ago.
    """
    if not records:
        return []
    await lock_log(session)
    entry = AuditEntry.__table__
    keys = list(dict.fromkeys((r.columns["source"], r.columns["event_id"]) for r in records))
    present: set[tuple[str, str]] = set()
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start : start + _KEYS_PER_SELECT]
        found = await session.execute(
            select(entry.c.source, entry.c.event_id).where(tuple_(entry.c.source, entry.c.event_id).in_(chunk))
        )
        present.update((source, event_id) for source, event_id in found)
    fresh: list[Record] = []
    for record in records:
        key = (record.columns["source"], record.columns["event_id"])
        if key not in present:
            present.add(key)  # the same event twice in one batch: the first one counts
            fresh.append(record)
    if fresh:
        await _append_locked(session, fresh)
    return fresh


async def _append_locked(session: AsyncSession, records: Sequence[Record]) -> int:
    first = await tree(session).append_leaf_hashes([leaf_hash(r.leaf) for r in records])
    now = clock.now()
    rows = [
        {"index": first + i, "leaf": r.leaf, "recorded_at": now, **r.columns} for i, r in enumerate(records)
    ]
    await session.execute(insert(AuditEntry.__table__), rows)
    return first


# --- Checkpoints ----------------------------------------------------------------------------------


def load_signer(settings: AuditSettings) -> NoteSigner:
    """The checkpoint signer: the configured key, else (outside production) one kept under var_dir."""
    if settings.signing_key:
        return parse_signer_key(settings.signing_key)
    if settings.environment == "production":
        raise RuntimeError("production needs LIENTHONG_AUDIT_SIGNING_KEY")
    path = Path(settings.var_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        skey, _ = generate_signer_key(settings.log_origin)
        # Created private from the start, and never replaced once written.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(skey + "\n")
    return parse_signer_key(path.read_text().strip())


async def latest_checkpoint(session: AsyncSession) -> AuditCheckpoint | None:
    return await session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))


async def make_checkpoint(session: AsyncSession, signer: NoteSigner) -> AuditCheckpoint | None:
    """Sign the current tree head if it grew since the last checkpoint; return the new one."""
    size, root = await tree(session).head()
    latest = await latest_checkpoint(session)
    if size == 0 or (latest is not None and latest.size >= size):
        return None
    created = clock.now()
    note = sign_checkpoint(signer=signer, origin=signer.name, size=size, root=root)
    await session.execute(
        insert_ignoring_duplicates(AuditCheckpoint.__table__).values(
            size=size, root=root, note=note, created_at=created
        )
    )
    return AuditCheckpoint(size=size, root=root, note=note, created_at=created)


def parse_leaf(leaf: bytes) -> dict[str, Any]:
    return json.loads(leaf)

"""The log in the database: the SQL node store, appending records, signing checkpoints.

Appends are serialised by the head row (``audit_log_head``: size and frontier hashes): an appender
reads it ``FOR UPDATE`` on PostgreSQL (SQLite's transactions already hold the write lock from
BEGIN), appends in memory, and writes the nodes, the entries and the new head in the same
transaction, so whoever holds the lock starts from the head the previous holder committed and a
rolled-back batch leaves the head as it was. The primary key on ``(level, idx)`` is the backstop
(a second writer from the same size fails whole).

At the desk-day mix's rate a batch holds one or two events, and its round trips are its cost.
On PostgreSQL the consumer appends a batch in one statement outside any transaction
(``append_from``), from the head its previous append left: the statement writes only if the head
row is still that head, so the row is the check, not a lock held across round trips. When the
log has moved on (another replica) or holds one of the events, it falls back to the transaction
(``append_new``: BEGIN, the head ``FOR UPDATE`` with the duplicate look-up, one statement writing
nodes, entries and head from unnested arrays, COMMIT — four round trips).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.canonical import HASH_SIZE, canonical_bytes, leaf_hash
from services.audit.checkpoint import NoteSigner, generate_signer_key, parse_signer_key, sign_checkpoint
from services.audit.config import AuditSettings
from services.audit.merkle import CorruptLogError, MerkleLog, NodeConflictError, NodeKey, extend, frontier_keys
from services.audit.models import AuditCheckpoint, AuditEntry, log_head, merkle_node
from shared import clock
from shared.db import Database, insert_ignoring_duplicates
from shared.events import CloudEvent, routing_key_of
from shared.organ_id import is_valid as is_organ_id

KEY_FILE = "audit-signing.key"
# Bind parameters per statement stay well under asyncpg's 32767 and SQLite's 32766.
_KEYS_PER_SELECT = 4000
# Where the actor may sit in an event's data, first match wins (access records use "actor").
ACTOR_FIELDS = ("actor", "actor_sub", "user", "username", "sub")


class UnknownEventError(ValueError):
    """Not a lienthong event, or a record that has no canonical JSON form."""


ENTRY_COLUMNS = ("index", "source", "event_id", "type", "subject", "agency", "actor", "time", "recorded_at", "leaf")
_HEAD = select(log_head.c.size, log_head.c.frontier).where(log_head.c.id == 1).with_for_update()
# PostgreSQL: the batch's keys as two arrays, so the statement (and its plan) is the same
# prepared one for any batch size.
# PostgreSQL: the batch's keys as two arrays, so the statement (and its plan) is the same
# prepared one for any batch size.
_PRESENT_PG = text(
    # two ANY lists rather than a join with unnest(): the planner, guessing 100 rows for unnest,
    # hashes the whole entry table; ANY is an index scan of UNIQUE(source, event_id)
    "SELECT source, event_id FROM audit_entry"
    " WHERE source = ANY(CAST(:sources AS varchar[])) AND event_id = ANY(CAST(:event_ids AS varchar[]))"
)
# The head and the look-up in one round trip: the sub-select reads the statement's snapshot,
# taken before the row lock was granted (see append_new for when that matters).
_HEAD_AND_PRESENT_PG = text(
    "SELECT h.size, h.frontier, (SELECT json_agg(json_build_array(e.source, e.event_id)) FROM audit_entry e"
    " WHERE e.source = ANY(CAST(:sources AS varchar[])) AND e.event_id = ANY(CAST(:event_ids AS varchar[])))"
    " AS present FROM audit_log_head h WHERE h.id = 1 FOR UPDATE OF h"
)
_WRITE_PG = text(
    "WITH nodes AS (INSERT INTO audit_merkle_node (level, idx, hash)"
    " SELECT * FROM unnest(CAST(:levels AS smallint[]), CAST(:idxs AS bigint[]), CAST(:hashes AS bytea[]))),"
    " entries AS (INSERT INTO audit_entry (" + ", ".join(f'"{c}"' for c in ENTRY_COLUMNS) + ")"
    " SELECT * FROM unnest(CAST(:index AS bigint[]), CAST(:source AS varchar[]), CAST(:event_id AS varchar[]),"
    " CAST(:type AS varchar[]), CAST(:subject AS varchar[]), CAST(:agency AS varchar[]), CAST(:actor AS varchar[]),"
    " CAST(:time AS timestamptz[]), CAST(:recorded_at AS timestamptz[]), CAST(:leaf AS bytea[])))"
    " UPDATE audit_log_head SET size = :size, frontier = :frontier WHERE id = 1"
)
# One statement, run outside any transaction (autocommit: no BEGIN, no COMMIT), that appends a
# batch computed from a head the appender remembers: it writes only if the head is still that
# size and none of the batch's events is logged yet, and tells which, and what the head was.
_APPEND_FROM_PG = text(
    "WITH head AS (UPDATE audit_log_head SET size = :size, frontier = :frontier"
    " WHERE id = 1 AND size = :old_size AND frontier = :old_frontier RETURNING size),"
    " nodes AS (INSERT INTO audit_merkle_node (level, idx, hash)"
    " SELECT * FROM unnest(CAST(:levels AS smallint[]), CAST(:idxs AS bigint[]), CAST(:hashes AS bytea[]))"
    " WHERE EXISTS (SELECT 1 FROM head)),"
    " entries AS (INSERT INTO audit_entry (" + ", ".join(f'"{c}"' for c in ENTRY_COLUMNS) + ")"
    " SELECT * FROM unnest(CAST(:index AS bigint[]), CAST(:source AS varchar[]), CAST(:event_id AS varchar[]),"
    " CAST(:type AS varchar[]), CAST(:subject AS varchar[]), CAST(:agency AS varchar[]), CAST(:actor AS varchar[]),"
    " CAST(:time AS timestamptz[]), CAST(:recorded_at AS timestamptz[]), CAST(:leaf AS bytea[]))"
    " WHERE EXISTS (SELECT 1 FROM head))"
    " SELECT (SELECT count(*) FROM head) AS moved, h.size, h.frontier FROM audit_log_head h WHERE h.id = 1"
)


@dataclass(frozen=True)
class Head:
    """The tree head an appender holds: its size and ``frontier_keys(size)``'s hashes."""

    size: int
    frontier: list[bytes]


def _is_postgresql(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


async def lock_head(session: AsyncSession) -> Head:
    """Take the append lock until the transaction ends, and read the head it guards."""
    row = (await session.execute(_HEAD)).first()
    if row is None:
        # A log created before the head row existed, or a database built without migrations.
        await _create_head(session)
        row = (await session.execute(_HEAD)).one()
    return _head_of(int(row.size), bytes(row.frontier))


def _head_of(size: int, packed: bytes) -> Head:
    if len(packed) != HASH_SIZE * size.bit_count():
        raise CorruptLogError(f"the head of size {size} holds {len(packed)} bytes of frontier")
    return Head(size, [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)])


async def _create_head(session: AsyncSession) -> None:
    store = SqlNodeStore(session)
    size = await store.size()
    keys = frontier_keys(size)
    found = await store.get_many(keys)
    if len(found) != len(keys):
        raise CorruptLogError(f"the log of size {size} lacks frontier nodes")
    await session.execute(
        insert_ignoring_duplicates(log_head).values(id=1, size=size, frontier=b"".join(found[k] for k in keys))
    )


async def _write(
    session: AsyncSession, nodes: list[tuple[NodeKey, bytes]], entries: list[dict[str, Any]], head: Head
) -> None:
    """Nodes, entry rows and the new head, all or none (the caller holds the head)."""
    frontier = b"".join(head.frontier)
    try:
        if _is_postgresql(session):
            await session.execute(_WRITE_PG, _write_params(nodes, entries, head))
            return
        # SQLite runs in the process: executemany of one cached statement costs nothing to send
        if nodes:
            await session.execute(
                insert(merkle_node), [{"level": level, "idx": idx, "hash": value} for (level, idx), value in nodes]
            )
        if entries:
            await session.execute(insert(AuditEntry.__table__), entries)
        await session.execute(update(log_head).where(log_head.c.id == 1).values(size=head.size, frontier=frontier))
    except IntegrityError as exc:
        if any(row_key in str(exc.orig) for row_key in ("audit_merkle_node", "pk_audit_merkle_node")):
            raise NodeConflictError("another writer appended from the same tree size") from exc
        raise


def _write_params(nodes: list[tuple[NodeKey, bytes]], entries: list[dict[str, Any]], head: Head) -> dict[str, Any]:
    params: dict[str, Any] = {
        "levels": [level for (level, _), _ in nodes],
        "idxs": [idx for (_, idx), _ in nodes],
        "hashes": [value for _, value in nodes],
        "size": head.size,
        "frontier": b"".join(head.frontier),
    }
    params.update({name: [row[name] for row in entries] for name in ENTRY_COLUMNS})
    return params


class SqlNodeStore:
    """``NodeStore`` over ``audit_merkle_node`` and the head row, in the caller's session."""

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

    async def frontier(self) -> tuple[int, list[bytes]]:
        head = await lock_head(self.session)
        return head.size, head.frontier

    async def extend(self, items: list[tuple[NodeKey, bytes]], size: int, frontier: list[bytes]) -> None:
        await _write(self.session, items, [], Head(size, frontier))

    async def size(self) -> int:
        """The size the stored nodes have (readers use it; appenders read the head)."""
        t = merkle_node
        value = await self.session.scalar(select(func.max(t.c.idx)).where(t.c.level == 0))
        return 0 if value is None else int(value) + 1


def tree(session: AsyncSession) -> MerkleLog:
    return MerkleLog(SqlNodeStore(session))


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
    head = await lock_head(session)
    await _append_locked(session, head, records)
    return head.size


async def append_new(
    session: AsyncSession, records: Sequence[Record], *, look_up_after_lock: bool = True
) -> list[Record]:
    """Append, in order, the records the log does not hold yet; return them.

    The log's ``UNIQUE(source, event_id)`` is audit's only deduplication (there is no inbox
    table beside it): one indexed look-up finds which of the batch's events already have their
    entry, so a redelivered event adds nothing, whichever replica appended it first and however
    long ago.

    With ``look_up_after_lock`` (the default) the look-up runs after the append lock is held, so
    it sees everything the previous holder committed. Without it, on PostgreSQL, the lock and the
    look-up are one statement — one round trip less for every batch — whose look-up cannot see
    an entry committed by the holder it waited for: when that holder had just appended one of
    the same events (a redelivery racing its first delivery), the entry insert fails on the
    unique key, the transaction rolls back whole, and the caller redoes the batch with the
    look-up after the lock (``AuditConsumer.apply_batch``).
    """
    return (await append_new_from_head(session, records, look_up_after_lock=look_up_after_lock))[0]


async def append_new_from_head(
    session: AsyncSession, records: Sequence[Record], *, look_up_after_lock: bool = True
) -> tuple[list[Record], Head | None]:
    """``append_new``, also returning the head it leaves (None when there were no records)."""
    if not records:
        return [], None
    keys = list(dict.fromkeys((r.columns["source"], r.columns["event_id"]) for r in records))
    if not look_up_after_lock and _is_postgresql(session):
        head, present = await _lock_and_look_up(session, keys)
    else:
        head = await lock_head(session)  # first: the look-up must see what the last holder committed
        present = await _present(session, keys)
    fresh: list[Record] = []
    for record in records:
        key = (record.columns["source"], record.columns["event_id"])
        if key not in present:
            present.add(key)  # the same event twice in one batch: the first one counts
            fresh.append(record)
    if fresh:
        head = await _append_locked(session, head, fresh)
    return fresh, head


async def append_from(db: Database, records: Sequence[Record], head: Head) -> tuple[bool, Head]:
    """PostgreSQL: append all ``records`` after ``head``, a head this process remembers, in one
    statement and one round trip, outside any transaction.

    Returns (True, the new head) if they were appended; (False, the head the statement saw) if
    the log had moved on (another appender), to try again from. An event the log holds already
    fails the statement on ``UNIQUE(source, event_id)`` (``IntegrityError``), so a redelivery
    costs a failed try before ``append_new`` looks the batch up — no look-up for every batch.
    One statement is atomic: a crash leaves the log and its head before or after the batch.
    """
    nodes, frontier = extend(head.size, head.frontier, [leaf_hash(r.leaf) for r in records])
    now = clock.now()
    rows = [{"index": head.size + i, "leaf": r.leaf, "recorded_at": now, **r.columns} for i, r in enumerate(records)]
    new = Head(head.size + len(records), frontier)
    params = _write_params(nodes, rows, new)
    params.update(old_size=head.size, old_frontier=b"".join(head.frontier))
    async with db.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        row = (await autocommit.execute(_APPEND_FROM_PG, params)).one()
    if row.moved:
        return True, new
    return False, _head_of(int(row.size), bytes(row.frontier))


async def _lock_and_look_up(session: AsyncSession, keys: list[tuple[str, str]]) -> tuple[Head, set[tuple[str, str]]]:
    params = {"sources": sorted({s for s, _ in keys}), "event_ids": [i for _, i in keys]}
    row = (await session.execute(_HEAD_AND_PRESENT_PG, params)).first()
    if row is None:  # no head row yet: made, under the lock, by the plain path
        return await lock_head(session), await _present(session, keys)
    wanted = set(keys)
    present = row.present or []  # SQLAlchemy's asyncpg dialect decodes json; plain asyncpg would not
    if isinstance(present, str):
        present = json.loads(present)
    found = {(source, event_id) for source, event_id in present}
    return _head_of(int(row.size), bytes(row.frontier)), found & wanted


async def _present(session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (source, event_id) already have their entry."""
    if _is_postgresql(session):
        sources, event_ids = sorted({s for s, _ in keys}), [i for _, i in keys]
        found = await session.execute(_PRESENT_PG, {"sources": sources, "event_ids": event_ids})
        wanted = set(keys)  # the lists pair every source with every id: keep the real pairs
        return {(source, event_id) for source, event_id in found if (source, event_id) in wanted}
    entry = AuditEntry.__table__
    present: set[tuple[str, str]] = set()
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start : start + _KEYS_PER_SELECT]
        found = await session.execute(
            select(entry.c.source, entry.c.event_id).where(tuple_(entry.c.source, entry.c.event_id).in_(chunk))
        )
        present.update((source, event_id) for source, event_id in found)
    return present


async def _append_locked(session: AsyncSession, head: Head, records: Sequence[Record]) -> Head:
    nodes, frontier = extend(head.size, head.frontier, [leaf_hash(r.leaf) for r in records])
    now = clock.now()
    rows = [{"index": head.size + i, "leaf": r.leaf, "recorded_at": now, **r.columns} for i, r in enumerate(records)]
    new = Head(head.size + len(records), frontier)
    await _write(session, nodes, rows, new)
    return new


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

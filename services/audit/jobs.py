"""Audit's background work: signing checkpoints, the integrity self-check, and monitoring.

The self-check recomputes what the log promises from what is stored: each entry's leaf hash
against its level-0 node, the query columns against the leaf, every interior node against its
two children, the head appenders start from against the stored nodes, and the newest
checkpoint's root against the stored tree. A finding is recorded
once, raised as an ``audit.tampered`` event and shown as a metric naming the entry.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from datetime import datetime

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import select

from services.audit.canonical import leaf_hash, node_hash
from services.audit.checkpoint import CheckpointError, NoteSigner, parse_and_verify
from services.audit.config import AuditSettings
from services.audit.merkle import CorruptLogError, frontier_keys
from services.audit.models import AuditCheckpoint, AuditEntry, TamperAlert, log_head, merkle_node, outbox
from services.audit.state import AuditState
from services.audit.store import SqlNodeStore, columns_of, latest_checkpoint, make_checkpoint, tree
from shared import clock
from shared.app import ServiceRuntime
from shared.db import Database, insert_ignoring_duplicates, session_scope
from shared.events import Actor

log = structlog.get_logger("audit")

LOG_SIZE = Gauge("lienthong_audit_log_entries", "entries in the audit log")
NEWEST_EVENT_AGE = Gauge("lienthong_audit_newest_event_age_seconds", "now minus the time of the newest logged event")
INGEST_LAG = Gauge("lienthong_audit_ingest_lag_seconds", "how long the newest logged event took to reach the log")
CHECKPOINT_AGE = Gauge("lienthong_audit_checkpoint_age_seconds", "age of the newest signed checkpoint")
UNCHECKPOINTED = Gauge("lienthong_audit_entries_not_checkpointed", "entries newer than the newest checkpoint")
TAMPERED = Gauge(
    "lienthong_audit_tampered_entry", "1 while the self-check finds this entry (or node) altered", ["finding", "entry"]
)
TAMPER_FINDINGS = Counter("lienthong_audit_tamper_findings_total", "new findings of the integrity self-check")
SELFCHECK_RUNS = Counter("lienthong_audit_selfcheck_runs_total", "integrity self-check runs", ["result"])

SELF_CHECK = Actor.system("the audit log's periodic integrity self-check").model_dump(exclude_none=True)
SELFCHECK_CHUNK = 1024  # a power of two: interior nodes inside a chunk are checked from it alone


# --- Checkpoints ----------------------------------------------------------------------------------


async def checkpoint_once(db: Database, signer: NoteSigner, settings: AuditSettings) -> AuditCheckpoint | None:
    """Sign a checkpoint if enough entries arrived or the oldest unsigned one waited long enough."""
    async with session_scope(db) as session:
        size = await tree(session).size()
        latest = await latest_checkpoint(session)
        signed = latest.size if latest else 0
        if size <= signed:
            return None
        if size - signed < settings.checkpoint_every_entries:
            # the first unsigned entry's arrival is what the time limit is measured from
            waiting_since = await session.scalar(select(AuditEntry.recorded_at).where(AuditEntry.index == signed))
            waited = (clock.now() - waiting_since).total_seconds() if waiting_since else 0.0
            if waited < settings.checkpoint_every_seconds:
                return None
        return await make_checkpoint(session, signer)


async def checkpointer(runtime: ServiceRuntime) -> None:
    settings: AuditSettings = runtime.settings  # type: ignore[assignment]
    pause = min(1.0, settings.checkpoint_every_seconds / 4)
    while True:
        made = await checkpoint_once(runtime.db, AuditState.of(runtime).signer, settings)
        if made:
            log.info("checkpoint_signed", size=made.size)
        await asyncio.sleep(pause)


# --- Self-check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    key: str  # stable name: entry:<i>, node:<level>:<idx>, checkpoint:<size>
    entry_index: int | None
    detail: str


async def check_range(db: Database, start: int, end: int) -> list[Finding]:
    """Check entries ``start``…``end``-1 and the interior nodes wholly inside that range.

    ``start`` is a multiple of ``SELFCHECK_CHUNK``; nodes are checked level by level from the
    stored level below, so a changed node is named itself rather than blamed on its parents.
    """
    findings: list[Finding] = []
    async with db.sessionmaker() as session:
        entries = (
            (await session.execute(select(AuditEntry).where(AuditEntry.index >= start, AuditEntry.index < end)))
            .scalars()
            .all()
        )
        nodes: dict[tuple[int, int], bytes] = {}
        for level in range(SELFCHECK_CHUNK.bit_length()):
            lo, hi = start >> level, end >> level
            if lo >= hi:
                break
            level_rows = await session.execute(
                select(merkle_node.c.idx, merkle_node.c.hash).where(
                    merkle_node.c.level == level, merkle_node.c.idx >= lo, merkle_node.c.idx < hi
                )
            )
            nodes.update(((level, idx), bytes(h)) for idx, h in level_rows)
    seen = set()
    for entry in entries:
        seen.add(entry.index)
        stored = nodes.get((0, entry.index))
        if stored is None:
            findings.append(Finding(f"entry:{entry.index}", entry.index, "no leaf node for this entry"))
        elif leaf_hash(bytes(entry.leaf)) != stored:
            findings.append(Finding(f"entry:{entry.index}", entry.index, "the record no longer matches its leaf hash"))
            continue
        try:
            derived = columns_of(json.loads(entry.leaf))
        except (ValueError, KeyError, TypeError):
            findings.append(Finding(f"entry:{entry.index}", entry.index, "the record is not readable"))
            continue
        changed = [name for name, value in derived.items() if getattr(entry, name) != value]
        if changed:
            findings.append(
                Finding(f"entry:{entry.index}", entry.index, f"columns differ from the record: {', '.join(changed)}")
            )
    for index in range(start, end):
        if index not in seen:
            findings.append(Finding(f"entry:{index}", index, "the entry is missing"))
    for (level, idx), value in sorted(nodes.items()):
        if level == 0:
            continue
        left, right = nodes.get((level - 1, 2 * idx)), nodes.get((level - 1, 2 * idx + 1))
        if left is None or right is None or node_hash(left, right) != value:
            findings.append(
                Finding(
                    f"node:{level}:{idx}",
                    idx << level,
                    f"tree node ({level}, {idx}) over entries {idx << level}…{((idx + 1) << level) - 1} "
                    "does not match its children",
                )
            )
    return findings


async def check_checkpoint(db: Database, signer: NoteSigner) -> list[Finding]:
    """The newest checkpoint still verifies and still matches the stored tree at its size."""
    async with db.sessionmaker() as session:
        latest = await latest_checkpoint(session)
        if latest is None:
            return []
        try:
            checkpoint = parse_and_verify(latest.note, signer.verifier)
            root = await tree(session).root(latest.size)
        except (CheckpointError, CorruptLogError, ValueError) as exc:
            return [Finding(f"checkpoint:{latest.size}", None, f"checkpoint {latest.size}: {exc}"[:500])]
    if checkpoint.size != latest.size or checkpoint.root != bytes(latest.root) or root != checkpoint.root:
        return [
            Finding(
                f"checkpoint:{latest.size}",
                None,
                f"checkpoint {latest.size} (root {base64.b64encode(checkpoint.root).decode()}) "
                "does not match the stored tree",
            )
        ]
    return []


async def check_head(db: Database) -> list[Finding]:
    """The head row (what the next append starts from) names the stored size and its frontier:
    a wrong head would make the next batch fork the tree or leave a gap.

    The stored size is read before the head, so appends committed meanwhile can only have moved
    the head further (it is written with the nodes, in one transaction): a head behind that size
    is wrong, and one ahead of it must have its frontier nodes stored, which never change.
    """
    async with db.sessionmaker() as session:
        store = SqlNodeStore(session)
        stored = await store.size()
        row = (await session.execute(select(log_head.c.size, log_head.c.frontier).where(log_head.c.id == 1))).first()
        if row is None:
            return []  # made, from the nodes, by the next append
        size = int(row.size)
        found = await store.get_many(frontier_keys(size))
    expected = b"".join(found.get(key, b"") for key in frontier_keys(size))
    if size < stored or bytes(row.frontier) != expected:
        return [Finding("head", None, f"the log's head (size {size}) does not match the stored tree (size {stored})")]
    return []


class SelfCheck:
    """Runs over the newest entries and a window rotating over the older ones."""

    def __init__(self, db: Database, signer: NoteSigner, *, window: int) -> None:
        self.db, self.signer = db, signer
        self.window = max(SELFCHECK_CHUNK, window - window % SELFCHECK_CHUNK)
        self.cursor = 0
        self.last_findings: list[Finding] = []
        self.last_run: datetime | None = None

    def _ranges(self, size: int) -> list[tuple[int, int]]:
        if size <= self.window:
            return [(0, size)]
        recent_start = (size - self.window // 2) // SELFCHECK_CHUNK * SELFCHECK_CHUNK
        if self.cursor >= recent_start:
            self.cursor = 0
        older_end = min(recent_start, self.cursor + self.window // 2)
        ranges = [(self.cursor, older_end), (recent_start, size)]
        self.cursor = older_end
        return ranges

    async def run(self) -> list[Finding]:
        async with self.db.sessionmaker() as session:
            size = await tree(session).size()
            findings: list[Finding] = []
        for lo, hi in self._ranges(size):
            for start in range(lo, hi, SELFCHECK_CHUNK):
                findings += await check_range(self.db, start, min(start + SELFCHECK_CHUNK, hi))
        findings += await check_head(self.db)
        findings += await check_checkpoint(self.db, self.signer)
        await self._raise(findings)
        self.last_findings, self.last_run = findings, clock.now()
        SELFCHECK_RUNS.labels("tampered" if findings else "ok").inc()
        return findings

    async def _raise(self, findings: list[Finding]) -> None:
        TAMPERED.clear()
        for f in findings:
            TAMPERED.labels(f.key, "" if f.entry_index is None else str(f.entry_index)).set(1)
        if not findings:
            return
        now = clock.now()
        async with session_scope(self.db) as session:
            for f in findings:
                result = await session.execute(
                    insert_ignoring_duplicates(TamperAlert.__table__).values(
                        finding=f.key, entry_index=f.entry_index, detail=f.detail[:500], detected_at=now
                    )
                )
                if result.rowcount:
                    TAMPER_FINDINGS.inc()
                    log.error("audit_tampered", finding=f.key, entry=f.entry_index, detail=f.detail)
                    await outbox.emit(
                        session,
                        "audit.tampered",
                        {
                            "finding": f.key,
                            "entry_index": f.entry_index,
                            "detail": f.detail[:500],
                            "detected_at": now,
                            "actor": SELF_CHECK,
                        },
                        subject=f"audit-log:{f.key}",
                    )


async def selfcheck_loop(runtime: ServiceRuntime) -> None:
    settings: AuditSettings = runtime.settings  # type: ignore[assignment]
    check = AuditState.of(runtime).selfcheck
    while True:
        await check.run()
        await asyncio.sleep(settings.selfcheck_seconds)


# --- Monitoring -----------------------------------------------------------------------------------


async def measure(runtime: ServiceRuntime) -> dict[str, object]:
    """Lag, checkpoint age and dead letters, set as metrics and returned for /readyz."""
    now = clock.now()
    async with runtime.db.sessionmaker() as session:
        size = await tree(session).size()
        newest = (
            await session.execute(
                select(AuditEntry.time, AuditEntry.recorded_at).order_by(AuditEntry.index.desc()).limit(1)
            )
        ).first()
        latest = await latest_checkpoint(session)
    LOG_SIZE.set(size)
    result: dict[str, object] = {"entries": size}
    if newest:
        age, lag = (now - newest.time).total_seconds(), (newest.recorded_at - newest.time).total_seconds()
        NEWEST_EVENT_AGE.set(age)
        INGEST_LAG.set(max(lag, 0.0))
        result["newest_event_age_seconds"] = round(age, 3)
        result["ingest_lag_seconds"] = round(max(lag, 0.0), 3)
    if latest:
        checkpoint_age = (now - latest.created_at).total_seconds()
        CHECKPOINT_AGE.set(checkpoint_age)
        result["checkpoint_size"] = latest.size
        result["checkpoint_age_seconds"] = round(checkpoint_age, 3)
    UNCHECKPOINTED.set(size - (latest.size if latest else 0))
    result["entries_not_checkpointed"] = size - (latest.size if latest else 0)
    return result


async def monitor(runtime: ServiceRuntime) -> None:
    settings: AuditSettings = runtime.settings  # type: ignore[assignment]
    while True:
        await measure(runtime)
        await asyncio.sleep(settings.monitor_seconds)


async def integrity_detail(runtime: ServiceRuntime) -> object:
    check = AuditState.of(runtime).selfcheck
    if check.last_run is None:
        return "not yet checked"
    if not check.last_findings:
        return {"status": "ok", "checked_at": check.last_run.isoformat()}
    return {
        "status": "tampered",
        "checked_at": check.last_run.isoformat(),
        "findings": [{"finding": f.key, "entry": f.entry_index, "detail": f.detail} for f in check.last_findings[:20]],
    }

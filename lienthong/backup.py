"""Sao lưu và phục hồi: back up every part's database and the blob folders, and restore them.

``python -m lienthong backup --to DIR [--keep N]`` writes ``DIR/lienthong-<UTC time>/``:
one file per database (``pg_dump`` custom format in distributed mode, an SQLite online-backup
copy in embedded mode), ``files/`` with everything else under ``var_dir`` (blobs, keys), a
``manifest.json`` and ``SHA256SUMS`` (``sha256sum -c`` reads it). ``restore FOLDER`` checks the
sums, refuses any database that is not empty, restores, and checks that the restored audit log
still has the root recorded at backup time. Database URLs and ``var_dir`` come from the same
settings the parts read (``LIENTHONG_<PART>_DATABASE_URL``, ``LIENTHONG_DATABASE_URL``…).

The suite keeps running while it is backed up: databases are copied consumers first
(``SNAPSHOT_ORDER``), and on PostgreSQL every snapshot is taken before the first dump. The broker
is not backed up, so a restore has the parts send the events of the last minutes before the backup
again (``REPLAY_MARGIN``); it also points signing's SoftHSM configuration at the restored token.

A suite concern, not audit's (it backs up every part): ``python -m services.audit.backup`` is
kept as an alias of the same commands.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import column, func, inspect, select, table, text, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from services.audit.store import tree
from shared import clock
from shared.db import UtcDateTime
from shared.settings import PARTS, Settings, load_settings

FORMAT = "lienthong-backup/1"
FOLDER_PREFIX = "lienthong-"
SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
SOFTHSM_CONF = "softhsm2.conf"
# How long before the backup started an event may have waited in a queue and still be sent again
# after a restore (see _send_again); far inside the consumers' inbox retention (7 days).
REPLAY_MARGIN = timedelta(minutes=10)


class BackupError(RuntimeError):
    """The backup or restore cannot go on (the message says why)."""


@dataclass(frozen=True)
class Target:
    """One database to back up: the parts using it and where it is."""

    parts: tuple[str, ...]
    url: str

    @property
    def kind(self) -> str:
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"

    @property
    def sqlite_path(self) -> Path:
        return Path(make_url(self.url).database or "")

    @property
    def file_name(self) -> str:
        return f"{'+'.join(self.parts)}.{'sqlite' if self.kind == 'sqlite' else 'pgdump'}"


# Consumers' databases are copied as of a moment no later than their producers': then a consumer
# never holds the effect of an event its producer's copy lacks (audit would keep an entry for a
# dossier code the restored intake hands out again). The other way round — an event in the
# producer's copy, marked sent, not yet applied in the consumer's — is mended at restore by
# sending recent events again (``REPLAY_MARGIN``). Intake and document consume each other's
# events; intake goes first, so what document may hold ahead of intake is a work dossier opened
# for an acceptance (opening one again is a no-op), never a document number intake already shows.
SNAPSHOT_ORDER = ("audit", "notify", "console", "intake", "document", "signing", "gateway")


def _snapshot_rank(target: Target) -> int:
    return min(SNAPSHOT_ORDER.index(p) if p in SNAPSHOT_ORDER else len(SNAPSHOT_ORDER) for p in target.parts)


def part_settings(**overrides: Any) -> dict[str, Settings]:
    """Every part's settings as the part itself would read them (plus ``overrides``)."""
    return {part: load_settings(Settings, part, **overrides) for part in PARTS}


def targets(settings: Mapping[str, Settings]) -> list[Target]:
    """Distinct databases (parts may share one)."""
    by_url: dict[str, list[str]] = {}
    for part, s in settings.items():
        by_url.setdefault(s.resolved_database_url, []).append(part)
    return [Target(tuple(parts), url) for url, parts in by_url.items()]


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password (which goes in the environment, not on argv)."""
    parsed: URL = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    except FileNotFoundError as exc:
        raise BackupError(f"{args[0]} is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise BackupError(f"{args[0]} failed: {exc.stderr.strip()[:500]}") from exc
    return done.stdout


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- Reading a database ---------------------------------------------------------------------------


def _reader(url: str) -> AsyncEngine:
    # A plain engine: the parts' own engine would switch a backup copy to WAL mode on opening it.
    return create_async_engine(url, poolclass=NullPool)


async def row_counts(url: str) -> dict[str, int]:
    """Rows per table (Alembic's version tables included)."""
    engine = _reader(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
            return {
                name: int((await conn.execute(select(func.count()).select_from(table(name)))).scalar_one())
                for name in sorted(names)
            }
    finally:
        await engine.dispose()


async def audit_head(url: str, size: int | None = None) -> tuple[int, str] | None:
    """(size, base64 root) of the audit log in that database; None when it has no log."""
    engine = _reader(url)
    try:
        async with AsyncSession(engine) as session:
            names = await session.run_sync(lambda s: inspect(s.connection()).get_table_names())
            if "audit_merkle_node" not in names:
                return None
            log = tree(session)
            size = await log.size() if size is None else size
            return size, base64.b64encode(await log.root(size)).decode()
    finally:
        await engine.dispose()


async def _dump_postgresql(jobs: list[tuple[str, Path]]) -> list[tuple[dict[str, int], tuple[int, str] | None]]:
    """``pg_dump`` of each database, and its row counts and audit head read in the dump's own
    snapshot: a backup taken under load describes exactly what it holds, so a restore can be
    checked against it row for row.

    Every snapshot is taken before the first dump starts, in ``jobs``' order (consumers first, see
    ``SNAPSHOT_ORDER``), so the databases are copied as of nearly one moment instead of one after
    the other while the suite keeps writing."""
    engines = [_reader(url) for url, _ in jobs]
    sessions = [AsyncSession(engine) for engine in engines]
    try:
        snapshots = []
        for session in sessions:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            snapshots.append((await session.execute(text("SELECT pg_export_snapshot()"))).scalar_one())
        done = []
        for (url, out), session, snapshot in zip(jobs, sessions, snapshots, strict=True):
            libpq, env = _libpq(url)
            args = [
                "pg_dump",
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--snapshot={snapshot}",
                "--file",
                str(out),
                libpq,
            ]
            try:
                dump = await asyncio.create_subprocess_exec(
                    *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
                )
            except FileNotFoundError as exc:
                raise BackupError("pg_dump is not installed") from exc
            try:
                names = await session.run_sync(lambda s: inspect(s.connection()).get_table_names())
                rows = {
                    name: int((await session.execute(select(func.count()).select_from(table(name)))).scalar_one())
                    for name in sorted(names)
                }
                head = None
                if "audit_merkle_node" in names:
                    log = tree(session)
                    size = await log.size()
                    head = (size, base64.b64encode(await log.root(size)).decode())
            finally:
                # the snapshot lives as long as this transaction: pg_dump must be done first
                _, errors = await dump.communicate()
            if dump.returncode:
                raise BackupError(f"pg_dump failed: {errors.decode(errors='replace').strip()[:500]}")
            done.append((rows, head))
        return done
    finally:
        for session in sessions:
            await session.close()
        for engine in engines:
            await engine.dispose()


def _async_url(target: Target, path: Path | None = None) -> str:
    return f"sqlite+aiosqlite:///{path}" if path is not None else target.url


# --- Backup ---------------------------------------------------------------------------------------


def _sqlite_backup(source: Path, destination: Path) -> None:
    """SQLite's online backup: a consistent copy while the part keeps writing."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(destination)
    try:
        with dst:
            src.backup(dst)
        # The copy is a file at rest: no WAL, so reading it later leaves no side files behind.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        src.close()
        dst.close()


def _files_to_copy(var_dir: Path, skip: set[Path]) -> Iterable[Path]:
    if not var_dir.is_dir():
        return
    for path in sorted(var_dir.rglob("*")):
        resolved = path.resolve()
        if any(resolved == s or s in resolved.parents for s in skip):
            continue
        if path.is_file() and not path.is_symlink():
            yield path


def backup(
    root: Path, *, settings: Mapping[str, Settings] | None = None, keep: int | None = None, now: datetime | None = None
) -> Path:
    """Write a dated backup folder under ``root``; return it."""
    settings = settings or part_settings()
    var_dir = Path(next(iter(settings.values())).var_dir).resolve()
    stamp = (now or clock.now()).strftime("%Y%m%dT%H%M%SZ")
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{FOLDER_PREFIX}{stamp}"
    work = root / f".{FOLDER_PREFIX}{stamp}.partial"
    if final.exists():
        raise BackupError(f"{final} already exists")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    manifest: dict[str, Any] = {"format": FORMAT, "created_at": clock.now().isoformat(), "databases": [], "files": []}
    skip = {root.resolve(), work.resolve()}
    try:
        dumps: list[tuple[dict[str, Any], Target]] = []
        for target in sorted(targets(settings), key=_snapshot_rank):
            out = work / target.file_name
            entry: dict[str, Any] = {
                "parts": list(target.parts),
                "kind": target.kind,
                "file": target.file_name,
                "database": make_url(target.url).render_as_string(hide_password=True),
            }
            if target.kind == "sqlite":
                source = target.sqlite_path
                skip.update(Path(str(source.resolve()) + side) for side in ("", *_SQLITE_SIDE_FILES))
                if not source.exists():
                    continue  # this part never ran here: nothing to keep
                _sqlite_backup(source, out)
                counted = _async_url(target, out)
                entry["rows"] = asyncio.run(row_counts(counted))
                entry["audit"] = _head_entry(asyncio.run(audit_head(counted)))
            else:
                dumps.append((entry, target))
            manifest["databases"].append(entry)
        dumped = asyncio.run(_dump_postgresql([(t.url, work / t.file_name) for _, t in dumps])) if dumps else []
        for (entry, _), (rows, head) in zip(dumps, dumped, strict=True):
            entry["rows"], entry["audit"] = rows, _head_entry(head)
        for entry in manifest["databases"]:
            if entry["audit"] is None:
                del entry["audit"]
        for path in _files_to_copy(var_dir, skip):
            relative = path.relative_to(var_dir)
            copy = work / "files" / relative
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
            manifest["files"].append(str(relative))
        sums = {str(p.relative_to(work)): sha256_of(p) for p in sorted(work.rglob("*")) if p.is_file()}
        manifest["sha256"] = sums
        (work / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        sums[MANIFEST] = sha256_of(work / MANIFEST)
        (work / SUMS).write_text(
            "".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())), encoding="utf-8"
        )
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if keep:
        prune(root, keep=keep)
    return final


def _head_entry(head: tuple[int, str] | None) -> dict[str, Any] | None:
    return {"size": head[0], "root": head[1]} if head else None


def prune(root: Path, *, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest backup folders under ``root``."""
    folders = sorted(p for p in root.glob(f"{FOLDER_PREFIX}*") if p.is_dir())
    doomed = folders[:-keep] if keep > 0 else []
    for folder in doomed:
        shutil.rmtree(folder)
    return doomed


# --- Verify and restore ---------------------------------------------------------------------------


def verify(folder: Path) -> dict[str, Any]:
    """Check every file against SHA256SUMS; return the manifest."""
    sums_file = folder / SUMS
    if not sums_file.exists():
        raise BackupError(f"{folder} has no {SUMS}: not a finished backup")
    listed: dict[str, str] = {}
    for line in sums_file.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {SUMS}
    if present - set(listed):
        raise BackupError(f"files not in {SUMS}: {sorted(present - set(listed))[:5]}")
    for name, digest in listed.items():
        path = folder / name
        if not path.exists():
            raise BackupError(f"{name} is missing from the backup")
        if sha256_of(path) != digest:
            raise BackupError(f"{name} does not match its SHA-256 sum: the backup is damaged")
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def _pg_is_empty(url: str) -> bool:
    libpq, env = _libpq(url)
    out = _run(["psql", libpq, "-Atc", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"], env)
    return out.strip() == "0"


def _sqlite_is_empty(path: Path) -> bool:
    if not path.exists():
        return True
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] == 0


def restore(
    folder: Path, *, settings: Mapping[str, Settings] | None = None, parts: Iterable[str] | None = None
) -> dict[str, Any]:
    """Restore a verified backup into empty databases and ``var_dir``; return what was restored."""
    manifest = verify(folder)
    settings = settings or part_settings()
    wanted = set(parts) if parts else set(PARTS)
    var_dir = Path(next(iter(settings.values())).var_dir)
    plan: list[tuple[dict[str, Any], Target]] = []
    for entry in manifest["databases"]:
        chosen = [p for p in entry["parts"] if p in wanted]
        if not chosen:
            continue
        urls = {settings[p].resolved_database_url for p in chosen}
        if len(urls) != 1:
            raise BackupError(f"parts {chosen} shared one database when backed up but not now")
        target = Target(tuple(chosen), urls.pop())
        expected = "sqlite" if entry["kind"] == "sqlite" else "postgresql"
        if target.kind != expected:
            raise BackupError(f"{entry['file']} is a {expected} backup but {chosen} now use {target.kind}")
        empty = _sqlite_is_empty(target.sqlite_path) if target.kind == "sqlite" else _pg_is_empty(target.url)
        if not empty:
            raise BackupError(f"the database of {', '.join(chosen)} is not empty: restore only into empty ones")
        plan.append((entry, target))
    # Every check passes before anything is written.
    for name in manifest["files"]:
        existing = var_dir / name
        if existing.exists() and sha256_of(existing) != manifest["sha256"][f"files/{name}"]:
            raise BackupError(f"{existing} exists with other content; not overwriting it")
    report: dict[str, Any] = {"databases": {}, "files": 0}
    for entry, target in plan:
        source = folder / entry["file"]
        if target.kind == "sqlite":
            target.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            for side in _SQLITE_SIDE_FILES:
                Path(str(target.sqlite_path) + side).unlink(missing_ok=True)
            _sqlite_backup(source, target.sqlite_path)
        else:
            libpq, env = _libpq(target.url)
            _run(
                ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--dbname", libpq, str(source)], env
            )
        counts = asyncio.run(row_counts(target.url))
        if "rows" in entry and counts != entry["rows"]:
            differ = sorted(t for t in {*counts, *entry["rows"]} if counts.get(t) != entry["rows"].get(t))
            raise BackupError(f"the restored {', '.join(target.parts)} rows differ from the backup's in {differ}")
        result: dict[str, Any] = {"rows": counts}
        since = datetime.fromisoformat(manifest["created_at"]) - REPLAY_MARGIN
        replayed = asyncio.run(_send_again(target.url, since))
        if replayed is not None:
            result["events_sent_again"] = replayed
        if "audit" in entry:
            size, root = entry["audit"]["size"], entry["audit"]["root"]
            head = asyncio.run(audit_head(target.url, size))
            if head is None or head[1] != root:
                raise BackupError(f"the restored audit log does not have root {root} at size {size}")
            result["audit"] = {"size": size, "root": root, "verified": True}
        report["databases"]["+".join(target.parts)] = result
    for name in manifest["files"]:
        destination = var_dir / name
        if not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / "files" / name, destination)
            if destination.name == SOFTHSM_CONF:
                _point_token_here(destination)
        report["files"] += 1
    return report


async def _send_again(url: str, since: datetime) -> int | None:
    """Mark the outbox's events sent from ``since`` on as unsent, so that the part's relay
    publishes them again on the restored broker; None when the database has no outbox.

    The broker is not in the backup: an event sent shortly before the copy and still in a queue
    then, or applied by its consumer after the consumer's copy was taken, would be lost. Every
    consumer drops what it has applied already (inbox, audit's unique key), so sending again is
    safe."""
    engine = _reader(url)
    try:
        async with engine.begin() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
            if "outbox" not in names:
                return None
            outbox = table("outbox", column("sent_at", UtcDateTime()))
            done = await conn.execute(update(outbox).where(outbox.c.sent_at >= since).values(sent_at=None))
            return int(done.rowcount)
    finally:
        await engine.dispose()


def _point_token_here(conf: Path) -> None:
    """SoftHSM's configuration names its token folder by absolute path, the one it had where the
    backup was taken: point it at the restored ``tokens/`` beside it, or signing would open the
    old machine's token (or none)."""
    lines = conf.read_text(encoding="utf-8").splitlines()
    fixed = [
        f"directories.tokendir = {(conf.parent / 'tokens').resolve()}"
        if line.strip().startswith("directories.tokendir")
        else line
        for line in lines
    ]
    conf.write_text("\n".join(fixed) + "\n", encoding="utf-8")


# --- Command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lienthong", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("backup", help="back up every part's database and var_dir's files")
    make.add_argument("--to", required=True, type=Path, help="folder holding the dated backups")
    make.add_argument("--keep", type=int, default=None, help="keep only this many newest backups")
    check = sub.add_parser("verify", help="check a backup folder against its SHA-256 sums")
    check.add_argument("folder", type=Path)
    back = sub.add_parser("restore", help="restore a backup folder into empty databases")
    back.add_argument("folder", type=Path)
    back.add_argument("--parts", help="comma-separated parts (default: all)")
    args = parser.parse_args(argv)
    try:
        if args.command == "backup":
            print(backup(args.to, keep=args.keep))
        elif args.command == "verify":
            manifest = verify(args.folder)
            print(f"OK: {len(manifest['sha256'])} files match their sums")
        else:
            parts = args.parts.split(",") if args.parts else None
            print(json.dumps(restore(args.folder, parts=parts), indent=2))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

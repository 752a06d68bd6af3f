"""Backups restore: the restore drill compares row counts and the audit root, embedded and on PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lienthong.backup import BackupError, audit_head, backup, part_settings, prune, restore, row_counts, verify
from services.audit.app import MIGRATIONS
from services.audit.canonical import canonical_bytes
from services.audit.store import Record, append_records, columns_of
from shared.db import Database, session_scope
from shared.migrations import upgrade_async
from shared.settings import PARTS
from tests import suites
from tests.servers import temporary_databases, temporary_vhost
from tests.services.audit.running import event, running_audit

ROOT = Path(__file__).resolve().parents[3]
SQLITE = "sqlite+aiosqlite:///{var_dir}/{service}.sqlite"


def settings_for(var_dir: Path, **urls: str) -> dict:
    settings = part_settings(var_dir=var_dir, database_url=SQLITE)
    for part, url in urls.items():
        settings[part] = settings[part].model_copy(update={"database_url": url})
    return settings


def add_other_parts(var_dir: Path) -> None:
    """Another part's database and a blob, as the other parts would leave them."""
    with sqlite3.connect(var_dir / "intake.sqlite") as db:
        db.execute("CREATE TABLE dossier (code TEXT PRIMARY KEY, applicant TEXT)")
        db.executemany("INSERT INTO dossier VALUES (?, ?)",
                       [(f"000.00.12.H56-260101-{i:04d}", "Nguyễn Thị Hồng Nhung") for i in range(17)])
    blob = var_dir / "blobs" / "document" / "ab" / "quyet-dinh-12.pdf"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)


async def test_restore_drill_embedded(tmp_path: Path) -> None:
    source, target, store = tmp_path / "var", tmp_path / "restored", tmp_path / "backups"
    source.mkdir()
    add_other_parts(source)
    async with running_audit(source) as audit:
        await audit.publish([event("dossier.received", subject=f"d-{i}", actor="u") for i in range(60)])
        for _ in range(100):
            r = await audit.client.get("/checkpoints/latest")
            if r.status_code == 200 and r.json()["size"] == 60:
                break
            await asyncio.sleep(0.1)
        checkpoint = r.json()
        # taken while the part runs: SQLite's online backup
        folder = await asyncio.to_thread(backup, store, settings=settings_for(source))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert folder.name.startswith("lienthong-") and {d["file"] for d in manifest["databases"]} == {
        "audit.sqlite", "intake.sqlite"}
    assert "blobs/document/ab/quyet-dinh-12.pdf" in manifest["files"] and "audit-signing.key" in manifest["files"]
    # sha256sum itself accepts the sums file
    check = await asyncio.to_thread(subprocess.run, ["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=folder,
                                    capture_output=True)
    assert check.returncode == 0, check.stdout

    report = await asyncio.to_thread(restore, folder, settings=settings_for(target))
    for part in ("audit", "intake"):
        before = await row_counts(SQLITE.format(var_dir=source, service=part))
        after = await row_counts(SQLITE.format(var_dir=target, service=part))
        assert before == after == report["databases"][part]["rows"]
    assert (await row_counts(SQLITE.format(var_dir=target, service="audit")))["audit_entry"] == 60
    head = await audit_head(SQLITE.format(var_dir=target, service="audit"))
    assert head == (60, checkpoint["root"]) and report["databases"]["audit"]["audit"]["verified"]
    assert (target / "blobs/document/ab/quyet-dinh-12.pdf").read_bytes() == (
        source / "blobs/document/ab/quyet-dinh-12.pdf").read_bytes()

    # the restored part runs on: same key, same checkpoints, and the log keeps growing consistently
    async with running_audit(target) as audit:
        assert (await audit.client.get("/checkpoints/latest")).json()["note"] == checkpoint["note"]
        await audit.publish([event("dossier.received", subject="after-restore")])
        for _ in range(100):
            r = await audit.client.get("/proofs/consistency", params={"old": 60})
            if r.status_code == 200 and r.json()["new_size"] == 61:
                break
            await asyncio.sleep(0.1)
        assert r.json()["new_size"] == 61

    # restoring again over the now non-empty databases is refused
    with pytest.raises(BackupError, match="not empty"):
        await asyncio.to_thread(restore, folder, settings=settings_for(target))


async def test_a_damaged_backup_is_refused_and_old_backups_are_pruned(tmp_path: Path) -> None:
    source = tmp_path / "var"
    source.mkdir()
    add_other_parts(source)
    store = tmp_path / "backups"
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    folders = [await asyncio.to_thread(backup, store, settings=settings_for(source), now=start + timedelta(days=d))
               for d in range(3)]
    assert verify(folders[0])["format"] == "lienthong-backup/1"
    blob = folders[0] / "files/blobs/document/ab/quyet-dinh-12.pdf"
    blob.write_bytes(blob.read_bytes()[:-1] + b"X")
    with pytest.raises(BackupError, match="quyet-dinh-12.pdf does not match"):
        await asyncio.to_thread(restore, folders[0], settings=settings_for(tmp_path / "elsewhere"))
    assert not (tmp_path / "elsewhere" / "intake.sqlite").exists()
    assert prune(store, keep=2) == [folders[0]]
    assert sorted(p.name for p in store.iterdir()) == [f.name for f in folders[1:]]
    # the command line: the suite's command, and the old name kept as an alias
    for command in (["lienthong"], ["services.audit.backup"]):
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", *command, "verify", str(folders[2])],
                                       capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0 and done.stdout.startswith("OK"), (command, done.stderr)


@pytest.mark.pg
async def test_restore_drill_postgresql(tmp_path: Path) -> None:
    with temporary_databases(["audit", "restored"]) as urls:
        await upgrade_async(MIGRATIONS, urls["audit"], service="audit")
        db = Database(urls["audit"])
        try:
            for batch in range(3):
                records = []
                for i in range(100):
                    record = event("dossier.received", subject=f"pg-{batch}-{i}").model_dump(mode="json",
                                                                                               exclude_none=True)
                    records.append(Record(leaf=canonical_bytes(record), columns=columns_of(record)))
                async with session_scope(db) as session:
                    await append_records(session, records)
        finally:
            await db.dispose()
        folder = await asyncio.to_thread(backup, tmp_path / "backups",
                                         settings=settings_for(tmp_path / "var", audit=urls["audit"]))
        manifest = json.loads((folder / "manifest.json").read_text())
        [entry] = [d for d in manifest["databases"] if d["kind"] == "postgresql"]
        assert entry["file"] == "audit.pgdump" and entry["audit"]["size"] == 300
        report = await asyncio.to_thread(restore, folder,
                                         settings=settings_for(tmp_path / "var2", audit=urls["restored"]))
        counts = report["databases"]["audit"]["rows"]
        assert await row_counts(urls["restored"]) == await row_counts(urls["audit"]) == counts
        assert await audit_head(urls["restored"]) == await audit_head(urls["audit"])
        with pytest.raises(BackupError, match="not empty"):
            await asyncio.to_thread(restore, folder, settings=settings_for(tmp_path / "var3", audit=urls["restored"]))


# --- The drill in distributed mode -----------------------------------------------------------------


def _submission(n: int) -> dict:
    from tests.e2e.test_main_flow import WARD, pdf

    content = base64.b64encode(pdf(["ĐƠN ĐĂNG KÝ KHAI SINH", f"Hồ sơ số {n}"])).decode()
    return {
        "agency": WARD,  # where khai sinh is received
        "procedure_code": "1.001193",
        "applicant": {"full_name": f"Nguyễn Thị Hồng Nhung {n}", "address": "Phường Hạc Thành, tỉnh Thanh Hóa"},
        "components": [
            {"no": no, "file": {"filename": f"tp-{no}.pdf", "content_type": "application/pdf",
                                "content_base64": content}}
            for no in (1, 2)
        ],
    }


@pytest.mark.pg
@pytest.mark.amqp
async def test_restore_drill_distributed_under_load(tmp_path: Path) -> None:
    """Back up the running suite while citizens submit, restore onto fresh databases, start the
    suite there: every database has the rows and the audit log the root the backup recorded, and
    a dossier received before the backup goes on through intake and document."""
    store = tmp_path / "backups"
    for name in ("before", "after"):
        (tmp_path / name).mkdir()
    async with suites.distributed(tmp_path / "before") as running:
        citizen = await running.auth("citizen")
        async with running.client() as api:
            early = await api.post("/api/intake/dossiers", headers=citizen, json=_submission(0))
            assert early.status_code == 201, early.text
            code = early.json()["code"]
            stop = asyncio.Event()
            submitted = []

            async def load() -> None:
                n = 1
                while not stop.is_set():
                    r = await api.post("/api/intake/dossiers", headers=citizen, json=_submission(n))
                    assert r.status_code == 201, r.text
                    submitted.append(r.json()["code"])
                    n += 1

            task = asyncio.create_task(load())
            while len(submitted) < 3:
                await asyncio.sleep(0.05)
            made = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "lienthong", "backup", "--to", str(store)],
                env=running.env, cwd=ROOT, capture_output=True, text=True,
            )
            during = len(submitted)
            stop.set()
            await task
        assert made.returncode == 0, made.stderr
        assert len(submitted) > 3 and during > 3  # the backup ran while submissions went on
    [folder] = list(store.iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {p for d in manifest["databases"] for p in d["parts"]} == set(PARTS)

    ports = dict(zip(PARTS, suites.free_ports(len(PARTS)), strict=True))
    with temporary_databases(list(PARTS)) as urls, temporary_vhost() as amqp_url:
        env = suites.distributed_env(urls, amqp_url, ports, tmp_path / "after")
        restored = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "lienthong", "restore", str(folder)],
            env=env, cwd=ROOT, capture_output=True, text=True,
        )
        assert restored.returncode == 0, restored.stderr
        report = json.loads(restored.stdout)
        # the restore itself refuses rows that differ from the manifest; the audit root is re-checked
        for entry in manifest["databases"]:
            assert report["databases"]["+".join(entry["parts"])]["rows"] == entry["rows"]
        assert report["databases"]["audit"]["audit"]["verified"] is True
        processes = {part: suites.start_part(part, env, tmp_path) for part in PARTS}
        try:
            for part in PARTS:
                await suites.wait_ready(f"http://127.0.0.1:{ports[part]}", processes[part])
            after = suites.Running(f"http://127.0.0.1:{ports['gateway']}", ports, "distributed")
            desk, specialist = await after.auth("desk_officer"), await after.auth("specialist")
            async with after.client() as api:
                for action in ("accept", "start_processing"):
                    r = await api.post(f"/api/intake/dossiers/{code}/actions/{action}", headers=desk, json={})
                    assert r.status_code == 200, (action, r.text)
                deadline = time.monotonic() + 60
                while True:
                    files = await api.get("/api/document/workfiles", params={"dossier_code": code}, headers=specialist)
                    if files.status_code == 200 and len(files.json()["items"]) == 1:
                        break
                    assert time.monotonic() < deadline, files.text
                    await asyncio.sleep(0.3)
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()

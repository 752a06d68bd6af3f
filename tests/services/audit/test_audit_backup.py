"""Backups restore: the restore drill compares row counts and the audit root, embedded and on PostgreSQL;
in distributed mode, under load, the restored suite walks a dossier received before the backup to the end."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from lienthong.backup import BackupError, audit_head, backup, part_settings, prune, restore, row_counts, verify
from lienthong.demo import Demo
from services.audit.app import MIGRATIONS
from services.audit.canonical import canonical_bytes
from services.audit.store import Record, append_records, columns_of
from shared import clock
from shared.db import Database, session_scope
from shared.migrations import upgrade_async
from shared.settings import PARTS
from tests import suites
from tests.e2e.test_main_flow import DEMO_PIN, WARD, ok, pdf
from tests.servers import temporary_databases, temporary_vhost
from tests.services.audit.running import event, running_audit
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[3]
SQLITE = "sqlite+aiosqlite:///{var_dir}/{service}.sqlite"
LONG_AGO = "2020-01-01 00:00:00.000000"


def settings_for(var_dir: Path, **urls: str) -> dict:
    settings = part_settings(var_dir=var_dir, database_url=SQLITE)
    for part, url in urls.items():
        settings[part] = settings[part].model_copy(update={"database_url": url})
    return settings


def add_other_parts(var_dir: Path) -> None:
    """Another part's database and a blob, as the other parts would leave them."""
    with sqlite3.connect(var_dir / "intake.sqlite") as db:
        db.execute("CREATE TABLE dossier (code TEXT PRIMARY KEY, applicant TEXT)")
        db.executemany(
            "INSERT INTO dossier VALUES (?, ?)",
            [(f"000.00.12.H56-260101-{i:04d}", "Nguyễn Thị Hồng Nhung") for i in range(17)],
        )
        # its outbox: an event sent long ago, one sent just now (maybe still in a queue), one unsent
        db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, event_id TEXT, sent_at DATETIME)")
        just_now = clock.now().strftime("%Y-%m-%d %H:%M:%S.%f")
        db.executemany(
            "INSERT INTO outbox VALUES (?, ?, ?)", [(1, "e-1", LONG_AGO), (2, "e-2", just_now), (3, "e-3", None)]
        )
    blob = var_dir / "blobs" / "document" / "ab" / "quyet-dinh-12.pdf"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40)
    # signing's SoftHSM token, whose configuration names its folder by absolute path
    token = var_dir / "signing" / "token"
    (token / "tokens" / "3f1c").mkdir(parents=True)
    (token / "tokens" / "3f1c" / "token.object").write_bytes(b"token")
    (token / "softhsm2.conf").write_text(
        f"directories.tokendir = {token.resolve() / 'tokens'}\nobjectstore.backend = file\n", encoding="utf-8"
    )


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
        "audit.sqlite",
        "intake.sqlite",
    }
    assert "blobs/document/ab/quyet-dinh-12.pdf" in manifest["files"] and "audit-signing.key" in manifest["files"]
    # sha256sum itself accepts the sums file
    check = await asyncio.to_thread(
        subprocess.run, ["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=folder, capture_output=True
    )
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
        source / "blobs/document/ab/quyet-dinh-12.pdf"
    ).read_bytes()
    # the restored token is the one signing opens, not the old machine's
    conf = (target / "signing/token/softhsm2.conf").read_text(encoding="utf-8")
    assert f"directories.tokendir = {target.resolve() / 'signing/token/tokens'}\n" in conf
    assert (target / "signing/token/tokens/3f1c/token.object").read_bytes() == b"token"
    # what may have been in a queue when the backup was taken is sent again; older events are not
    with sqlite3.connect(target / "intake.sqlite") as db:
        sent = dict(db.execute("SELECT event_id, sent_at FROM outbox").fetchall())
    assert sent == {"e-1": LONG_AGO, "e-2": None, "e-3": None}
    assert report["databases"]["intake"]["events_sent_again"] == 1

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
    folders = [
        await asyncio.to_thread(backup, store, settings=settings_for(source), now=start + timedelta(days=d))
        for d in range(3)
    ]
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
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", *command, "verify", str(folders[2])],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
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
                    record = event("dossier.received", subject=f"pg-{batch}-{i}").model_dump(
                        mode="json", exclude_none=True
                    )
                    records.append(Record(leaf=canonical_bytes(record), columns=columns_of(record)))
                async with session_scope(db) as session:
                    await append_records(session, records)
        finally:
            await db.dispose()
        folder = await asyncio.to_thread(
            backup, tmp_path / "backups", settings=settings_for(tmp_path / "var", audit=urls["audit"])
        )
        manifest = json.loads((folder / "manifest.json").read_text())
        [entry] = [d for d in manifest["databases"] if d["kind"] == "postgresql"]
        assert entry["file"] == "audit.pgdump" and entry["audit"]["size"] == 300
        report = await asyncio.to_thread(
            restore, folder, settings=settings_for(tmp_path / "var2", audit=urls["restored"])
        )
        counts = report["databases"]["audit"]["rows"]
        assert await row_counts(urls["restored"]) == await row_counts(urls["audit"]) == counts
        assert await audit_head(urls["restored"]) == await audit_head(urls["audit"])
        with pytest.raises(BackupError, match="not empty"):
            await asyncio.to_thread(restore, folder, settings=settings_for(tmp_path / "var3", audit=urls["restored"]))


# --- The drill in distributed mode -----------------------------------------------------------------


def _submission(n: int) -> dict:
    content = base64.b64encode(pdf(["ĐƠN ĐĂNG KÝ KHAI SINH", f"Hồ sơ số {n}"])).decode()
    return {
        "agency": WARD,  # where khai sinh is received
        "procedure_code": "1.001193",
        "applicant": {"full_name": f"Nguyễn Thị Hồng Nhung {n}", "address": "Phường Hạc Thành, tỉnh Thanh Hóa"},
        "components": [
            {
                "no": no,
                "file": {"filename": f"tp-{no}.pdf", "content_type": "application/pdf", "content_base64": content},
            }
            for no in (1, 2)
        ],
    }


async def walk_to_the_end(running: suites.Running, api: httpx.AsyncClient, code: str, out: Path) -> dict[str, Any]:
    """The main flow from a received dossier on, as ``python -m lienthong demo`` walks it with the
    ward's people: accepted, decided in its one work dossier, signed, published, finished by intake
    with the issued number, returned; the look-up says so (the walk fails the test otherwise)."""
    walker = Demo(gateway=running.gateway_url, password="demo", pin=DEMO_PIN, out=out)
    walker.say = lambda text: None  # type: ignore[method-assign]
    walked = await walker.walk(api, code)
    assert (walked["status"], walked["status_label"]) == (10, "Đã trả kết quả"), walked
    return walked


async def _dossier_codes(url: str) -> set[str]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return set((await conn.execute(text("SELECT code FROM dossier"))).scalars())
    finally:
        await engine.dispose()


def _records(export: bytes) -> list[tuple[int, dict[str, Any]]]:
    """(index, record) of every entry of an audit export."""
    lines = [json.loads(line) for line in export.splitlines() if line.strip()]
    return [(line["index"], json.loads(line["leaf"])) for line in lines[1:]]


async def _verified_export(api: httpx.AsyncClient, auditor: dict[str, str], size: int, tmp_path: Path) -> bytes:
    """The whole log once a checkpoint covers ``size`` entries, checked by the standalone verifier."""

    async def covered() -> bool:
        r = await api.get("/api/audit/checkpoints/latest")
        return r.status_code == 200 and r.json()["size"] >= size

    await eventually(covered, within=60, what=f"a checkpoint over {size} entries")
    export = ok(await api.get("/api/audit/export", params={"from": 0}, headers=auditor)).content
    (tmp_path / "export.jsonl").write_bytes(export)
    key = ok(await api.get("/api/audit/key")).json()["verifier_key"]
    verifier = [sys.executable, "-I", str(ROOT / "tools/verify_audit_log.py"), str(tmp_path / "export.jsonl")]
    checked = await asyncio.to_thread(subprocess.run, [*verifier, "--key", key], capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.startswith("OK"), checked.stdout + checked.stderr
    return export


DRILL_ENV = {"LIENTHONG_CHECKPOINT_EVERY_SECONDS": "1.0"}


@pytest.mark.pg
@pytest.mark.amqp
async def test_restore_drill_distributed_under_load(tmp_path: Path) -> None:
    """Back up the running suite while citizens submit, restore onto fresh databases and another
    var folder (the first one gone, as after losing the machine), start the suite there: every
    database has the rows and the audit log the root the backup recorded; a dossier received
    before the backup is walked to the end; the audit log verifies from its first entry to the
    last; dossier codes and document numbers go on from where they were, none handed out twice."""
    store = tmp_path / "backups"
    for name in ("before", "after"):
        (tmp_path / name).mkdir()
    async with suites.distributed(tmp_path / "before", extra_env=DRILL_ENV) as running:
        citizen = await running.auth("citizen")
        async with running.client() as api:
            # one dossier all the way before the backup: a document number is in use
            first = ok(await api.post("/api/intake/dossiers", headers=citizen, json=_submission(0)), 201)
            issued_before = await walk_to_the_end(running, api, first.json()["code"], tmp_path / "walk-before")
            early = ok(await api.post("/api/intake/dossiers", headers=citizen, json=_submission(1)), 201)
            code = early.json()["code"]
            stop = asyncio.Event()
            submitted = []

            async def load() -> None:
                n = 2
                while not stop.is_set():
                    r = await api.post("/api/intake/dossiers", headers=citizen, json=_submission(n))
                    assert r.status_code == 201, r.text
                    submitted.append(r.json()["code"])
                    n += 1

            task = asyncio.create_task(load())
            while len(submitted) < 3:
                await asyncio.sleep(0.05)
            made = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "lienthong", "backup", "--to", str(store)],
                env=running.env,
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            during = len(submitted)
            stop.set()
            await task
            key_before = ok(await api.get("/api/audit/key")).json()["verifier_key"]
        assert made.returncode == 0, made.stderr
        assert len(submitted) > 3 and during > 3  # the backup ran while submissions went on
    # the machine is lost: nothing of its var folder (keys, the signing token, blobs) is left to lean on
    (tmp_path / "before").rename(tmp_path / "lost")
    [folder] = list(store.iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {p for d in manifest["databases"] for p in d["parts"]} == set(PARTS)
    [backed_up_log] = [d["audit"] for d in manifest["databases"] if "audit" in d]

    ports = dict(zip(PARTS, suites.free_ports(len(PARTS)), strict=True))
    with temporary_databases(list(PARTS)) as urls, temporary_vhost() as amqp_url:
        env = {**suites.distributed_env(urls, amqp_url, ports, tmp_path / "after"), **DRILL_ENV}
        restored = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "lienthong", "restore", str(folder)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert restored.returncode == 0, restored.stderr
        report = json.loads(restored.stdout)
        # the restore itself refuses rows that differ from the manifest; the audit root is re-checked
        for entry in manifest["databases"]:
            assert report["databases"]["+".join(entry["parts"])]["rows"] == entry["rows"]
        assert report["databases"]["audit"]["audit"]["verified"] is True
        restored_codes = await _dossier_codes(urls["intake"])
        assert code in restored_codes
        processes = {part: suites.start_part(part, env, tmp_path) for part in PARTS}
        try:
            for part in PARTS:
                await suites.wait_ready(f"http://127.0.0.1:{ports[part]}", processes[part])
            after = suites.Running(f"http://127.0.0.1:{ports['gateway']}", ports, "distributed")
            citizen = await after.auth("citizen")
            auditor = await after.auth("auditor")
            async with after.client() as api:
                issued_after = await walk_to_the_end(after, api, code, tmp_path / "walk-after")
                late = ok(await api.post("/api/intake/dossiers", headers=citizen, json=_submission(-1)), 201)
                new_code = late.json()["code"]
                assert ok(await api.get("/api/audit/key")).json()["verifier_key"] == key_before

                async def whole_walk_logged() -> int:
                    found = ok(
                        await api.get("/api/audit/entries", params={"subject": code, "limit": 500}, headers=auditor)
                    ).json()["items"]
                    returned = [e["index"] for e in found if e["type"] == "vn.lienthong.dossier.return_result.v1"]
                    return returned[0] + 1 if returned else 0

                export = await _verified_export(
                    api,
                    auditor,
                    await eventually(whole_walk_logged, within=60, what="the walk in the audit log"),
                    tmp_path,
                )
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()

    records = _records(export)
    old = [r for i, r in records if i < backed_up_log["size"]]
    new = [r for i, r in records if i >= backed_up_log["size"]]
    # the export verified from entry 0: the entries kept by the backup and those written after it
    assert records[0][0] == 0 and len(old) == backed_up_log["size"]
    assert {r["subject"] for r in new if r["type"] == "vn.lienthong.dossier.finish.v1"} == {code}

    # numbering goes on: the next code of the day's sequence, a document number not used before
    prefix, number = new_code.rsplit("-", 1)
    used = [int(c.rsplit("-", 1)[1]) for c in restored_codes if c.startswith(prefix + "-")]
    assert int(number) == max(used, default=0) + 1, (new_code, sorted(used)[-3:])
    numbers_before = {
        (r["data"]["agency"], r["data"]["code"]) for r in old if r["type"] == "vn.lienthong.document.issued.v1"
    }
    assert (WARD, issued_before["number"]) in numbers_before
    assert (WARD, issued_after["number"]) not in numbers_before
    # no code handed out twice: audit kept no dossier the restored intake does not know...
    received_before = {r["subject"] for r in old if r["type"] == "vn.lienthong.dossier.received.v1"}
    assert received_before <= restored_codes, sorted(received_before - restored_codes)[:5]
    assert new_code not in received_before
    # ...and lost none it does: an event in flight when the backup was taken is sent again
    received = {r["subject"] for _, r in records if r["type"] == "vn.lienthong.dossier.received.v1"}
    assert restored_codes <= received, sorted(restored_codes - received)[:5]

"""The audit part over HTTP: capture, checkpoints, proofs, queries, dead letters, the tamper test.

Proofs and checkpoints are checked with code that shares nothing with the service: the RFC 9162
reference verifiers in test_audit_merkle and the inspector's standalone tool.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.audit.canonical import canonical_bytes
from services.audit.schemas import EntryPage
from tests.services.audit.running import RunningAudit, event, running_audit
from tests.services.audit.test_audit_merkle import ref_leaf, verify_consistency, verify_inclusion
from tests.waiting import eventually

TOOL = Path(__file__).resolve().parents[3] / "tools" / "verify_audit_log.py"
_spec = importlib.util.spec_from_file_location("verify_audit_log", TOOL)
assert _spec and _spec.loader
inspector = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inspector)

OTHER_AGENCY = "000.00.00.G01"
SUB_AGENCY = "000.00.12.H56"


@pytest.fixture(scope="module")
async def audit(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningAudit]:
    async with running_audit(tmp_path_factory.mktemp("audit")) as running:
        yield running


async def log_size(audit: RunningAudit) -> int:
    from services.audit.store import tree

    async with audit.runtime.db.sessionmaker() as session:
        return await tree(session).size()


async def checkpoint_at_least(audit: RunningAudit, size: int) -> dict:
    async def newest() -> dict | None:
        r = await audit.client.get("/checkpoints/latest")
        return r.json() if r.status_code == 200 and r.json()["size"] >= size else None

    return await eventually(newest, what=f"a checkpoint of size ≥ {size}")


async def verifier_key(audit: RunningAudit) -> tuple[str, tuple]:
    key = (await audit.client.get("/key")).json()["verifier_key"]
    return key, inspector.parse_key(key)


# --- Capture -------------------------------------------------------------------------------------


async def test_every_event_becomes_one_leaf_and_redelivery_adds_none(audit: RunningAudit) -> None:
    before = await log_size(audit)
    events = [event("dossier.received", subject=f"000.00.12.H56-260101-{i:04d}", agency=SUB_AGENCY,
                    actor="desk-officer-7", nguoi_nop="Trần Văn Bình") for i in range(40)]
    events += [event("access.recorded", subject="GET /api/intake/dossiers", actor="auditor-1",
                     method="GET", status=200) for _ in range(5)]
    events += [event("document.issued", subject=f"doc-{i}", agency=OTHER_AGENCY, actor="clerk-2")
               for i in range(5)]
    await audit.publish(events)
    assert await log_size(audit) == before + 50
    # The broker redelivers (twice, and within one batch): the log's unique key makes them no-ops.
    await audit.publish(events[:20] + events[:20])
    await audit.publish(events)
    assert await log_size(audit) == before + 50

    page = (await audit.client.get("/entries", headers=audit.token("auditor"),
                                   params={"subject": "000.00.12.H56-260101-0003"})).json()
    [entry] = page["items"]
    # The leaf is the RFC 8785 form of the CloudEvent record, nothing else.
    assert canonical_bytes(entry["record"]) == json.dumps(entry["record"], ensure_ascii=False,
                                                          sort_keys=True, separators=(",", ":")).encode()
    assert entry["record"]["data"]["nguoi_nop"] == "Trần Văn Bình"
    assert base64.b64decode(entry["leaf_hash"]) == ref_leaf(canonical_bytes(entry["record"]))
    assert entry["record"]["id"] == events[3].id and entry["actor"] == "desk-officer-7"


async def test_malformed_and_unknown_events_are_dead_lettered_and_the_consumer_goes_on(
        audit: RunningAudit) -> None:
    before = await log_size(audit)
    await audit.publish_raw("dossier.received", b"{not json")
    await audit.publish_raw("dossier.received", json.dumps({"id": "x", "source": "s"}).encode())  # no type
    foreign = event("dossier.received", subject="x").model_copy(update={"type": "com.example.unknown"})
    await audit.publish_raw("dossier.received", foreign.to_bytes())
    huge = event("dossier.received", subject="big", amount=2**60)  # beyond RFC 8785's exact integers
    await audit.publish_raw("dossier.received", huge.to_bytes())
    good = event("dossier.received", subject="after-the-poison")
    await audit.publish([good])
    assert await log_size(audit) == before + 1
    dead = await audit.broker.dead_letters("audit")
    assert len(dead) == 4 and all(d.reason == "rejected" and d.deliveries == 1 for d in dead)
    assert (await audit.broker.queue_depths())["audit.dlq"] == 4
    ready = (await audit.client.get("/readyz")).json()
    assert ready["checks"]["dead_letters"]["audit.dlq"] == 4
    assert ready["checks"]["consumers"] == {"audit": "attached"}


# --- Checkpoints and proofs ----------------------------------------------------------------------


async def test_checkpoints_are_signed_and_every_proof_verifies_independently(audit: RunningAudit) -> None:
    await checkpoint_at_least(audit, await log_size(audit))
    await audit.publish([event("dossier.received", subject=f"p-{i}") for i in range(3)])
    newest = await checkpoint_at_least(audit, await log_size(audit))
    key_string, key = await verifier_key(audit)
    origin, signed_size, root = inspector.open_checkpoint(newest["note"], key)
    assert (origin, signed_size) == ("audit.lienthong.local/log", newest["size"])
    assert base64.b64encode(root).decode() == newest["root"]
    checkpoints = (await audit.client.get("/checkpoints", params={"limit": 500})).json()["items"]
    assert [c["size"] for c in checkpoints] == sorted({c["size"] for c in checkpoints}, reverse=True)
    roots = {}
    for c in checkpoints:
        _, n, r = inspector.open_checkpoint(c["note"], key)
        roots[n] = r
    # every entry of the newest checkpoint, by index
    entries = (await audit.client.get("/entries", headers=audit.token("auditor"), params={"limit": 500})).json()
    hashes = {e["index"]: base64.b64decode(e["leaf_hash"]) for e in entries["items"]}
    for index in range(signed_size):
        r = await audit.client.get("/proofs/inclusion", params={"index": index})
        assert r.status_code == 200, r.text
        body = r.json()
        proof = [base64.b64decode(h) for h in body["proof"]]
        assert body["checkpoint"] == newest["note"]
        assert verify_inclusion(index, signed_size, hashes[index], proof, root), index
    # …and by event id, against an older checkpoint
    oldest = min(roots)
    first = entries["items"][0]
    r = await audit.client.get("/proofs/inclusion", params={"event_id": first["event_id"], "size": oldest})
    body = r.json()
    assert body["index"] == 0 and body["size"] == oldest
    assert verify_inclusion(0, oldest, hashes[0], [base64.b64decode(h) for h in body["proof"]], roots[oldest])
    # every pair of checkpoints is consistent
    sizes = sorted(roots)
    assert len(sizes) >= 2
    for i, old in enumerate(sizes):
        for new in sizes[i:]:
            r = await audit.client.get("/proofs/consistency", params={"old": old, "new": new})
            assert r.status_code == 200, r.text
            proof = [base64.b64decode(h) for h in r.json()["proof"]]
            assert verify_consistency(old, new, roots[old], roots[new], proof), (old, new)
    assert key_string.startswith("audit.lienthong.local/log+")


@pytest.mark.parametrize(("path", "params", "status", "code"), [
    ("/proofs/inclusion", {"index": 10**9}, 400, "out_of_range"),
    ("/proofs/inclusion", {"index": -1}, 400, "out_of_range"),
    ("/proofs/inclusion", {"index": 0, "size": 999_999}, 404, "unknown_checkpoint"),
    ("/proofs/inclusion", {"index": 0, "event_id": "x"}, 400, "bad_request"),
    ("/proofs/inclusion", {}, 400, "bad_request"),
    ("/proofs/inclusion", {"event_id": "no-such-event"}, 404, "not_found"),
    ("/proofs/inclusion", {"index": "two"}, 422, "validation_failed"),
    ("/proofs/inclusion", {"index": 0, "sizes": 3}, 400, None),
    ("/proofs/consistency", {"old": 0}, 400, "out_of_range"),
    ("/proofs/consistency", {"old": 10**9}, 400, "out_of_range"),
    ("/proofs/consistency", {"old": 1, "new": 999_999}, 404, "unknown_checkpoint"),
    ("/checkpoints/999999", {}, 404, "unknown_checkpoint"),
])
async def test_bad_proof_requests_get_problem_json(audit: RunningAudit, path: str, params: dict, status: int,
                                                    code: str | None) -> None:
    await audit.publish([event("dossier.received", subject="for-bad-requests")])
    await checkpoint_at_least(audit, 1)
    r = await audit.client.get(path, params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if code:
        assert r.json()["code"] == code


# --- Queries -------------------------------------------------------------------------------------


async def test_queries_by_actor_subject_type_agency_and_time_with_cursor_pages(audit: RunningAudit) -> None:
    auditor = audit.token("auditor")

    async def fetch(headers: dict[str, str] = auditor, **params: object) -> list[dict]:
        items, cursor = [], None
        while True:
            page = await audit.client.get("/entries", headers=headers,
                                          params={**params, "limit": 7, **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.text
            body = page.json()
            # sent without FastAPI's second validation: still exactly the documented model, no more
            assert body == EntryPage.model_validate_json(page.content).model_dump(mode="json")
            items += body["items"]
            if not body["next"]:
                return items
            cursor = body["next"]

    by_actor = await fetch(actor="desk-officer-7")
    assert len(by_actor) == 40 and [e["index"] for e in by_actor] == sorted(e["index"] for e in by_actor)
    assert len(await fetch(type="access.recorded")) == 5
    assert len(await fetch(type="vn.lienthong.document.issued.v1")) == 5
    assert len(await fetch(subject="doc-3")) == 1
    assert {e["agency"] for e in await fetch(agency=SUB_AGENCY)} == {SUB_AGENCY}
    home = await fetch(agency="000.00.00.H56")
    assert {e["agency"] for e in home} == {"000.00.00.H56", SUB_AGENCY}
    assert len(await fetch(actor="clerk-2", agency=OTHER_AGENCY)) == 5
    now = datetime.now(UTC)
    assert await fetch(since=(now + timedelta(hours=1)).isoformat()) == []
    assert len(await fetch(actor="desk-officer-7", until=(now + timedelta(hours=1)).isoformat())) == 40

    # an agency's admin sees its own subtree only; other roles nothing
    admin = audit.token("admin", agency=SUB_AGENCY)
    seen = await fetch(admin)
    assert seen and {e["agency"] for e in seen} == {SUB_AGENCY}
    assert (await audit.client.get("/entries", headers=admin, params={"agency": OTHER_AGENCY})).status_code == 403
    assert (await audit.client.get("/entries", headers=admin, params={"agency": "000.00.00.H56"})).status_code == 403
    for role in ("citizen", "desk_officer", "leader", "integrator"):
        assert (await audit.client.get("/entries", headers=audit.token(role))).status_code == 403
    assert (await audit.client.get("/entries")).status_code == 401
    assert (await audit.client.get("/export", headers=admin)).status_code == 403
    assert (await audit.client.get("/entries", headers=auditor, params={"agency": "H56"})).status_code == 400


# --- Export, monitoring and the tamper test (last: it alters the log) ---------------------------


def run_verifier(export: Path, key: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", str(TOOL), str(export), "--key", key, *extra],
                          capture_output=True, text=True, timeout=60)


async def download_export(audit: RunningAudit, path: Path, **params: object) -> Path:
    async with audit.client.stream("GET", "/export", headers=audit.token("auditor"), params=params) as r:
        assert r.status_code == 200, await r.aread()
        with path.open("wb") as f:
            async for chunk in r.aiter_bytes():
                f.write(chunk)
    return path


async def test_export_verifies_with_the_standalone_tool_and_consistency_with_a_kept_checkpoint(
        audit: RunningAudit, tmp_path: Path) -> None:
    key, _ = await verifier_key(audit)
    kept = await checkpoint_at_least(audit, 1)
    (tmp_path / "kept.txt").write_text(kept["note"], encoding="utf-8")
    await audit.publish([event("dossier.received", subject=f"later-{i}") for i in range(5)])
    newest = await checkpoint_at_least(audit, kept["size"] + 5)
    export = await download_export(audit, tmp_path / "export.jsonl")
    header = json.loads(export.read_text(encoding="utf-8").splitlines()[0])
    assert header["range"] == [0, newest["size"]] and header["checkpoint"] == newest["note"]
    proof = (await audit.client.get("/proofs/consistency", params={"old": kept["size"]})).json()
    (tmp_path / "proof.json").write_text(json.dumps(proof), encoding="utf-8")
    result = run_verifier(export, key, "--previous-checkpoint", str(tmp_path / "kept.txt"),
                          "--consistency-proof", str(tmp_path / "proof.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{newest['size']} entries verified" in result.stdout and "consistent" in result.stdout
    part = await download_export(audit, tmp_path / "part.jsonl", **{"from": 3, "to": 9})
    result = run_verifier(part, key)
    assert result.returncode == 0 and "6 entries verified (indices 3..8, complete)" in result.stdout
    bad = await audit.client.get("/export", headers=audit.token("auditor"), params={"from": 0, "to": 10**6})
    assert bad.status_code == 400 and bad.json()["code"] == "out_of_range"


async def test_monitoring_in_metrics_and_readyz(audit: RunningAudit) -> None:
    await asyncio.sleep(0.3)
    ready = (await audit.client.get("/readyz")).json()
    log = ready["checks"]["log"]
    assert log["entries"] == await log_size(audit)
    assert 0 <= log["checkpoint_age_seconds"] < 60 and 0 <= log["ingest_lag_seconds"] < 60
    assert ready["checks"]["integrity"]["status"] == "ok"
    metrics = (await audit.client.get("/metrics")).text
    for name in ("lienthong_audit_checkpoint_age_seconds", "lienthong_audit_newest_event_age_seconds",
                 "lienthong_audit_ingest_lag_seconds", 'lienthong_bus_dead_letters{queue="audit.dlq"} 4.0'):
        assert name in metrics


async def tamper(audit: RunningAudit, sql: str, params: tuple) -> None:
    """Change the database behind the service's back, as someone with file access would."""

    def write() -> None:
        # in a thread: the service's own transactions need the event loop to finish and let go
        with sqlite3.connect(audit.var_dir / "audit.sqlite", timeout=30) as db:
            db.execute(sql, params)
        db.close()

    await asyncio.to_thread(write)


async def test_a_row_changed_in_the_database_is_named_by_the_verifier_and_the_self_check(
        audit: RunningAudit, tmp_path: Path) -> None:
    key, _ = await verifier_key(audit)
    victim = (await audit.client.get("/entries", headers=audit.token("auditor"),
                                     params={"subject": "000.00.12.H56-260101-0017"})).json()["items"][0]
    index = victim["index"]
    forged = dict(victim["record"], data={**victim["record"]["data"], "nguoi_nop": "Người Khác"})
    await tamper(audit, "UPDATE audit_entry SET leaf = ? WHERE \"index\" = ?", (canonical_bytes(forged), index))
    export = await download_export(audit, tmp_path / "after.jsonl")
    result = run_verifier(export, key)
    assert result.returncode == 1
    assert result.stdout.startswith(f"FAIL: entry {index}: not included"), result.stdout

    async def alerted() -> list[dict]:
        r = await audit.client.get("/alerts", headers=audit.token("auditor"))
        return [a for a in r.json()["items"] if a["entry_index"] == index]

    [alert] = await eventually(alerted)
    assert alert["finding"] == f"entry:{index}"
    ready = (await audit.client.get("/readyz")).json()["checks"]["integrity"]
    assert ready["status"] == "tampered" and ready["findings"][0]["entry"] == index
    metrics = (await audit.client.get("/metrics")).text
    assert f'lienthong_audit_tampered_entry{{entry="{index}",finding="entry:{index}"}} 1.0' in metrics

    # the alert left through the outbox as an audit.tampered event, and was itself logged
    async def logged() -> list[dict]:
        r = await audit.client.get("/entries", headers=audit.token("auditor"), params={"type": "audit.tampered"})
        return r.json()["items"]

    [tampered] = await eventually(logged)
    assert tampered["record"]["data"]["entry_index"] == index
    # raised once, not on every run of the self-check
    await asyncio.sleep(0.8)
    assert len(await logged()) == 1

    # editing a query column (not the leaf) is noticed as well
    await tamper(audit, "UPDATE audit_entry SET actor = 'someone-else' WHERE \"index\" = ?", (index + 1,))
    [column_alert] = await eventually(lambda: _alerts_for(audit, index + 1))
    assert "actor" in column_alert["detail"]
    # alerts come a page at a time, newest first, and the pages add up to all of them
    everything = (await audit.client.get("/alerts", headers=audit.token("auditor"), params={"limit": 500})).json()
    first = (await audit.client.get("/alerts", headers=audit.token("auditor"), params={"limit": 1})).json()
    assert first["items"] == everything["items"][:1] and first["next"] is not None
    rest = await audit.client.get(
        "/alerts", headers=audit.token("auditor"), params={"limit": 500, "cursor": first["next"]}
    )
    assert first["items"] + rest.json()["items"] == everything["items"] and rest.json()["next"] is None


async def _alerts_for(audit: RunningAudit, index: int) -> list[dict]:
    r = await audit.client.get("/alerts", headers=audit.token("auditor"))
    return [a for a in r.json()["items"] if a["entry_index"] == index]

"""Two worker processes per part (``LIENTHONG_<PART>_WORKERS=2``) for intake, document, audit and
the gateway, on the real PostgreSQL and RabbitMQ: what a user counts on stays true when requests
of one part land on different processes — numbers without gaps, dossier codes unique, every event
in the audit log once (and the log verifies), rate limits counted once for the part, and a killed
worker started again while its sibling keeps answering."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from lienthong import distributed
from shared.settings import PARTS
from tests import suites
from tests.contract.test_up import _alive

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.pg, pytest.mark.amqp]

TWO = {"intake": 2, "document": 2, "audit": 2, "gateway": 2}
WARD = "000.00.41.H56"  # receives 1.001193 (khai sinh)
PROVINCE = "000.00.00.H56"  # the demo "clerk" registers its incoming documents
BURST = 12
SMALL_PDF = "JVBERi0xLjQKJSVFT0YK"


def _pids(log: Path, part: str) -> list[int]:
    found = re.findall(rf"{part}: \d+ workers on \S+ \(pids ([\d, ]+)\)", log.read_text())
    assert found, log.read_text()[-2000:]
    return [int(p) for p in found[-1].split(", ")]


async def _eventually(check: Any, *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"not in {within} s: {what}"
        await asyncio.sleep(0.5)


async def test_two_workers_per_part_keep_numbers_codes_audit_and_limits(tmp_path: Path) -> None:
    rules = {"GET /api/intake/lookup": {"rate": 0.01, "burst": BURST}}
    # few connections per worker (the pool is the part's, shared out): contention, and room on a
    # PostgreSQL other test runs use too
    extra = {"LIENTHONG_GATEWAY_RATE_ROUTES": json.dumps(rules), "LIENTHONG_DATABASE_POOL_SIZE": "8"}
    async with suites.distributed(tmp_path, workers=TWO, extra_env=extra) as running:
        for part in TWO:
            assert len(_pids(tmp_path / f"{part}.log", part)) == 2
        citizen, clerk, auditor = [await running.auth(u) for u in ("citizen", "clerk", "auditor")]

        async with running.client(timeout=60) as api:
            # dossier codes: 30 citizens submit at once, through both gateway and intake workers
            async def submit(n: int) -> str:
                r = await api.post(
                    "/api/intake/dossiers",
                    json={
                        "agency": WARD,
                        "procedure_code": "1.001193",
                        "applicant": {"full_name": f"Nguyễn Văn Thứ {n}"},
                        "components": [
                            {
                                "no": no,
                                "file": {
                                    "filename": f"{no}.pdf",
                                    "content_type": "application/pdf",
                                    "content_base64": SMALL_PDF,
                                },
                            }
                            for no in (1, 2)
                        ],
                    },
                    headers={**citizen, "Idempotency-Key": f"workers-{n}"},
                )
                assert r.status_code == 201, r.text[:500]
                return r.json()["code"]

            codes = await asyncio.gather(*(submit(n) for n in range(30)))
            assert len(set(codes)) == 30, Counter(codes).most_common(3)
            sequences = sorted(int(code.rsplit("-", 1)[1]) for code in codes)  # demo data may come first
            assert sequences == list(range(sequences[0], sequences[0] + 30)), "a gap in the day's sequence"

            # arrival numbers of incoming documents: 30 at once, no gap, no repeat
            async def register(n: int) -> int:
                r = await api.post(
                    "/api/document/documents/incoming",
                    json={
                        "agency": PROVINCE,
                        "type_key": "CV",
                        "subject": f"Công văn số {n}",
                        "code": f"{n + 1}/STP-VP",
                        "issuing_organ": {"organ_id": "000.00.17.H56"},
                    },
                    headers=clerk,
                )
                assert r.status_code == 201, r.text[:500]
                return r.json()["arrival_number"]

            numbers = await asyncio.gather(*(register(n) for n in range(30)))
            numbers.sort()
            assert numbers == list(range(numbers[0], numbers[0] + 30)), "a gap in the arrival numbers"

            # audit: each dossier's receipt in the log exactly once, however many workers consumed
            async def received() -> list[dict[str, Any]] | None:
                r = await api.get(
                    "/api/audit/entries",
                    params={"type": "vn.lienthong.dossier.received.v1", "limit": 500},
                    headers=auditor,
                )
                assert r.status_code == 200, r.text[:300]
                items = r.json()["items"]
                return items if len({e["subject"] for e in items}) >= 30 else None

            entries = await _eventually(received, within=60, what="every receipt in the audit log")
            per_code = Counter(e["subject"] for e in entries)
            assert set(per_code) == set(codes) and set(per_code.values()) == {1}, per_code.most_common(3)
            ids = Counter(e["record"]["id"] for e in entries)
            assert set(ids.values()) == {1}

            key = (await api.get("/api/audit/key")).json()["verifier_key"]
            size = max(e["index"] for e in entries) + 1

            async def checkpoint() -> bool:
                r = await api.get("/api/audit/checkpoints/latest")
                return r.status_code == 200 and r.json()["size"] >= size

            await _eventually(checkpoint, within=60, what="a checkpoint over the receipts")
            export = await api.get("/api/audit/export", params={"from": 0}, headers=auditor)
            (tmp_path / "export.jsonl").write_bytes(export.content)
            verified = subprocess.run(
                [
                    sys.executable,
                    "-I",
                    str(ROOT / "tools" / "verify_audit_log.py"),
                    str(tmp_path / "export.jsonl"),
                    "--key",
                    key,
                ],
                capture_output=True,
                text=True,
            )
            assert verified.returncode == 0 and verified.stdout.startswith("OK"), verified.stdout + verified.stderr

            # rate limits: a burst of BURST for the client, in total over both gateway workers
            async def look_up(n: int) -> int:
                r = await api.get("/api/intake/lookup", params={"code": codes[0], "secret": f"wrong-{n:04d}xxxxxx"})
                return r.status_code

            statuses = Counter(await asyncio.gather(*(look_up(n) for n in range(3 * BURST))))
            assert statuses[429] == 2 * BURST, statuses

            # the gateway's metrics, whichever worker answers, count the requests of both
            async with httpx.AsyncClient() as scraper:
                metrics = (await scraper.get(f"{running.gateway_url}/metrics")).text
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("lienthong_http_requests_total{")
            )
            assert counted >= 30 + 30 + 3 * BURST, counted

        # a killed worker is started again; its sibling answers meanwhile
        log = tmp_path / "intake.log"
        victim, sibling = _pids(log, "intake")
        os.kill(victim, signal.SIGKILL)
        intake_url = f"http://127.0.0.1:{running.ports['intake']}"
        async with httpx.AsyncClient(base_url=intake_url, timeout=10) as direct:
            answered = 0
            deadline = time.monotonic() + 60
            while "intake worker 1 restarted (pid" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                assert (await direct.get("/healthz")).status_code == 200
                answered += 1
                await asyncio.sleep(0.05)
            assert answered > 0
            assert re.search(rf"intake worker 1 \(pid {victim}\) exited with -9", log.read_text())
            reborn = int(re.findall(r"intake worker 1 restarted \(pid (\d+)\)", log.read_text())[-1])
            assert _alive(reborn) and _alive(sibling) and not _alive(victim)
            # the new worker serves (its start-up finished) and the part is ready again
            await suites.wait_ready(intake_url, running.processes["intake"])
            r = await direct.get("/readyz")
            assert r.json()["status"] == "ok"
        supervisor = running.processes["intake"]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=40) == 0
        assert not _alive(reborn) and not _alive(sibling)

        # a supervisor killed outright: its workers stop by themselves and free the port
        orphans = _pids(tmp_path / "document.log", "document")
        running.processes["document"].kill()
        running.processes["document"].wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in orphans):
            assert time.monotonic() < deadline, "the workers outlived their supervisor"
            await asyncio.sleep(0.2)


def _serve(part: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    command = [sys.executable, "-m", "lienthong", "serve", part]
    return subprocess.run(
        command,
        env={**clean, "LIENTHONG_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_signing_refuses_several_workers_and_the_gateway_the_memory_store(tmp_path: Path) -> None:
    signing = _serve("signing", tmp_path, LIENTHONG_SIGNING_WORKERS="2")
    assert signing.returncode == 2
    assert "signing: 2 workers refused" in signing.stderr and "LIENTHONG_SIGNING_WORKERS=1" in signing.stderr
    # LIENTHONG_WORKERS counts for every part; the gateway's in-memory buckets would be per worker
    gateway = _serve("gateway", tmp_path, LIENTHONG_WORKERS="3")
    assert gateway.returncode == 2
    assert "rate_limit_store=database" in gateway.stderr


def test_the_backoff_doubles_while_a_worker_keeps_dying() -> None:
    backoff = distributed.Backoff(first=1, most=8, steady_after=60)
    assert [backoff.after("w1", ran=2) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert backoff.after("w1", ran=61) == 1
    assert backoff.after("w2", ran=0) == 1
    assert set(PARTS) >= set(TWO)

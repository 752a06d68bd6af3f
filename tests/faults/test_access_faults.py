"""The gateway killed with SIGKILL under concurrent load (distributed mode: PostgreSQL, RabbitMQ):
every answer a client received whole has its access record in the audit log afterwards, and the
log still verifies as one log with the standalone verifier.

Before group commit the records of answers already sent waited in memory for a batch, and a
kill lost about a third of them (106 of 310 in one run)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import suites
from tests.faults.test_system_faults import scalar
from tests.services.audit.test_audit_backup import _verified_export

pytestmark = [pytest.mark.pg, pytest.mark.amqp, pytest.mark.faults, pytest.mark.timeout(300)]

CLIENTS = 16
ACCESS_TYPE = "vn.lienthong.access.recorded.v1"


async def audited_request_ids(audit_url: str, prefix: str) -> set[str]:
    engine = create_async_engine(audit_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT convert_from(leaf, 'UTF8')::jsonb -> 'data' ->> 'request_id' FROM audit_entry "
                    "WHERE type = :type"
                ),
                {"type": ACCESS_TYPE},
            )
            return {r for (r,) in rows if r and r.startswith(prefix)}
    finally:
        await engine.dispose()


async def test_gateway_killed_under_load_loses_no_record_of_an_answer_given(tmp_path: Path) -> None:
    async with suites.distributed(tmp_path, extra_env={"LIENTHONG_CHECKPOINT_EVERY_SECONDS": "1.0"}) as running:
        auditor = await running.auth("auditor")
        answered: set[str] = set()  # request ids of answers received whole
        broken = 0
        stop = asyncio.Event()

        async def client(n: int) -> None:
            nonlocal broken
            i = 0
            async with running.client(timeout=5) as api:
                while not stop.is_set():
                    request_id = f"kill-{n}-{i}"
                    i += 1
                    try:
                        # httpx reads the body to its end (Content-Length): a response here is whole
                        r = await api.get("/api/audit/key", headers={"X-Request-ID": request_id})
                    except httpx.HTTPError:
                        broken += 1
                        await asyncio.sleep(0.05)
                        continue
                    answered.add(r.headers.get("x-request-id", request_id))

        load = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
        await asyncio.sleep(3.0)
        gateway = running.processes["gateway"]
        answered_before_kill = len(answered)
        os.kill(gateway.pid, signal.SIGKILL)
        await asyncio.to_thread(gateway.wait, 10)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*load)
        assert answered_before_kill >= 100, f"only {answered_before_kill} answers before the kill"
        assert broken > 0, "the kill broke no request: it did not hit the load"

        # an orchestrator restarts it; its relay publishes what the killed one had committed
        running.processes["gateway"] = suites.start_part("gateway", running.env, tmp_path)
        await suites.wait_ready(running.gateway_url, running.processes["gateway"])
        audit_url = running.env["LIENTHONG_AUDIT_DATABASE_URL"]
        deadline = time.monotonic() + 90
        lost = set(answered)
        while time.monotonic() < deadline:
            lost = answered - await audited_request_ids(audit_url, "kill-")
            if not lost:
                break
            await asyncio.sleep(1)
        print(f"{len(answered)} answers, {broken} broken by the kill, {len(lost)} records lost")
        assert not lost, f"{len(lost)} of {len(answered)} answers have no access record: {sorted(lost)[:5]}"

        # one log: a checkpoint over every entry, the export checked by the standalone verifier
        entries = await scalar(audit_url, "SELECT count(*) FROM audit_entry")
        async with running.client() as api:
            await _verified_export(api, auditor, entries, tmp_path)

"""Faults on the whole suite in distributed mode (every part its own process, PostgreSQL,
RabbitMQ): desks keep submitting dossiers through the gateway while the broker restarts and
parts are killed at their worst moments. Afterwards every accepted dossier is in audit exactly
once and has exactly one work dossier, outboxes are drained, queues are empty and every
consumer is attached again."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import suites
from tests.faults.test_bus_faults import queues, stop_start_app
from tests.servers import rabbitmqctl

pytestmark = [pytest.mark.pg, pytest.mark.amqp, pytest.mark.faults, pytest.mark.timeout(300)]

DOSSIER = {
    "agency": "000.00.41.H56",  # 1.001193 is received at the ward, not above it
    "procedure_code": "1.001193",
    "applicant": {"full_name": "Lê Thị Mai"},
    "components": [{"no": 1}, {"no": 2}],
}


async def scalar(url: str, sql: str) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar()
    finally:
        await engine.dispose()


async def restart(running: suites.Running, part: str, tmp_path: Path, failpoints: str = "") -> None:
    process = running.processes[part]
    if process.poll() is None:
        process.terminate()
        process.wait(20)
    env = {**running.env, "LIENTHONG_FAILPOINTS": failpoints}
    running.processes[part] = suites.start_part(part, env, tmp_path)


async def test_suite_survives_broker_restart_and_parts_killed_mid_flight(tmp_path: Path) -> None:
    async with suites.distributed(tmp_path) as running:
        vhost = running.env["LIENTHONG_AMQP_URL"].rsplit("/", 1)[1]
        desk = await running.auth("desk_officer")
        # intake dies the 5th time its relay has read committed events; document dies the 3rd
        # time it has committed a batch without acking it
        await restart(running, "intake", tmp_path, "relay.after_read@5")
        await restart(running, "document", tmp_path, "inbox.after_commit@3")
        await suites.wait_ready(f"http://127.0.0.1:{running.ports['intake']}", running.processes["intake"])
        await suites.wait_ready(f"http://127.0.0.1:{running.ports['document']}", running.processes["document"])
        codes: list[str] = []
        faults_done = False

        async with running.client() as api:
            for i in range(120):
                try:
                    r = await api.post("/api/intake/dossiers", json=DOSSIER, headers=desk)
                except Exception:
                    r = None
                if r is not None and r.status_code == 201:
                    codes.append(r.json()["code"])
                # an orchestrator restarts what died
                for part in ("intake", "document"):
                    if running.processes[part].poll() is not None:
                        await restart(running, part, tmp_path)
                        await suites.wait_ready(f"http://127.0.0.1:{running.ports[part]}", running.processes[part])
                if i == 40 and not faults_done:
                    await asyncio.to_thread(stop_start_app)
                    faults_done = True
                if i == 80:
                    await asyncio.to_thread(rabbitmqctl, "close_all_connections", "fault test")
                await asyncio.sleep(0.05)

        killed = [
            p for p in ("intake", "document") if "failpoint" in (tmp_path / f"{p}.log").read_text(errors="replace")
        ]
        assert set(killed) == {"intake", "document"}, f"failpoints fired in {killed}"
        assert len(codes) >= 100, f"only {len(codes)} submissions were accepted"

        urls = {p: running.env[f"LIENTHONG_{p.upper()}_DATABASE_URL"] for p in ("intake", "document", "audit")}
        code_list = ",".join(f"'{c}'" for c in codes)
        deadline = time.monotonic() + 120
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = {
                "unsent_intake": await scalar(urls["intake"], "SELECT count(*) FROM outbox WHERE sent_at IS NULL"),
                "unsent_document": await scalar(urls["document"], "SELECT count(*) FROM outbox WHERE sent_at IS NULL"),
                "work_files": await scalar(
                    urls["document"], f"SELECT count(*) FROM work_file WHERE dossier_code IN ({code_list})"
                ),
                "audited": await scalar(
                    urls["audit"],
                    "SELECT count(*) FROM audit_entry WHERE type = 'vn.lienthong.dossier.received.v1' "
                    f"AND subject IN ({code_list})",
                ),
                "queues": queues(vhost),
            }
            settled = all(q["messages"] == 0 for q in state["queues"].values())
            if (
                state["work_files"] == len(codes)
                and state["audited"] == len(codes)
                and settled
                and not state["unsent_intake"]
                and not state["unsent_document"]
            ):
                break
            await asyncio.sleep(1)
        print(json.dumps({k: v for k, v in state.items() if k != "queues"}), state["queues"])
        assert state["audited"] == len(codes), state  # each exactly once: (source, id) is unique in audit
        assert state["work_files"] == len(codes), state
        assert state["unsent_intake"] == 0 and state["unsent_document"] == 0, state
        for name, q in state["queues"].items():
            assert q["messages"] == 0, (name, q)
            if not name.endswith(".dlq"):
                assert q["consumers"] >= 1, (name, q)

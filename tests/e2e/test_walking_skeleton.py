"""The walking skeleton through the gateway, in both modes: a dossier submitted to intake is
stored and emits ``dossier.received``; audit stores it; document opens a work file for it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests import suites

DOSSIER = {
    "agency": "000.00.41.H56",  # 1.001193 is received at the ward, not above it
    "procedure_code": "1.001193",
    "applicant": {"full_name": "Nguyễn Thị Hồng Nhung", "address": "Phường Điện Biên, TP Thanh Hóa"},
    # the procedure's two required components, handed in on paper at the desk
    "components": [{"no": 1}, {"no": 2}],
}


async def _eventually(fetch, *, timeout: float = 30) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = await fetch()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def walk(running: suites.Running) -> None:
    desk = await running.auth("desk_officer")
    auditor = await running.auth("auditor")
    specialist = await running.auth("specialist")
    async with running.client() as client:
        response = await client.post("/api/intake/dossiers", json=DOSSIER, headers={**desk, "X-Request-ID": "walk-1"})
        assert response.status_code == 201, response.text
        assert response.headers["x-request-id"] == "walk-1"
        dossier = response.json()
        code = dossier["code"]
        assert code.startswith("000.00.41.H56-") and code.endswith("-0001")
        assert dossier["applicant"]["full_name"] == "Nguyễn Thị Hồng Nhung"
        assert dossier["status"] == 2

        got = await client.get(f"/api/intake/dossiers/{code}", headers=desk)
        assert got.status_code == 200 and got.json() == dossier

        async def audited() -> list[dict[str, Any]]:
            r = await client.get("/api/audit/entries", params={"subject": code}, headers=auditor)
            assert r.status_code == 200, r.text
            return [e for e in r.json()["items"] if e["type"] == "vn.lienthong.dossier.received.v1"]

        entries = await _eventually(audited)
        assert len(entries) == 1
        record = entries[0]["record"]
        assert record["data"]["code"] == code and record["source"] == "urn:lienthong:intake"
        assert record["data"]["channel"] == "desk"

        async def work_files() -> list[dict[str, Any]]:
            r = await client.get("/api/document/workfiles", params={"dossier_code": code}, headers=specialist)
            assert r.status_code == 200, r.text
            return r.json()["items"]

        files = await _eventually(work_files)
        assert [f["dossier_code"] for f in files] == [code]

        # bad input through the gateway: problem+json, nothing stored
        bad = [
            await client.post(
                "/api/intake/dossiers", content=b"{not json", headers={**desk, "Content-Type": "application/json"}
            ),
            await client.post("/api/intake/dossiers", json={**DOSSIER, "surprise": 1}, headers=desk),
            await client.post("/api/intake/dossiers", json={**DOSSIER, "agency": 42}, headers=desk),
            await client.post("/api/intake/dossiers", json=DOSSIER),
            await client.post("/api/intake/dossiers", json=DOSSIER, headers={"Authorization": "Bearer garbage"}),
            await client.get("/api/audit/entries", params={"subjekt": code}, headers=auditor),
        ]
        assert [r.status_code for r in bad] == [400, 422, 422, 401, 401, 400]
        for r in bad:
            assert r.headers["content-type"].startswith("application/problem+json")
            body = r.json()
            assert {"type", "title", "status", "code"} <= body.keys() and "Traceback" not in r.text
        second = await client.post("/api/intake/dossiers", json=DOSSIER, headers=desk)
        assert second.json()["code"].endswith("-0002")  # the refused attempts took no number


async def test_walking_skeleton_embedded(tmp_path: Path) -> None:
    async with suites.embedded(tmp_path) as running:
        await walk(running)


@pytest.mark.pg
@pytest.mark.amqp
async def test_walking_skeleton_distributed(tmp_path: Path) -> None:
    async with suites.distributed(tmp_path) as running:
        await walk(running)

"""The clerk's one call on the embedded suite with the real signing part: number, write the
number in, seal, store, issue — and what happens when it stops half-way, is replayed or races."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests import suites
from tests.servers import temporary_databases
from tests.services.document.pdfs import draft_pdf

AGENCY = "000.00.00.H56"
DEMO_PIN = "123456"
PDF = {"Content-Type": "application/pdf"}


class Clerk:
    """The demo people of the province, through the gateway."""

    def __init__(self, api: httpx.AsyncClient, who: dict[str, dict[str, str]]) -> None:
        self.api, self.who = api, who

    async def signed_draft(self, subject: str = "Quyết định cấp giấy phép xây dựng") -> dict[str, Any]:
        r = await self.api.post(
            "/api/document/documents",
            headers=self.who["specialist"],
            json={"agency": AGENCY, "type_key": "QĐ", "subject": subject,
                  "signer": {"position": "Chủ tịch", "full_name": "Phạm Văn Đức"}},
        )
        assert r.status_code == 201, r.text
        doc = r.json()
        r = await self.api.post(
            f"/api/document/documents/{doc['id']}/content",
            params={"stage": "draft"},
            content=draft_pdf(),
            headers={**self.who["specialist"], **PDF, "If-Match": r.headers["etag"]},
        )
        assert r.status_code == 201, r.text
        signed = await self.api.post("/api/signing/sign", params={"kind": "person"}, content=draft_pdf(),
                                     headers={**self.who["leader"], **PDF, "X-Signing-PIN": DEMO_PIN})
        assert signed.status_code == 200, signed.text
        r = await self.api.post(f"/api/document/documents/{doc['id']}/content", params={"stage": "signed_by_leader"},
                                content=signed.content,
                                headers={**self.who["leader"], **PDF, "If-Match": r.headers["etag"]})
        assert r.status_code == 201, r.text
        return await self.document(doc["id"])

    async def document(self, doc_id: int) -> dict[str, Any]:
        r = await self.api.get(f"/api/document/documents/{doc_id}", headers=self.who["clerk"])
        assert r.status_code == 200, r.text
        return r.json()

    async def publish(self, doc_id: int, *, pin: str = DEMO_PIN, key: str | None = None,
                      body: dict[str, Any] | None = None, who: str = "clerk") -> httpx.Response:
        headers = {**self.who[who], "X-Signing-PIN": pin, **({"Idempotency-Key": key} if key else {})}
        return await self.api.post(f"/api/document/documents/{doc_id}/publish", headers=headers, json=body or {})

    async def versions(self, doc_id: int) -> list[dict[str, Any]]:
        r = await self.api.get(f"/api/document/documents/{doc_id}/versions", headers=self.who["clerk"])
        return r.json()["items"]

    async def events(self, doc_id: int, kind: str) -> list[dict[str, Any]]:
        r = await self.api.get("/api/audit/entries", params={"subject": f"document:{doc_id}", "limit": 100},
                               headers=self.who["auditor"])
        assert r.status_code == 200, r.text
        return [e["record"] for e in r.json()["items"] if e["type"] == f"vn.lienthong.document.{kind}.v1"]


async def _clerk(running: suites.Running, api: httpx.AsyncClient) -> Clerk:
    who = {u: await running.auth(u) for u in ("specialist", "leader", "clerk", "auditor", "desk_officer")}
    return Clerk(api, who)


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code, body
    return body


async def test_one_call_issues_and_a_stopped_call_continues(tmp_path: Path) -> None:
    async with suites.embedded(tmp_path) as running, running.client() as api:
        clerk = await _clerk(running, api)

        # not signed by the leader yet: refused, nothing changed
        r = await api.post("/api/document/documents", headers=clerk.who["specialist"],
                           json={"agency": AGENCY, "type_key": "QĐ", "subject": "Dự thảo chưa ký"})
        draft = r.json()
        problem(await clerk.publish(draft["id"]), 409, "not_signed_by_leader")
        assert (await clerk.document(draft["id"]))["version"] == draft["version"]

        # the whole flow in one call
        first = await clerk.signed_draft()
        r = await clerk.publish(first["id"], key="k-first")
        assert r.status_code == 200, r.text
        issued = r.json()
        assert issued["status"] == "issued" and issued["code"] == "01/QĐ-UBND"
        assert issued["steps"] == ["numbered", "number_filled", "sealed", "issued"]
        assert r.headers["etag"] == f'"{issued["version"]}"'
        versions = await clerk.versions(first["id"])
        assert [(v["stage"], v["signatures"]) for v in versions] == [
            ("draft", 0), ("signed_by_leader", 1), ("numbered", 1), ("sealed", 2)
        ]
        result = await api.get(f"/api/document/documents/{first['id']}/content", headers=clerk.who["desk_officer"])
        assert result.status_code == 200
        (tmp_path / "result.pdf").write_bytes(result.content)
        pdfsig = subprocess.run(["pdfsig", str(tmp_path / "result.pdf")], capture_output=True, text=True).stdout
        assert pdfsig.count("Signature Validation: Signature is Valid.") == 2, pdfsig

        # a replay answers the same; the key is the caller's for this document only
        again = await clerk.publish(first["id"], key="k-first")
        assert again.status_code == 200 and again.json() == issued
        problem(await clerk.publish(first["id"], key="k-other"), 409, "already_issued")

        # a wrong PIN stops it after numbering: the number is kept, and the next call continues
        second = await clerk.signed_draft("Quyết định thứ hai")
        wrong = await clerk.publish(second["id"], pin="000000", key="k-second")
        body = problem(wrong, 403, "wrong_pin")
        assert "02/QĐ-UBND" in body["detail"] and body["extra"]["attempts_left"] >= 1
        stopped = await clerk.document(second["id"])
        assert stopped["status"] == "numbered" and stopped["code"] == "02/QĐ-UBND"
        assert [v["stage"] for v in await clerk.versions(second["id"])] == ["draft", "signed_by_leader"]
        r = await clerk.publish(second["id"], key="k-second")
        assert r.status_code == 200, r.text
        assert r.json()["code"] == "02/QĐ-UBND" and r.json()["steps"] == ["number_filled", "sealed", "issued"]
        problem(await clerk.publish(first["id"], key="k-second"), 422, "idempotency_key_reused")

        # no seal to apply: refused before anything changes
        third = await clerk.signed_draft("Quyết định thứ ba")
        problem(await clerk.publish(third["id"], body={"seal_certificate": "00ff"}), 422, "no_seal")
        unchanged = await clerk.document(third["id"])
        assert unchanged["status"] == "signed_by_leader" and unchanged["code"] is None
        assert unchanged["version"] == third["version"]
        # only a clerk publishes, and only with a PIN
        assert (await clerk.publish(third["id"], who="leader")).status_code == 403
        no_pin = await api.post(f"/api/document/documents/{third['id']}/publish", headers=clerk.who["clerk"], json={})
        assert no_pin.status_code == 422
        typo = await api.post(f"/api/document/documents/{third['id']}/publish",
                              headers={**clerk.who["clerk"], "X-Signing-PIN": DEMO_PIN}, json={"seal": "x"})
        assert typo.status_code == 422
        assert (await clerk.document(third["id"]))["version"] == third["version"]

        # who did it: the clerk, in the numbering and the issue alike
        async def audited() -> list[dict[str, Any]]:
            numbered, issued_ = await clerk.events(first["id"], "numbered"), await clerk.events(first["id"], "issued")
            return numbered + issued_ if numbered and issued_ else []

        deadline = asyncio.get_running_loop().time() + 30
        while not (records := await audited()):
            assert asyncio.get_running_loop().time() < deadline, "audit did not get the events"
            await asyncio.sleep(0.25)
        assert {(r["data"]["actor"]["sub"], tuple(r["data"]["actor"]["roles"])) for r in records} == {
            ("clerk", ("clerk",))
        }


@pytest.mark.pg
async def test_concurrent_publishes_take_one_number_each_without_gaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Document on PostgreSQL, the rest embedded: clerks publish at once — the same document
    several times, and several documents — and every document has one number, none skipped."""
    with temporary_databases(["document"]) as urls:
        monkeypatch.setenv("LIENTHONG_DOCUMENT_DATABASE_URL", urls["document"])
        async with suites.embedded(tmp_path) as running, running.client() as api:
            clerk = await _clerk(running, api)
            docs = [await clerk.signed_draft(f"Quyết định {i}") for i in range(4)]
            same = docs[0]["id"]
            answers = await asyncio.gather(
                *(clerk.publish(same, key=f"same-{uuid.uuid4().hex[:6]}") for _ in range(3)),
                *(clerk.publish(d["id"]) for d in docs[1:]),
            )
            same_answers, others = answers[:3], answers[3:]
            assert [r.status_code for r in others] == [200] * 3, [r.text for r in others]
            assert sum(r.status_code == 200 for r in same_answers) >= 1
            for r in same_answers:
                assert r.status_code in (200, 409), r.text
            codes = sorted([(await clerk.document(d["id"]))["code"] for d in docs])
            assert codes == ["01/QĐ-UBND", "02/QĐ-UBND", "03/QĐ-UBND", "04/QĐ-UBND"]
            assert {(await clerk.document(d["id"]))["status"] for d in docs} == {"issued"}
            sealed = [v for v in await clerk.versions(same) if v["stage"] == "sealed"]
            assert len(sealed) == 1
        # the numbers were taken in PostgreSQL, under its row locks
        engine = create_async_engine(urls["document"])
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT code_number FROM document WHERE status = 'issued'"))).all()
        finally:
            await engine.dispose()
        assert sorted(r[0] for r in rows) == [1, 2, 3, 4]


async def test_signing_out_of_reach_is_a_503_and_changes_nothing(tmp_path: Path) -> None:
    port = suites.free_ports(1)[0]  # nothing listens there
    async with suites.embedded(tmp_path, signing_url=f"http://127.0.0.1:{port}/api/signing") as running:
        async with running.client() as api:
            clerk = await _clerk(running, api)
            doc = await clerk.signed_draft()
            r = await clerk.publish(doc["id"], key="k-1")
            body = problem(r, 503, "unavailable")
            assert "signing cannot be reached" in body["detail"]
            after = await clerk.document(doc["id"])
            assert after["status"] == "signed_by_leader" and after["version"] == doc["version"]

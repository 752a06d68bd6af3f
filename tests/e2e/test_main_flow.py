"""The main flow, as a province runs it, driven only through the gateway: a citizen submits
online → the desk accepts (receipt) → a work dossier appears in document → a specialist drafts
the result → the leader signs → the clerk numbers, seals and issues → intake finishes the
dossier by itself → the desk returns it → the public look-up shows it returned. Integrators'
webhook and AMQP consumer got every event; audit holds every step and its export verifies with
the standalone verifier; the signed result validates with pdfsig and pyHanko."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import from_json
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from tests import suites
from tests.e2e.peers import PikaConsumer, WebhookReceiver
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
AGENCY = "000.00.00.H56"
WARD = "000.00.41.H56"  # UBND phường Hạc Thành: receives 1.001193 (khai sinh)
DEMO_PIN = "123456"
FLOW_SETTINGS: dict[str, Any] = {
    "checkpoint_every_seconds": 1.0,
    "callback_schemes": ["http", "https"],
    "allow_private_targets": True,
}


def pdf(lines: list[str]) -> bytes:
    font = ROOT / "shared" / "fonts" / "DejaVuSans.ttf"
    if "DejaVuSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVuSans", str(font)))
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4)
    page.setFont("DejaVuSans", 12)
    for i, line in enumerate(lines):
        page.drawString(72, 770 - 18 * i, line)
    page.showPage()
    page.save()
    return out.getvalue()


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:500]}"
    )
    return response


async def main_flow(running: suites.Running, tmp_path: Path, *, amqp_url: str | None) -> None:
    who = {
        u: await running.auth(u)
        for u in ("citizen", "desk_officer", "specialist", "leader", "clerk", "auditor", "integrator")
    }
    receiver = WebhookReceiver()
    callback = await receiver.start()
    pika_consumer = PikaConsumer(amqp_url) if amqp_url else None
    if pika_consumer:
        pika_consumer.start()
    try:
        async with running.client() as api:
            # an integrator subscribes to everything of the province's subtree
            created = ok(
                await api.post(
                    "/api/notify/subscriptions",
                    headers=who["integrator"],
                    json={
                        "callback_url": callback,
                        "event_types": ["dossier.*", "document.*", "workfile.*", "signature.*"],
                        "agency": AGENCY,
                        "description": "Cổng dịch vụ công tỉnh",
                    },
                ),
                201,
            ).json()
            receiver.secret = created["secret"]

            # 1. a citizen submits online
            application = pdf(["ĐƠN ĐĂNG KÝ KHAI SINH", "Người yêu cầu: Nguyễn Thị Hồng Nhung"])
            files = [
                {
                    "no": no,
                    "file": {
                        "filename": f"thanh-phan-{no}.pdf",
                        "content_type": "application/pdf",
                        "content_base64": base64.b64encode(application).decode(),
                    },
                }
                for no in (1, 2)
            ]
            submitted = ok(
                await api.post(
                    "/api/intake/dossiers",
                    headers={**who["citizen"], "Idempotency-Key": "flow-1"},
                    json={
                        "agency": WARD,  # the procedure's own receiving agency, inside AGENCY's subtree
                        "procedure_code": "1.001193",
                        "applicant": {
                            "full_name": "Nguyễn Thị Hồng Nhung",
                            "address": "Phường Hạc Thành, tỉnh Thanh Hóa",
                        },
                        "components": files,
                    },
                ),
                201,
            ).json()
            code = submitted["code"]
            assert submitted["status"] == 1

            # 2. the desk accepts and prints the receipt
            ok(await api.post(f"/api/intake/dossiers/{code}/actions/accept", headers=who["desk_officer"], json={}))
            receipt = ok(await api.post(f"/api/intake/dossiers/{code}/receipt", headers=who["desk_officer"]))
            assert receipt.headers["content-type"].startswith("application/pdf")
            secret = receipt.headers["lookup-secret"]
            text = subprocess.run(
                ["pdftotext", "-", "-"], input=receipt.content, capture_output=True, check=True
            ).stdout.decode()
            assert code in text and "Nguyễn Thị Hồng Nhung" in text
            ok(
                await api.post(
                    f"/api/intake/dossiers/{code}/actions/start_processing", headers=who["desk_officer"], json={}
                )
            )

            # 3. the work dossier appears in document by itself
            async def work_file() -> list[dict[str, Any]]:
                return ok(
                    await api.get("/api/document/workfiles", params={"dossier_code": code}, headers=who["specialist"])
                ).json()["items"]

            work_files = await eventually(work_file, within=60, what="the work dossier")
            assert len(work_files) == 1

            # 4. a specialist drafts the result inside it
            draft = ok(
                await api.post(
                    "/api/document/documents",
                    headers=who["specialist"],
                    json={
                        "agency": AGENCY,
                        "type_key": "QĐ",
                        "subject": "Quyết định đăng ký khai sinh cho cháu Nguyễn Minh Khang",
                        "work_file_id": work_files[0]["id"],
                        "signer": {"position": "Chủ tịch", "full_name": "Phạm Văn Đức"},
                    },
                ),
                201,
            )
            doc_id = draft.json()["id"]
            etag = draft.headers["etag"]
            content = pdf(["ỦY BAN NHÂN DÂN TỈNH THANH HÓA", "QUYẾT ĐỊNH", "Về việc đăng ký khai sinh"])

            async def upload(body: bytes, stage: str, who_: str) -> str:
                nonlocal etag
                r = ok(
                    await api.post(
                        f"/api/document/documents/{doc_id}/content",
                        params={"stage": stage},
                        content=body,
                        headers={**who[who_], "If-Match": etag, "Content-Type": "application/pdf"},
                    ),
                    201,
                )
                etag = r.headers["etag"]
                return etag

            await upload(content, "draft", "specialist")

            # 5. the leader signs with the key in the token
            certs = ok(
                await api.get("/api/signing/certificates", params={"owner": "leader"}, headers=who["leader"])
            ).json()
            person = next(c for c in certs if c["kind"] == "person")
            signed = ok(
                await api.post(
                    "/api/signing/sign",
                    params={"kind": "person", "certificate": person["serial"]},
                    content=content,
                    headers={**who["leader"], "X-Signing-PIN": DEMO_PIN, "Content-Type": "application/pdf"},
                )
            ).content
            await upload(signed, "signed_by_leader", "leader")

            # 6. the clerk numbers, seals and issues
            numbering = ok(await api.post(f"/api/document/documents/{doc_id}/number", headers=who["clerk"], json={}))
            number = numbering.json()
            etag = ok(await api.get(f"/api/document/documents/{doc_id}", headers=who["clerk"])).headers["etag"]
            assert number["code"].endswith("/QĐ-UBND")
            numbered = ok(
                await api.post(
                    "/api/signing/fill-number",
                    params={"document": doc_id},
                    content=signed,
                    headers={**who["clerk"], "Content-Type": "application/pdf"},
                )
            ).content
            await upload(numbered, "numbered", "clerk")
            seals = ok(
                await api.get("/api/signing/certificates", params={"kind": "organisation"}, headers=who["clerk"])
            ).json()
            seal = next(c for c in seals if c["agency"] == AGENCY)
            sealed = ok(
                await api.post(
                    "/api/signing/sign",
                    params={"kind": "organisation", "certificate": seal["serial"]},
                    content=numbered,
                    headers={**who["clerk"], "X-Signing-PIN": DEMO_PIN, "Content-Type": "application/pdf"},
                )
            ).content
            await upload(sealed, "sealed", "clerk")
            ok(
                await api.post(
                    f"/api/document/documents/{doc_id}/issue", headers={**who["clerk"], "If-Match": etag}, json={}
                )
            )

            # 7. intake finishes the dossier by itself
            async def finished() -> dict[str, Any] | None:
                d = ok(await api.get(f"/api/intake/dossiers/{code}", headers=who["desk_officer"])).json()
                return d if d["status"] == 9 else None

            dossier = await eventually(finished, within=60, what="intake to finish the dossier from document.issued")
            assert number["code"] in json.dumps(dossier, ensure_ascii=False)

            # 8. the desk returns it; 9. the citizen's public look-up shows it
            ok(
                await api.post(
                    f"/api/intake/dossiers/{code}/actions/return_result", headers=who["desk_officer"], json={}
                )
            )
            looked = ok(await api.get("/api/intake/lookup", params={"code": code, "secret": secret})).json()
            assert looked["status"] == 10
            assert "applicant" not in looked and "Nguyễn" not in json.dumps(looked, ensure_ascii=False)
            wrong = await api.get("/api/intake/lookup", params={"code": code, "secret": "x" * len(secret)})
            assert wrong.status_code == 404

            # 10. audit holds every step; the export verifies with the standalone verifier
            async def audited() -> list[dict[str, Any]]:
                entries = ok(
                    await api.get("/api/audit/entries", params={"subject": code, "limit": 500}, headers=who["auditor"])
                ).json()["items"]
                types = {e["type"] for e in entries}
                needed = {
                    f"vn.lienthong.dossier.{a}.v1"
                    for a in ("received", "accept", "start_processing", "finish", "return_result")
                }
                return entries if needed <= types else []

            entries = await eventually(audited, within=60, what="audit to hold every step")
            issued_events = ok(
                await api.get(
                    "/api/audit/entries", params={"type": "vn.lienthong.document.issued.v1"}, headers=who["auditor"]
                )
            ).json()["items"]
            assert any(e["record"]["data"].get("dossier_code") == code for e in issued_events)
            key = ok(await api.get("/api/audit/key")).json()["verifier_key"]
            last_index = max(e["index"] for e in entries + issued_events)

            async def checkpoint() -> dict[str, Any] | None:
                r = await api.get("/api/audit/checkpoints/latest")
                return r.json() if r.status_code == 200 and r.json()["size"] > last_index else None

            await eventually(checkpoint, within=60, what="a checkpoint covering the flow")
            export = ok(await api.get("/api/audit/export", params={"from": 0}, headers=who["auditor"])).content
            (tmp_path / "export.jsonl").write_bytes(export)
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
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert verified.stdout.startswith("OK")

            # 11. the signed result validates with pdfsig and pyHanko
            result = ok(await api.get(f"/api/document/documents/{doc_id}/content", headers=who["desk_officer"])).content
            assert result == sealed
            (tmp_path / "result.pdf").write_bytes(result)
            ca = ok(await api.get("/api/signing/pki/ca")).text
            (tmp_path / "ca.pem").write_text(ca)
            pdfsig = subprocess.run(["pdfsig", str(tmp_path / "result.pdf")], capture_output=True, text=True).stdout
            assert pdfsig.count("Signature Validation: Signature is Valid.") == 2, pdfsig
            certs_pem = ca.split("-----END CERTIFICATE-----")
            (tmp_path / "root.pem").write_text(certs_pem[0] + "-----END CERTIFICATE-----\n")
            (tmp_path / "others.pem").write_text("-----END CERTIFICATE-----".join(certs_pem[1:]))
            validate = subprocess.run(
                [
                    str(Path(sys.executable).parent / "pyhanko"),
                    "sign",
                    "validate",
                    "--no-revocation-check",
                    "--trust",
                    str(tmp_path / "root.pem"),
                    "--trust-replace",
                    "--other-certs",
                    str(tmp_path / "others.pem"),
                    str(tmp_path / "result.pdf"),
                ],
                capture_output=True,
                text=True,
            )
            assert validate.returncode == 0, validate.stdout + validate.stderr

            # 12. the integrator's webhook got every event of the flow exactly once, signed
            flow_events = {(e["record"]["source"], e["record"]["id"]) for e in entries + issued_events}
            flow_ids = {i for _, i in flow_events}

            async def webhooks_in() -> bool:
                return flow_ids <= set(receiver.ids)

            await eventually(webhooks_in, within=60, what="webhook deliveries")
            assert receiver.bad_signatures == 0
            assert all(receiver.ids[i] == 1 for i in flow_ids)
            for event in receiver.received:
                from_json(json.dumps(event))  # what we send is a CloudEvent the SDK accepts

            # ...and so did a plain AMQP consumer bound to the exchange
            if pika_consumer:

                async def amqp_in() -> bool:
                    return flow_ids <= {e["id"] for e in pika_consumer.events}

                await eventually(amqp_in, within=60, what="AMQP consumer")
                assert all(e["content_type"].startswith("application/cloudevents+json") for e in pika_consumer.events)
    finally:
        if pika_consumer:
            pika_consumer.stop()
        await receiver.stop()


async def test_main_flow_embedded(tmp_path: Path) -> None:
    async with suites.embedded(tmp_path, **FLOW_SETTINGS) as running:
        await main_flow(running, tmp_path, amqp_url=None)


@pytest.mark.pg
@pytest.mark.amqp
async def test_main_flow_distributed(tmp_path: Path) -> None:
    env = {f"LIENTHONG_{k.upper()}": json.dumps(v) for k, v in FLOW_SETTINGS.items()}
    async with suites.distributed(tmp_path, extra_env=env) as running:
        await main_flow(running, tmp_path, amqp_url=running.env["LIENTHONG_AMQP_URL"])

"""The issue flow through the HTTP API: work dossier opened for a one-stop-shop dossier, draft,
leader's signature, number, organisation's signature, issue, delivery inside the deployment, recall."""

from __future__ import annotations

from services.document.state import DocumentState
from tests.services.document.conftest import DEPARTMENT, PROVINCE, DocumentApi, dossier_received
from tests.waiting import eventually

PDF = {"Content-Type": "application/pdf"}


async def _upload(api: DocumentApi, doc_id: int, data: bytes, etag: str, role: str, stage: str | None = None):
    params = {"stage": stage} if stage else {}
    return await api.client.post(
        f"/documents/{doc_id}/content",
        content=data,
        params=params,
        headers={**api.token(role, clearance=3), **PDF, "If-Match": etag},
    )


async def test_result_document_issued_in_the_dossier_work_file(api: DocumentApi, pdfs: dict[str, bytes]) -> None:
    specialist, clerk = api.token("specialist"), api.token("clerk", clearance=3)
    await api.publish("dossier.received", dossier_received("000.00.00.H56-260105-0007", status=2))

    async def work_file():
        r = await api.client.get("/workfiles", params={"dossier_code": "000.00.00.H56-260105-0007"}, headers=specialist)
        return r.json()["items"]

    [wf] = await eventually(work_file)
    assert wf["file_notation"] == "TTHC-260105-0007" and wf["organ_id"] == PROVINCE
    assert [e.data["dossier_code"] for e in await api.events("workfile.opened")] == ["000.00.00.H56-260105-0007"]

    r = await api.client.post(
        "/documents",
        headers=specialist,
        json={
            "agency": PROVINCE,
            "type_key": "QĐ",
            "subject": "Quyết định phê duyệt kết quả giải quyết hồ sơ",
            "work_file_id": wf["id"],
            "signer": {"position": "Chủ tịch", "full_name": "Phạm Văn Đức"},
            "recipients": [{"organ_id": DEPARTMENT, "organ_name": "Sở Tư pháp"}],
            "urgency": "khan",
        },
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["status"] == "draft" and doc["dossier_code"] == "000.00.00.H56-260105-0007" and doc["code"] is None

    r = await _upload(api, doc["id"], pdfs["draft"], r.headers["ETag"], "specialist")
    assert r.status_code == 201, r.text
    assert r.json()["number"] == 1 and r.json()["signatures"] == 0
    r = await _upload(api, doc["id"], pdfs["leader"], r.headers["ETag"], "leader", "signed_by_leader")
    assert r.status_code == 201, r.text
    assert r.json()["signatures"] == 1

    # the number is the system's, asked once
    r = await api.client.post(f"/documents/{doc['id']}/number", headers=clerk)
    assert r.status_code == 200, r.text
    number = r.json()
    assert number["code"] == "01/QĐ-UBND" and number["code_number"] == "01" and number["code_notation"] == "QĐ-UBND"
    again = await api.client.post(f"/documents/{doc['id']}/number", headers=clerk)
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"

    # issuing needs the version written after numbering
    r = await api.client.post(f"/documents/{doc['id']}/issue", headers=clerk)
    assert r.status_code == 409
    etag = (await api.client.get(f"/documents/{doc['id']}", headers=clerk)).headers["ETag"]
    r = await _upload(api, doc["id"], pdfs["sealed"], etag, "clerk", "sealed")
    assert r.status_code == 201, r.text
    sealed_sha = r.json()["sha256"]
    r = await api.client.post(f"/documents/{doc['id']}/issue", headers=clerk)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "issued"

    [issued] = await api.events("document.issued")
    assert issued.data["dossier_code"] == "000.00.00.H56-260105-0007"
    assert issued.data["code"] == "01/QĐ-UBND" and issued.data["content_sha256"] == sealed_sha
    assert issued.data["recipients"] == [{"organ_id": DEPARTMENT, "organ_name": "Sở Tư pháp"}]
    assert issued.data["subject"] == "Quyết định phê duyệt kết quả giải quyết hồ sơ"
    r = await api.client.get(issued.data["download_path"].removeprefix("/api/document"), headers=specialist)
    assert r.status_code == 200 and r.content == pdfs["sealed"]

    # the department of the same deployment receives it, registered with its arrival number
    dept_clerk = api.token("clerk", agency=DEPARTMENT, clearance=3)

    async def incoming():
        r = await api.client.get("/documents", params={"direction": "incoming"}, headers=dept_clerk)
        return r.json()["items"]

    [copy] = await eventually(incoming)
    assert copy["agency"] == DEPARTMENT and copy["code"] == "01/QĐ-UBND" and copy["arrival_number"] == 1
    assert copy["issuing_organ_id"] == PROVINCE
    r = await api.client.get(f"/documents/{copy['id']}/content", headers=dept_clerk)
    assert r.content == pdfs["sealed"]
    assert [e.data["agency"] for e in await api.events("document.received")] == [DEPARTMENT]
    # the department does not see the province's own outgoing document
    assert (await api.client.get(f"/documents/{doc['id']}", headers=dept_clerk)).status_code == 404

    # recall: the receiver's copy is withdrawn
    r = await api.client.post(f"/documents/{doc['id']}/recall", headers=clerk, json={"reason": "Sai sót"})
    assert r.status_code == 200 and r.json()["status"] == "recalled"

    async def withdrawn():
        r = await api.client.get(f"/documents/{copy['id']}", headers=dept_clerk)
        return r.json()["status"] == "recalled"

    await eventually(withdrawn)
    assert (await api.client.get(f"/documents/{copy['id']}/content", headers=dept_clerk)).status_code == 404


async def test_bad_uploads_store_nothing(api: DocumentApi, pdfs: dict[str, bytes]) -> None:
    specialist = api.token("specialist")
    r = await api.client.post(
        "/documents",
        headers=specialist,
        json={"agency": PROVINCE, "type_key": "CV", "unit_abbr": "VP", "subject": "Công văn về việc báo cáo"},
    )
    doc, etag = r.json(), r.headers["ETag"]

    not_pdf = await _upload(api, doc["id"], b"PK\x03\x04 a zip pretending", etag, "specialist")
    assert not_pdf.status_code == 415 and not_pdf.headers["content-type"] == "application/problem+json"
    missing = await api.client.post(
        f"/documents/{doc['id']}/content", content=pdfs["draft"], headers={**specialist, **PDF}
    )
    assert missing.status_code == 428
    stale = await _upload(api, doc["id"], pdfs["draft"], '"999"', "specialist")
    assert stale.status_code == 412
    too_big = await _upload(api, doc["id"], b"%PDF-" + b"0" * (3 * 1024 * 1024), etag, "specialist")
    assert too_big.status_code == 413
    unsigned = await _upload(api, doc["id"], pdfs["draft"], etag, "leader", "signed_by_leader")
    assert unsigned.status_code == 422
    by_specialist = await _upload(api, doc["id"], pdfs["leader"], etag, "specialist", "signed_by_leader")
    assert by_specialist.status_code == 403
    early_number = await api.client.post(f"/documents/{doc['id']}/number", headers=api.token("clerk"))
    assert early_number.status_code == 409

    r = await api.client.get(f"/documents/{doc['id']}", headers=specialist)
    assert r.json()["content_version"] == 0 and r.headers["ETag"] == etag
    assert (await api.client.get(f"/documents/{doc['id']}/versions", headers=specialist)).json()["items"] == []
    blobs = DocumentState.of(api.runtime).toolkit.blobs.root
    assert [p for p in blobs.rglob("*") if p.is_file()] == []

    # the công văn's symbol is issuer-unit
    ok = await _upload(api, doc["id"], pdfs["leader"], etag, "leader", "signed_by_leader")
    assert ok.status_code == 201
    r = await api.client.post(f"/documents/{doc['id']}/number", headers=api.token("clerk"))
    assert r.json()["code"] == "01/UBND-VP"
    # a version that rewrites the signed bytes instead of appending is refused
    etag = (await api.client.get(f"/documents/{doc['id']}", headers=specialist)).headers["ETag"]
    rewritten = await _upload(api, doc["id"], pdfs["other"], etag, "clerk", "numbered")
    assert rewritten.status_code == 422


async def test_bad_json_is_refused(api: DocumentApi) -> None:
    specialist = api.token("specialist")
    wrong_type = await api.client.post(
        "/documents", headers=specialist, json={"agency": PROVINCE, "type_key": 5, "subject": 1}
    )
    assert wrong_type.status_code == 422
    unknown = await api.client.post(
        "/documents", headers=specialist, json={"agency": PROVINCE, "type_key": "XYZ", "subject": "a"}
    )
    assert unknown.status_code == 422
    extra = await api.client.post(
        "/documents", headers=specialist, json={"agency": PROVINCE, "type_key": "QĐ", "subject": "a", "x": 1}
    )
    assert extra.status_code == 422
    outside = await api.client.post(
        "/documents", headers=specialist, json={"agency": "000.00.00.H26", "type_key": "QĐ", "subject": "a"}
    )
    assert outside.status_code == 403
    typo = await api.client.get("/documents", params={"subjcet": "a"}, headers=specialist)
    assert typo.status_code == 400
    anonymous = await api.client.get("/documents")
    assert anonymous.status_code == 401
    citizen = await api.client.get("/documents", headers=api.token("citizen"))
    assert citizen.status_code == 403
    r = await api.client.get("/documents", headers=specialist)
    assert r.json() == {"items": [], "next": None}

"""Secrecy on every read path, diacritics-insensitive search, incoming registration with
duplicate warnings, the registers, and processing with overdue lists."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import update

from services.document.models import Assignment
from services.document.service import vietnam_today
from services.document.state import DocumentState
from tests.services.document.conftest import PROVINCE, DocumentApi

PDF = {"Content-Type": "application/pdf"}


async def test_secret_documents_are_invisible_below_clearance(api: DocumentApi, pdfs: dict[str, bytes]) -> None:
    leader = api.token("leader", clearance=3)
    mat_only = api.token("specialist", clearance=1)
    r = await api.client.post(
        "/documents",
        headers=leader,
        json={"agency": PROVINCE, "type_key": "CT", "subject": "Chỉ thị tối mật về phòng thủ", "secrecy": "toi_mat"},
    )
    assert r.status_code == 201
    doc = r.json()
    r = await api.client.post(
        f"/documents/{doc['id']}/content",
        content=pdfs["draft"],
        headers={**leader, **PDF, "If-Match": r.headers["ETag"]},
    )
    assert r.status_code == 201
    sha = r.json()["sha256"]

    for path in (
        f"/documents/{doc['id']}",
        f"/documents/{doc['id']}/content",
        f"/documents/{doc['id']}/versions",
        f"/documents/{doc['id']}/attachments",
    ):
        assert (await api.client.get(path, headers=mat_only)).status_code == 404, path
    assert (await api.client.get("/documents", headers=mat_only)).json()["items"] == []
    assert (await api.client.get("/documents", params={"q": "phong thu"}, headers=mat_only)).json()["items"] == []
    assert [
        d["id"] for d in (await api.client.get("/documents", params={"q": "phong thu"}, headers=leader)).json()["items"]
    ] == [doc["id"]]
    # a caller without clearance cannot create one either
    r = await api.client.post(
        "/documents",
        headers=mat_only,
        json={"agency": PROVINCE, "type_key": "CT", "subject": "x", "secrecy": "tuyet_mat"},
    )
    assert r.status_code == 403

    # encrypted at rest, decrypted for the cleared reader
    blobs = DocumentState.of(api.runtime).toolkit.blobs.root
    [stored] = [p for p in blobs.rglob("*.enc")]
    raw = stored.read_bytes()
    assert stored.name.startswith(sha) and b"%PDF-" not in raw and pdfs["draft"][:200] not in raw
    r = await api.client.get(f"/documents/{doc['id']}/content", headers=leader)
    assert r.content == pdfs["draft"]

    # a secret incoming document's events carry no subject
    clerk = api.token("clerk", clearance=3)
    r = await api.client.post(
        "/documents/incoming",
        headers=clerk,
        json={
            "agency": PROVINCE,
            "type_key": "CV",
            "subject": "Nội dung mật",
            "code": "12/BCA-A03",
            "issuing_organ": {"organ_id": "000.00.00.G01", "organ_name": "Bộ Công an"},
            "secrecy": "mat",
        },
    )
    assert r.status_code == 201, r.text
    [event] = await api.events("document.registered")
    assert event.data["subject"] is None and event.data["secret"] is True
    assert "Nội dung mật" not in event.model_dump_json()


async def test_search_ignores_diacritics_and_filters(api: DocumentApi) -> None:
    specialist = api.token("specialist")
    subjects = [
        ("QĐ", "Quyết định phê duyệt kế hoạch chuyển đổi số năm 2026", "hoa_toc"),
        ("KH", "Kế hoạch phê duyệt dự toán", "thuong"),
        ("QĐ", "Quyết định về việc thành lập tổ công tác", "thuong"),
    ]
    ids = []
    for type_key, subject, urgency in subjects:
        r = await api.client.post(
            "/documents",
            headers=specialist,
            json={"agency": PROVINCE, "type_key": type_key, "subject": subject, "urgency": urgency},
        )
        ids.append(r.json()["id"])

    async def search(**params: str) -> list[int]:
        r = await api.client.get("/documents", params=params, headers=specialist)
        assert r.status_code == 200, r.text
        return sorted(d["id"] for d in r.json()["items"])

    assert await search(q="quyet dinh phe duyet") == [ids[0]]
    assert await search(q="QUYẾT ĐỊNH") == [ids[0], ids[2]]
    assert await search(q="phe duyet") == [ids[0], ids[1]]
    assert await search(q="chuyen doi so") == [ids[0]]
    assert await search(q="phe duyet", type_key="KH") == [ids[1]]
    assert await search(q="quyet dinh", urgency="hoa_toc") == [ids[0]]
    assert await search(q="khong co") == []
    assert (await api.client.get("/documents", params={"urgency": "rat_khan"}, headers=specialist)).status_code == 422


async def test_incoming_numbers_duplicates_and_registers(api: DocumentApi) -> None:
    clerk = api.token("clerk", clearance=3)
    body = {
        "agency": PROVINCE,
        "type_key": "CT",
        "subject": "Chỉ thị về tăng cường chuyển đổi số",
        "code": "15/CT-TTg",
        "issued_date": "2026-05-22",
        "issuing_organ": {"organ_id": "000.00.00.G01", "organ_name": "Thủ tướng Chính phủ"},
    }
    first = await api.client.post("/documents/incoming", headers=clerk, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["arrival_number"] == 1 and first.json()["warnings"] == []
    second = await api.client.post("/documents/incoming", headers=clerk, json=body)
    assert second.status_code == 201
    assert second.json()["arrival_number"] == 2
    assert second.json()["duplicate_of"] == [first.json()["id"]]
    assert "15/CT-TTg" in second.json()["warnings"][0]
    bad = await api.client.post("/documents/incoming", headers=clerk, json={**body, "code": "15 / /CT-TTg"})
    assert bad.status_code == 422

    year = vietnam_today().year
    r = await api.client.get("/registers/incoming", params={"agency": PROVINCE, "year": year}, headers=clerk)
    assert r.status_code == 200
    rows = r.json()["rows"]
    assert [row["so_den"] for row in rows] == ["1", "2"]
    assert rows[0]["so_ky_hieu"] == "15/CT-TTg" and rows[0]["ngay_thang"] == "22/05/2026"
    assert rows[0]["tac_gia"] == "Thủ tướng Chính phủ"
    r = await api.client.get(
        "/registers/incoming", params={"agency": PROVINCE, "year": year, "format": "csv"}, headers=clerk
    )
    assert r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert table[0][:3] == ["Ngày đến", "Số đến", "Tác giả"] and len(table) == 3
    r = await api.client.get("/registers/outgoing", params={"agency": PROVINCE, "year": year}, headers=clerk)
    assert r.json()["rows"] == [] and r.json()["columns"][0]["title"] == "Số, ký hiệu văn bản"
    r = await api.client.get("/registers/outgoing", params={"agency": "000.00.00.H26", "year": year}, headers=clerk)
    assert r.status_code == 403


async def test_assignment_due_dates_comments_and_overdue(api: DocumentApi) -> None:
    clerk, leader = api.token("clerk"), api.token("leader", sub="lanhdao")
    worker = api.token("specialist", sub="chuyenvien")
    r = await api.client.post(
        "/documents/incoming",
        headers=clerk,
        json={
            "agency": PROVINCE,
            "type_key": "CV",
            "subject": "Đề nghị báo cáo",
            "code": "88/STP-VP",
            "issuing_organ": {"organ_id": "000.00.17.H56", "organ_name": "Sở Tư pháp"},
            "urgency": "khan",
        },
    )
    doc = r.json()
    r = await api.client.post(
        f"/documents/{doc['id']}/assignments",
        headers=leader,
        json={"assignee": "chuyenvien", "assignee_name": "Trần Thị Chuyên"},
    )
    assert r.status_code == 201, r.text
    assignment = r.json()
    calendar = DocumentState.of(api.runtime).toolkit.calendar
    assert assignment["due_date"] == calendar.add_working_days(vietnam_today(), 3).isoformat()
    assert (
        await api.client.post(f"/documents/{doc['id']}/assignments", headers=worker, json={"assignee": "x"})
    ).status_code == 403
    [event] = await api.events("document.assigned")
    assert event.data["assignee"] == "chuyenvien" and event.data["subject"] == "Đề nghị báo cáo"

    assert (await api.client.get("/assignments", params={"overdue": "true"}, headers=leader)).json()["items"] == []
    async with api.runtime.db.sessionmaker() as session:
        await session.execute(update(Assignment).values(due_date=vietnam_today() - timedelta(days=1)))
        await session.commit()
    overdue = (await api.client.get("/assignments", params={"overdue": "true"}, headers=leader)).json()["items"]
    assert [a["id"] for a in overdue] == [assignment["id"]] and overdue[0]["overdue"] is True
    assert len((await api.client.get("/assignments", params={"mine": "true"}, headers=worker)).json()["items"]) == 1

    r = await api.client.post(f"/documents/{doc['id']}/comments", headers=worker, json={"text": "Đã dự thảo báo cáo"})
    assert r.status_code == 201
    r = await api.client.post(f"/assignments/{assignment['id']}/complete", headers=worker)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert (await api.client.post(f"/assignments/{assignment['id']}/complete", headers=worker)).status_code == 409
    assert (await api.client.get(f"/documents/{doc['id']}", headers=worker)).json()["status"] == "completed"
    assert (await api.client.get("/assignments", params={"overdue": "true"}, headers=leader)).json()["items"] == []

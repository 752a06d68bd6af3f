"""Every list of document pages with ``limit``, ``cursor`` and ``next``: no row twice, none
missed, however many there are (the work dossier list used to stop at the 200 oldest)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.document.models import Assignment, Comment, WorkFile
from services.document.service import new_document, now_utc, vietnam_today
from tests.services.document.conftest import PROVINCE, DocumentApi


async def walk(api: DocumentApi, path: str, headers: dict[str, str], *, key: str = "items", **params: Any) -> list[Any]:
    """Every row of a list, page by page; each page but the last is full."""
    rows: list[Any] = []
    cursor = None
    pages = 0
    while True:
        r = await api.client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        rows.extend(body[key])
        pages += 1
        cursor = body["next"]
        if cursor is None:
            return rows
        assert len(body[key]) == params["limit"]
        assert pages < 1000


async def test_work_dossiers_page_past_the_first_two_hundred(api: DocumentApi) -> None:
    now = now_utc()
    async with api.runtime.db.sessionmaker() as session:
        session.add_all(
            WorkFile(organ_id=PROVINCE, file_catalog=2026, file_notation=f"HS-{i:03d}", title=f"Hồ sơ {i}",
                     dossier_code=None, status="open" if i % 3 else "closed", opened_at=now)
            for i in range(230)
        )
        await session.commit()
    specialist = api.token("specialist")
    rows = await walk(api, "/workfiles", specialist, limit=100)
    assert len(rows) == 230 and len({w["id"] for w in rows}) == 230
    assert [w["id"] for w in rows] == sorted((w["id"] for w in rows), reverse=True)  # newest first
    closed = await walk(api, "/workfiles", specialist, limit=7, status="closed")
    assert len(closed) == 77 and {w["status"] for w in closed} == {"closed"}
    by_year = await walk(api, "/workfiles", specialist, limit=500, file_catalog=2025)
    assert by_year == []
    bad = await api.client.get("/workfiles", params={"cursor": "not-ours"}, headers=specialist)
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    forged = await api.client.get("/workfiles", params={"cursor": "WyJ4Il0"}, headers=specialist)  # ["x"]
    assert forged.status_code == 400
    assert (await api.client.get("/workfiles", params={"limit": 0}, headers=specialist)).status_code == 422


async def test_documents_and_their_sub_lists_page(api: DocumentApi, pdfs: dict[str, bytes]) -> None:
    now = now_utc()
    today = vietnam_today()
    async with api.runtime.db.sessionmaker() as session:
        docs = [
            new_document(direction="outgoing", agency=PROVINCE, status="draft", type_key="KH", type_name="Kế hoạch",
                         subject=f"Kế hoạch số {i}", created_by="t")
            for i in range(12)
        ]
        session.add_all(docs)
        await session.flush()
        first = docs[0]
        session.add_all(
            Comment(document_id=first.id, author="a", author_name="A", text=f"Ý kiến {i}", created_at=now)
            for i in range(9)
        )
        incoming = new_document(direction="incoming", agency=PROVINCE, status="registered", type_key="CV",
                                type_name="Công văn", subject="Đề nghị", created_by="t")
        session.add(incoming)
        await session.flush()
        session.add_all(
            Assignment(document_id=incoming.id, agency=PROVINCE, assignee=f"u{i % 2}", assignee_name="X",
                       role="support", assigned_by="leader", due_date=today + timedelta(days=i % 4), status="open",
                       assigned_at=now)
            for i in range(11)
        )
        await session.commit()
    leader = api.token("leader")
    listed = await walk(api, "/documents", leader, limit=5)
    assert len(listed) == 13 and len({d["id"] for d in listed}) == 13
    assert len(await walk(api, "/documents", leader, limit=5, direction="outgoing")) == 12
    comments = await walk(api, f"/documents/{first.id}/comments", leader, limit=4)
    assert [c["text"] for c in comments] == [f"Ý kiến {i}" for i in range(9)]
    assigned = await walk(api, "/assignments", leader, limit=3)
    assert len({a["id"] for a in assigned}) == 11
    assert [a["due_date"] for a in assigned] == sorted(a["due_date"] for a in assigned)
    assert len(await walk(api, "/assignments", leader, limit=2, assignee="u1")) == 5
    assert len(await walk(api, f"/documents/{incoming.id}/assignments", leader, limit=4)) == 11
    versions = await api.client.get(f"/documents/{first.id}/versions", headers=leader)
    assert versions.json() == {"items": [], "next": None}
    attachments = await api.client.get(f"/documents/{first.id}/attachments", headers=leader)
    assert attachments.json() == {"items": [], "next": None}


async def test_a_register_pages_in_json_and_is_whole_in_csv(api: DocumentApi) -> None:
    today = vietnam_today()
    async with api.runtime.db.sessionmaker() as session:
        for i in range(1, 8):
            doc = new_document(direction="outgoing", agency=PROVINCE, status="issued", type_key="QĐ",
                               type_name="Quyết định", subject=f"Quyết định {i}", created_by="t",
                               series_key=f"{today.year}/qppl:QĐ" if i % 2 else f"{today.year}/hc",
                               code_number=i, code_text=f"{i:02d}/QĐ-UBND", code_notation="QĐ-UBND",
                               issued_date=today)
            session.add(doc)
        await session.commit()
    clerk = api.token("clerk")
    params = {"agency": PROVINCE, "year": today.year}
    rows = await walk(api, "/registers/outgoing", clerk, key="rows", limit=3, **params)
    assert [r["so_ky_hieu"] for r in rows] == ["02/QĐ-UBND", "04/QĐ-UBND", "06/QĐ-UBND",
                                               "01/QĐ-UBND", "03/QĐ-UBND", "05/QĐ-UBND", "07/QĐ-UBND"]
    csv = await api.client.get("/registers/outgoing", params={**params, "format": "csv", "limit": 2}, headers=clerk)
    assert csv.status_code == 200 and csv.text.count("/QĐ-UBND") == 7
    bad = await api.client.get("/registers/incoming", params={**params, "cursor": "x"}, headers=clerk)
    assert bad.status_code == 400

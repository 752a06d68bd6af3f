"""Numbers, registers, the Directive 15 report and edXML follow Vietnam's calendar day, also at
the edges: 16:59 UTC on 31 December is still 2026 in Thanh Hóa, 17:01 UTC is already New Year's
Day, and so is 23:30 UTC. A document issued then is dated 01/01 and numbered from 01 again."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.document import edxml
from services.document.exchange import outbound
from services.document.models import Document, ExchangeMessage
from services.document.state import DocumentState
from shared import clock
from tests.services.document.conftest import DEPARTMENT, PROVINCE, DocumentApi, signed_draft

PDF = {"Content-Type": "application/pdf"}
EARLIER = datetime(2026, 12, 31, 9, 0, tzinfo=UTC)  # 16:00 on 31/12 in Vietnam


async def issue(api: DocumentApi, pdfs: dict[str, bytes], subject: str) -> dict[str, Any]:
    clerk = api.token("clerk", clearance=3)
    doc = await signed_draft(api, pdfs, subject=subject, recipients=[{"organ_id": "000.00.00.H41"}])
    number = await api.client.post(f"/documents/{doc['id']}/number", headers=clerk)
    assert number.status_code == 200, number.text
    etag = (await api.client.get(f"/documents/{doc['id']}", headers=clerk)).headers["ETag"]
    r = await api.client.post(f"/documents/{doc['id']}/content", params={"stage": "sealed"}, content=pdfs["sealed"],
                              headers={**clerk, **PDF, "If-Match": etag})
    assert r.status_code == 201, r.text
    r = await api.client.post(f"/documents/{doc['id']}/issue", headers=clerk)
    assert r.status_code == 200, r.text
    return {**r.json(), "series": number.json()["series"]}


async def register(api: DocumentApi, subject: str) -> dict[str, Any]:
    r = await api.client.post(
        "/documents/incoming",
        headers=api.token("clerk"),
        json={"agency": PROVINCE, "type_key": "CV", "subject": subject, "code": "15/STP-VP",
              "issuing_organ": {"organ_id": DEPARTMENT}},
    )
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.parametrize(
    ("at", "vn_day"),
    [
        (datetime(2026, 12, 31, 16, 59, tzinfo=UTC), date(2026, 12, 31)),
        (datetime(2026, 12, 31, 17, 1, tzinfo=UTC), date(2027, 1, 1)),
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), date(2027, 1, 1)),
    ],
    ids=["16:59Z", "17:01Z", "23:30Z"],
)
async def test_the_year_turns_on_vietnams_new_year(
    api: DocumentApi, pdfs: dict[str, bytes], at: datetime, vn_day: date
) -> None:
    new_year = vn_day.year == 2027
    with clock.shifted(EARLIER):
        earlier = await issue(api, pdfs, "Quyết định cuối năm")
        await register(api, "Công văn cuối năm")
    assert earlier["code"] == "01/QĐ-UBND" and earlier["issued_date"] == "2026-12-31"

    with clock.shifted(at):
        assert clock.vn_today() == vn_day
        doc = await issue(api, pdfs, "Quyết định đêm giao thừa")
        incoming = await register(api, "Công văn đêm giao thừa")

        # numbers restart at 01 on Vietnam's 1 January; the document carries Vietnam's date
        assert doc["code"] == ("01/QĐ-UBND" if new_year else "02/QĐ-UBND")
        assert doc["issued_date"] == vn_day.isoformat() and doc["series"] == f"{vn_day.year}/hc"
        assert incoming["arrival_number"] == (1 if new_year else 2)

        # registers count it in Vietnam's day and year
        leader = api.token("leader", clearance=3)
        day = vn_day.strftime("%d/%m/%Y")
        params = {"agency": PROVINCE, "year": vn_day.year}
        outgoing = (await api.client.get("/registers/outgoing", params=params, headers=leader)).json()["rows"]
        assert [(r["so_ky_hieu"], r["ngay_thang"], r["ngay_chuyen"]) for r in outgoing][-1] == (doc["code"], day, day)
        assert len(outgoing) == (1 if new_year else 2)
        arrived = (await api.client.get("/registers/incoming", params=params, headers=leader)).json()["rows"]
        assert [(r["so_den"], r["ngay_den"]) for r in arrived][-1] == (str(incoming["arrival_number"]), day)

        # the Directive 15 report of Vietnam's day holds what happened that day, and only that
        r = await api.client.get(
            "/reports/directive15",
            params={"from": vn_day.isoformat(), "to": vn_day.isoformat(), "agency": PROVINCE},
            headers=leader,
        )
        assert r.status_code == 200, r.text
        [province] = [a for a in r.json()["agencies"] if a["organ_id"] == PROVINCE]
        assert province["measures"]["created"]["total"] == (2 if new_year else 4)
        assert province["measures"]["signed"]["total"] == (1 if new_year else 2)

        # edXML: the promulgation date and the exchange id carry Vietnam's date
        kit, blobs = DocumentState.of(api.runtime).exchange, DocumentState.of(api.runtime).toolkit
        async with api.runtime.db.sessionmaker() as session:
            row = await session.get(Document, doc["id"])
            assert row is not None
            exchange_id = outbound.exchange_id_for(row)
            message = ExchangeMessage(partner="000.00.00.H41", exchange_id=exchange_id, kind="envelope")
            envelope = await outbound.build_document_envelope(session, kit, blobs, row, message)
        assert exchange_id == f"{PROVINCE},{vn_day.strftime('%Y/%m/%d')},{doc['code']}"
        parsed = edxml.parse_envelope(envelope, trusted_certs=[kit.identity.certificate], limits=kit.limits)
        assert parsed.header.promulgation_info.promulgation_date == vn_day

"""The Directive 15 report over a small set of documents: shares per agency and level, JSON and
CSV, level start dates, and who may read it."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from services.document.config import AgencyProfile
from services.document.state import DocumentState
from shared import clock
from tests.services.document.conftest import DEPARTMENT, OTHER, PROVINCE, DocumentApi
from tests.waiting import eventually

PDF = {"Content-Type": "application/pdf"}


async def _issue_to_department(api: DocumentApi, pdfs: dict[str, bytes]) -> dict[str, Any]:
    specialist, leader, clerk = (api.token(r, clearance=3) for r in ("specialist", "leader", "clerk"))
    r = await api.client.post(
        "/documents",
        headers=specialist,
        json={
            "agency": PROVINCE,
            "type_key": "KH",
            "subject": "Kế hoạch chuyển đổi số năm 2026",
            "recipients": [{"organ_id": DEPARTMENT, "organ_name": "Sở Tư pháp"}],
        },
    )
    doc = r.json()
    r = await api.client.post(
        f"/documents/{doc['id']}/content",
        content=pdfs["leader"],
        params={"stage": "signed_by_leader"},
        headers={**leader, **PDF, "If-Match": r.headers["ETag"]},
    )
    assert r.status_code == 201, r.text
    assert (await api.client.post(f"/documents/{doc['id']}/number", headers=clerk)).status_code == 200
    etag = (await api.client.get(f"/documents/{doc['id']}", headers=clerk)).headers["ETag"]
    r = await api.client.post(
        f"/documents/{doc['id']}/content",
        content=pdfs["sealed"],
        params={"stage": "sealed"},
        headers={**clerk, **PDF, "If-Match": etag},
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(f"/documents/{doc['id']}/issue", headers=clerk)
    assert r.status_code == 200, r.text
    return r.json()


async def _paper_incoming(api: DocumentApi, subject: str, *, secrecy: str = "none") -> None:
    r = await api.client.post(
        "/documents/incoming",
        headers=api.token("clerk", clearance=3),
        json={
            "agency": PROVINCE,
            "type_key": "CV",
            "subject": subject,
            "code": "12/UBND-VP",
            "secrecy": secrecy,
            "issuing_organ": {"organ_id": "000.00.00.H26", "organ_name": "UBND tỉnh Hà Nam"},
        },
    )
    assert r.status_code == 201, r.text


async def test_directive15_shares_by_agency_and_level(api: DocumentApi, pdfs: dict[str, bytes]) -> None:
    # the department is set up as a district-level agency for this report
    settings = DocumentState.of(api.runtime).toolkit.settings
    settings.agencies[DEPARTMENT] = AgencyProfile(abbreviation="STP", name="Sở Tư pháp", tier="district")

    await _issue_to_department(api, pdfs)
    await _paper_incoming(api, "Công văn giấy về việc báo cáo")
    await _paper_incoming(api, "Công văn mật", secrecy="mat")
    dept_leader = api.token("leader", agency=DEPARTMENT)

    async def copy() -> list[dict[str, Any]]:
        r = await api.client.get("/documents", params={"direction": "incoming"}, headers=dept_leader)
        return r.json()["items"]

    [received] = await eventually(copy)
    r = await api.client.post(f"/documents/{received['id']}/assignments", headers=dept_leader, json={"assignee": "cv"})
    assert r.status_code == 201, r.text

    today = clock.vn_today()
    params = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    r = await api.client.get("/reports/directive15", params=params, headers=api.token("leader"))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["target"] == 1.0 and data["agency"] == PROVINCE
    by_agency = {a["organ_id"]: a for a in data["agencies"]}
    province, department = by_agency[PROVINCE], by_agency[DEPARTMENT]
    assert province["level"] == "province" and province["required_from"] == "2020-05-22"
    assert department["level"] == "district" and department["required_from"] == "2020-07-01"
    p = province["measures"]
    # issued electronically and signed; the paper letter has no file and no processing; the
    # secret letter is beyond this leader's clearance and is not counted at all
    assert (p["created"]["done"], p["created"]["total"], p["created"]["share"]) == (1, 2, 0.5)
    assert (p["exchanged"]["done"], p["exchanged"]["total"]) == (1, 2)
    assert (p["processed"]["done"], p["processed"]["total"], p["processed"]["gap"]) == (0, 1, 1.0)
    assert (p["signed"]["done"], p["signed"]["total"], p["signed"]["meets_target"]) == (1, 1, True)
    d = department["measures"]
    assert [d[m]["share"] for m in ("created", "exchanged", "processed")] == [1.0, 1.0, 1.0]
    assert d["signed"] == {"done": 0, "total": 0, "share": None, "gap": None, "meets_target": None}
    levels = {lv["level"]: lv for lv in data["levels"]}
    assert levels["commune"]["required_from"] == "2020-09-01" and levels["commune"]["measures"] is None
    assert "Chỉ thị 15/CT-UBND" in levels["province"]["reference"]
    assert "unverified" in levels["district"]["note"]

    cleared = await api.client.get("/reports/directive15", params=params, headers=api.token("leader", clearance=1))
    assert cleared.json()["agencies"][0]["measures"]["created"]["total"] == 3

    # CSV: one row per agency and measure, Vietnamese names intact
    r = await api.client.get("/reports/directive15", params={**params, "format": "csv"}, headers=api.token("auditor"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 8
    created = next(x for x in rows if x["organ_id"] == PROVINCE and x["measure"] == "created")
    assert (
        created["share"] == "0.5000"
        and created["meets_target"] == "no"
        and created["name"] == "Ủy ban nhân dân tỉnh Thanh Hóa"
    )

    # a department's auditor sees the department only; before the district's start date nothing is required
    r = await api.client.get(
        "/reports/directive15",
        params={"from": "2020-06-01", "to": "2020-06-30"},
        headers=api.token("auditor", agency=DEPARTMENT),
    )
    [only] = r.json()["agencies"]
    assert only["organ_id"] == DEPARTMENT and only["required_in_period"] is False
    assert only["measures"]["created"]["total"] == 0


async def test_directive15_is_for_leaders_admins_and_auditors_of_the_subtree(api: DocumentApi) -> None:
    params = {"from": "2026-01-01", "to": "2026-12-31"}
    assert (
        await api.client.get("/reports/directive15", params=params, headers=api.token("specialist"))
    ).status_code == 403
    outside = await api.client.get(
        "/reports/directive15", params={**params, "agency": PROVINCE}, headers=api.token("leader", agency=OTHER)
    )
    assert outside.status_code == 403 and outside.headers["content-type"] == "application/problem+json"
    upward = await api.client.get(
        "/reports/directive15", params={**params, "agency": PROVINCE}, headers=api.token("admin", agency=DEPARTMENT)
    )
    assert upward.status_code == 403
    backwards = await api.client.get(
        "/reports/directive15", params={"from": "2026-02-01", "to": "2026-01-01"}, headers=api.token("admin")
    )
    assert backwards.status_code == 422
    unknown = await api.client.get(
        "/reports/directive15", params={**params, "year": "2026"}, headers=api.token("admin")
    )
    assert unknown.status_code == 400

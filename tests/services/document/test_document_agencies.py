"""Demo agencies number their own results, and an agency's document capabilities are readable."""

from __future__ import annotations

from typing import Any

from services.document.config import get_settings
from services.intake.catalogue_seed import PROCEDURES
from tests.services.document.conftest import DocumentApi, document_api, signed_draft

WARD = "000.00.41.H56"  # UBND phường Hạc Thành: receives and decides 1.001193


def test_every_agency_of_the_demo_catalogue_has_a_numbering_profile() -> None:
    agencies = get_settings(demo=True).agencies
    needed = {p.receiving_agency for p in PROCEDURES}
    assert needed - set(agencies) == set()
    assert set(get_settings(demo=False).agencies) == {"000.00.00.H56"}
    assert agencies[WARD].abbreviation == "UBND" and agencies[WARD].tier == "commune"


async def test_a_ward_numbers_its_result_and_shows_its_series(tmp_path: Any, pdfs: dict[str, bytes]) -> None:
    async with document_api(tmp_path, demo=True, agencies={}) as api:
        doc = await signed_draft(api, pdfs, agency=WARD)
        clerk = api.token("clerk", agency=WARD, clearance=3)
        r = await api.client.post(f"/documents/{doc['id']}/number", headers=clerk)
        assert r.status_code == 200, r.text
        assert r.json()["code"] == "01/QĐ-UBND"

        r = await api.client.get(f"/agencies/{WARD}", headers=clerk)
        assert r.status_code == 200, r.text
        agency = r.json()
        year = agency["year"]
        assert agency["name"] == "Ủy ban nhân dân phường Hạc Thành" and agency["abbreviation"] == "UBND"
        assert agency["series"] == [{"key": f"{year}/hc", "last_number": 1}]
        assert [rule["in_force"] for rule in agency["series_rules"]] == [True]
        registers = {reg["kind"]: reg for reg in agency["registers"]}
        assert registers["outgoing"]["entries"] == 1 and registers["incoming"]["entries"] == 0
        listed = await api.client.get(
            registers["outgoing"]["path"].removeprefix("/api/document"), headers=clerk
        )
        assert [row["so_ky_hieu"] for row in listed.json()["rows"]] == ["01/QĐ-UBND"]

        # the province's people see their subtree; others do not
        province_leader = api.token("leader")
        assert (await api.client.get(f"/agencies/{WARD}", headers=province_leader)).status_code == 200
        other_ward = api.token("clerk", agency="000.00.42.H56")
        assert (await api.client.get(f"/agencies/{WARD}", headers=other_ward)).status_code == 403
        desk = api.token("desk_officer", agency=WARD)
        assert (await api.client.get(f"/agencies/{WARD}", headers=desk)).status_code == 403
        unknown = await api.client.get("/agencies/000.00.99.H56", headers=province_leader)
        assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"


async def test_without_a_profile_numbering_is_refused_with_the_reason(api: DocumentApi, pdfs: dict[str, bytes]) -> None:
    doc = await signed_draft(api, pdfs, agency=WARD)
    r = await api.client.post(f"/documents/{doc['id']}/number", headers=api.token("clerk", agency=WARD))
    assert r.status_code == 422 and "no numbering profile" in r.json()["detail"]
    after = await api.client.get(f"/documents/{doc['id']}", headers=api.token("clerk", agency=WARD))
    assert after.json()["status"] == "signed_by_leader" and after.json()["code"] is None

"""The dossier reads (one dossier, the list) send their views as JSON without building the
response model (``shared.http.json_response``): what they send must be, byte for byte, what the model
gives for the same dossier — the same fields in the same order, nothing more, the same dates,
booleans and nulls — in every status, with files, a supplement, an issued result applied or
waiting, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.intake.schemas import DossierOut, DossierPage
from tests.services.intake.harness import Intake, intake_on
from tests.services.intake.test_intake_flow import PATHS, _bring

BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("pg", id="pg", marks=pytest.mark.pg)]


async def _get_bytes(intake: Intake, code: str) -> bytes:
    r = await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.content


@pytest.mark.parametrize("backend", BACKENDS)
async def test_dossier_reads_send_what_the_response_model_would(backend: str, tmp_path: Path) -> None:
    async with intake_on(backend, tmp_path) as intake:
        codes = []
        for i, path in enumerate(PATHS, start=1):
            codes.append((await _bring(intake, path, i))["code"])
        # a result issued for a dossier whose status cannot take it waits on it (pending_results)
        await intake.issue(codes[0], 900, "900/QĐ-UBND")
        # an action answers through the model: the read that follows sends the same bytes
        r = await intake.act("desk_officer", codes[1], "start_processing")
        assert r.status_code == 200, r.text
        assert await _get_bytes(intake, codes[1]) == r.content

        seen_pending = seen_files = seen_result = seen_paused = False
        for code in codes:
            body = await _get_bytes(intake, code)
            model = DossierOut.model_validate_json(body)
            # the model reads it and writes it back unchanged: no field missing, none extra, none
            # of another type or form (a 1 for true, a date without its zone)
            assert model.model_dump_json().encode() == body, code
            seen_pending |= bool(model.pending_results)
            seen_files |= any(c.digitised for c in model.components)
            seen_result |= model.result is not None
            seen_paused |= model.paused_from is not None
        assert seen_pending and seen_files and seen_result and seen_paused  # the cases were all there

        r = await intake.client.get("/dossiers", params={"limit": 5}, headers=intake.as_("desk_officer"))
        assert r.status_code == 200, r.text
        page = DossierPage.model_validate_json(r.content)
        assert page.model_dump_json().encode() == r.content
        assert page.next is not None and len(page.items) == 5
        # each item of the list is the dossier's own read
        for item in page.items:
            assert item.model_dump_json().encode() == await _get_bytes(intake, item.code)

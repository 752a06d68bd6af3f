"""Intake reads ``document.issued`` as document's own model (``shared.eventdata``): the fields its
contract names, with their types; an event without them is refused (dead-lettered) and changes
nothing, and a field intake does not know (a newer document's) is passed over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.services.intake.harness import document_issued, running_intake

CONTRACT = Path(__file__).resolve().parents[3] / "contracts" / "events" / "document.issued.schema.json"


def _data_schema() -> dict[str, Any]:
    return json.loads(CONTRACT.read_text(encoding="utf-8"))["properties"]["data"]


def test_the_harness_sends_what_document_sends() -> None:
    """The tests' ``document.issued`` is the contract's shape, so they pass only on real payloads."""
    contract = _data_schema()
    sent = document_issued("000.00.41.H56-260310-0001", 7)
    assert set(sent) == set(contract["required"]) <= set(contract["properties"])


async def test_an_event_without_what_the_contract_names_is_refused(tmp_path: Path) -> None:
    async with running_intake(tmp_path) as intake:
        code = (await intake.submit("desk_officer"))["code"]
        await intake.act("desk_officer", code, "start_processing", {"to_whom": "Công chức hộ tịch"})
        good = document_issued(code, 41, "05/QĐ-UBND")
        without_code = {k: v for k, v in good.items() if k != "code"}
        refused = [
            {**without_code, "number": "05/QĐ-UBND"},  # the name intake used to guess at
            {**good, "id": "41"},  # a string is not the contract's integer
            {**good, "issued_at": "2026-03-10T09:00:00"},  # no offset: not an instant
            {k: v for k, v in good.items() if k != "dossier_code"},  # required, even when null
            {**good, "content_sha256": "0" * 65},  # longer than any sha256 (and than intake keeps)
        ]
        sent = [await intake.publish("document.issued", data) for data in refused]
        dead = await intake.broker.dead_letters("intake")
        # each dead-lettered at its first delivery: refused for good, not retried
        assert [(d.message_id, d.deliveries) for d in dead] == [(event.id, 1) for event in sent]
        unchanged = (await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))).json()
        assert unchanged["status"] == 4 and unchanged["pending_results"] == [] and unchanged["result"] is None
        # the same document as its contract has it finishes the dossier, with a field a newer
        # document may add and intake does not know
        await intake.publish("document.issued", {**good, "language": "vi"})
        finished = (await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))).json()
        assert finished["status"] == 9 and finished["result"]["number"] == "05/QĐ-UBND"
        assert len(await intake.broker.dead_letters("intake")) == len(refused)

"""Intake reads ``document.issued`` by the producer's contract: the fields it names, with its
types; an event without them is refused (dead-lettered) and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.intake.results import IssuedDocument
from tests.services.intake.harness import document_issued, running_intake

CONTRACT = Path(__file__).resolve().parents[3] / "contracts" / "events" / "document.issued.schema.json"
_NOT_TYPES = {"title", "description", "maxLength", "default"}


def _data_schema() -> dict[str, Any]:
    return json.loads(CONTRACT.read_text(encoding="utf-8"))["properties"]["data"]


def _types(schema: dict[str, Any]) -> Any:
    """A property's schema without its words and limits: what a value must be."""
    if "anyOf" in schema:
        return [_types(s) for s in schema["anyOf"]]
    return {k: v for k, v in schema.items() if k not in _NOT_TYPES}


def test_intake_reads_only_what_the_contract_requires_with_its_types() -> None:
    contract = _data_schema()
    ours = IssuedDocument.model_json_schema()["properties"]
    assert set(ours) <= set(contract["required"]), "intake reads a field document need not send"
    for name, schema in ours.items():
        assert _types(schema) == _types(contract["properties"][name]), name


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
        ]
        sent = [await intake.publish("document.issued", data) for data in refused]
        dead = await intake.broker.dead_letters("intake")
        # each dead-lettered at its first delivery: refused for good, not retried
        assert [(d.message_id, d.deliveries) for d in dead] == [(event.id, 1) for event in sent]
        unchanged = (await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))).json()
        assert unchanged["status"] == 4 and unchanged["pending_results"] == [] and unchanged["result"] is None
        # the same document as its contract has it finishes the dossier
        await intake.publish("document.issued", good)
        finished = (await intake.client.get(f"/dossiers/{code}", headers=intake.as_("desk_officer"))).json()
        assert finished["status"] == 9 and finished["result"]["number"] == "05/QĐ-UBND"
        assert len(await intake.broker.dead_letters("intake")) == len(refused)

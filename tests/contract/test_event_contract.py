"""Every event the main flow emits keeps the published contract: its type has a schema in
contracts/events/, it validates against it, and every top-level attribute (extensions too) is one
the schema names. And what notify sends of its own (the webhook test delivery) is there as well."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs  # the JSON Schema validator schemathesis brings along

from shared.events import routing_key_of
from tests import suites
from tests.e2e.test_main_flow import FLOW_SETTINGS, main_flow

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def breaches(event: dict[str, Any]) -> list[str]:
    """How ``event`` breaks the contract, if it does."""
    try:
        routing_key = routing_key_of(event["type"])
    except (KeyError, ValueError):
        return [f"not a lienthong type: {event.get('type')!r}"]
    path = CONTRACTS / "events" / f"{routing_key}.schema.json"
    if not path.exists():
        return [f"{event['type']}: no schema in contracts/events"]
    schema = json.loads(path.read_text(encoding="utf-8"))
    found = [f"{event['type']}: {error.message}" for error in jsonschema_rs.validator_for(schema).iter_errors(event)]
    undeclared = set(event) - set(schema["properties"])
    if undeclared:
        found.append(f"{event['type']}: attributes the contract does not name: {sorted(undeclared)}")
    return found


def test_the_check_itself_catches_an_undeclared_extension_and_a_wrong_shape() -> None:
    good = {
        "specversion": "1.0", "id": "1", "source": "urn:lienthong:notify", "type": "vn.lienthong.webhook.test.v1",
        "time": "2026-12-01T00:00:00Z", "datacontenttype": "application/json",
        "data": {"subscription_id": 1, "message": "ok", "actor": {"kind": "user", "sub": "integrator"}},
        "requestid": "abc",
    }
    assert breaches(good) == []
    assert breaches({**good, "tenant": "x"}) == [
        "vn.lienthong.webhook.test.v1: attributes the contract does not name: ['tenant']"
    ]
    assert breaches({**good, "data": {"subscription_id": "one", "message": "ok"}})
    assert breaches({**good, "data": {"subscription_id": 1, "message": "ok", "actor": None}})  # who acted, always
    assert breaches({**good, "type": "vn.lienthong.nothing.here.v1"}) == [
        "vn.lienthong.nothing.here.v1: no schema in contracts/events"
    ]


async def test_every_event_of_the_main_flow_keeps_the_contract(tmp_path: Path) -> None:
    async with suites.embedded(tmp_path, **FLOW_SETTINGS) as running:
        await main_flow(running, tmp_path, amqp_url=None)
    # the audit log holds every event of every part, as it was published
    lines = (tmp_path / "export.jsonl").read_text(encoding="utf-8").splitlines()[1:]
    events = [json.loads(json.loads(line)["leaf"]) for line in lines if line.strip()]
    types = {e["type"] for e in events}
    assert {"vn.lienthong.dossier.received.v1", "vn.lienthong.document.issued.v1"} <= types, types
    assert any("requestid" in e for e in events)  # the extension is really used, and declared
    problems = [p for event in events for p in breaches(event)]
    assert not problems, "\n".join(sorted(set(problems)))

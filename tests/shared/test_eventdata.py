"""Event payloads live once, in ``shared.eventdata``: the committed contracts are those models'
schemas (a model edited without ``make contracts`` fails here), every handler bound to a routing
key reads that key's model, and a consumer reads a newer producer's payload but never a short one."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import create_model

from lienthong import contracts, parts
from shared import eventdata
from shared.bus import topic_matches
from shared.eventdata.document import DocumentIssued, DocumentRecalled, Organ
from shared.eventdata.intake import DossierCode, DossierStep
from shared.events import REGISTRY, WEBHOOK_ONLY, Actor, CloudEvent, event_type
from shared.inbox import Consumer, PoisonEvent
from shared.settings import PARTS

EVENTS = Path(contracts.ROOT) / "events"


def drift() -> list[str]:
    """The event types whose committed schema is not their model's (or that have none)."""
    committed = {p.name.removesuffix(".schema.json") for p in EVENTS.glob("*.schema.json")}
    registered = {*REGISTRY, *WEBHOOK_ONLY}
    differ = [
        key
        for key in sorted(registered & committed)
        if contracts.event_schema(key) != json.loads((EVENTS / f"{key}.schema.json").read_text(encoding="utf-8"))
    ]
    return differ + sorted(registered ^ committed)


def test_every_event_model_is_its_committed_contract() -> None:
    assert drift() == []


def test_a_model_edited_without_regenerating_the_contracts_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    service, model = REGISTRY["document.issued"]
    edited = create_model(model.__name__, __base__=model, __doc__=model.__doc__, language=(str, ...))
    monkeypatch.setitem(REGISTRY, "document.issued", (service, edited))
    assert drift() == ["document.issued"]


def test_the_models_are_defined_once_in_shared() -> None:
    """The parts' ``events.py`` name shared models; none defines a payload of its own."""
    parts.load_all_event_modules()
    elsewhere = {k: m.__module__ for k, (_, m) in {**REGISTRY, **WEBHOOK_ONLY}.items()}
    assert {k: m for k, m in elsewhere.items() if not m.startswith("shared.eventdata.")} == {}


@pytest.fixture(scope="module")
def consumers() -> list[Consumer]:
    return [c for part in PARTS for c in parts.module(part).definition().consumers]


def test_every_binding_names_registered_event_types(consumers: list[Consumer]) -> None:
    assert {c.name for c in consumers} >= {"intake", "document", "document-exchange", "audit", "notify"}
    for consumer in consumers:
        for pattern in consumer.bindings:
            if "*" in pattern or "#" in pattern:
                assert any(topic_matches(pattern, key) for key in REGISTRY), (consumer.name, pattern)
            else:
                assert pattern in REGISTRY, f"{consumer.name} binds {pattern}, which no part registers"


async def test_every_handler_of_a_routing_key_reads_that_keys_model(consumers: list[Consumer]) -> None:
    """A handler given its key's event with empty data refuses it as ``read`` does for that key's
    model: one that guessed at ``data`` with ``.get()``, or read another key's model, would not.
    (Wildcard bindings — audit's log, notify's webhooks — take the envelope whole, reading no field.)"""
    exact = [(c.name, key, h) for c in consumers for key, h in c.handlers.items() if not re.search(r"[*#]", key)]
    assert exact
    for name, key, handler in exact:
        event = CloudEvent(source="urn:lienthong:test", type=event_type(key), subject="t", data={})
        with pytest.raises(PoisonEvent, match=rf"^{re.escape(key)} without what its contract names: .*actor"):
            await handler(None, event)  # type: ignore[arg-type]  # refused before any database work
        assert name


# --- reading -------------------------------------------------------------------------------------


def _recalled(**data: Any) -> CloudEvent:
    payload = DocumentRecalled(
        actor=Actor.system("test"),
        id=7,
        agency="000.00.00.H56",
        code="05/QĐ-UBND",
        recipients=[Organ(organ_id="000.00.17.H56")],
        reason=None,
        recalled_at=datetime(2026, 3, 10, 2, tzinfo=UTC),
    ).model_dump(mode="json")
    return CloudEvent(source="urn:lienthong:document", type=event_type("document.recalled"), data={**payload, **data})


def test_a_newer_producers_fields_are_passed_over_nested_ones_too() -> None:
    event = _recalled(language="vi")
    event.data["actor"]["department"] = "Văn phòng"
    event.data["recipients"][0]["country"] = "VN"
    recalled = eventdata.read(event, DocumentRecalled)
    assert recalled.id == 7 and recalled.actor == Actor.system("test")
    assert recalled.recalled_at == datetime(2026, 3, 10, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": None}, "id"),
        ({"id": "7"}, "id"),  # a string is not the contract's integer
        ({"recalled_at": "2026-03-10T09:00:00"}, "recalled_at"),  # no offset: not an instant
        ({"actor": {"kind": "robot"}}, "actor.kind"),
    ],
)
def test_what_the_contract_requires_and_the_event_lacks_is_poison(change: dict[str, Any], field: str) -> None:
    with pytest.raises(PoisonEvent, match=rf"document.recalled without what its contract names: .*\b{field}\b"):
        eventdata.read(_recalled(**change), DocumentRecalled)


def test_missing_fields_are_named() -> None:
    event = _recalled()
    del event.data["agency"]
    with pytest.raises(PoisonEvent, match=r"names: agency$"):
        eventdata.read(event, DocumentRecalled)


def test_an_unknown_type_is_poison_and_a_handler_reading_another_keys_model_a_bug() -> None:
    unknown = CloudEvent(source="urn:lienthong:test", type=event_type("document.shredded"), data={})
    with pytest.raises(PoisonEvent, match="no such event type"):
        eventdata.read(unknown, DocumentRecalled)
    with pytest.raises(TypeError, match="document.recalled carries DocumentRecalled, not DocumentIssued"):
        eventdata.read(_recalled(), DocumentIssued)
    with pytest.raises(TypeError):
        eventdata.read(_recalled(), DossierStep)


def test_the_dossier_code_is_read_as_intake_writes_it() -> None:
    day = datetime(2021, 5, 31, tzinfo=UTC).date()
    code = DossierCode.prefix("000.17.22.H56", day) + "0001"
    assert code == "000.17.22.H56-210531-0001"
    assert DossierCode.parse(code) == DossierCode("000.17.22.H56", "210531", "0001")
    assert DossierCode.parse("000.17.22.H56-210531-12345").sequence == "12345"  # type: ignore[union-attr]
    assert DossierCode.parse("HS-1") is None

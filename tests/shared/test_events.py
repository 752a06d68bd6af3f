"""The CloudEvents envelope: what we publish is what the CloudEvents SDK and integrators read."""

from __future__ import annotations

import json

import pytest
from cloudevents.http import from_json

from shared.events import CloudEvent, EventData, event_type, format_sequence, register, routing_key_of


def test_type_and_routing_key_round_trip() -> None:
    assert event_type("dossier.received") == "vn.lienthong.dossier.received.v1"
    assert routing_key_of("vn.lienthong.dossier.received.v1") == "dossier.received"
    with pytest.raises(ValueError):
        routing_key_of("com.example.thing.v1")


def test_sequence_is_zero_padded_so_string_order_is_numeric_order() -> None:
    assert format_sequence(9) < format_sequence(10) < format_sequence(100)


def test_envelope_is_parsed_by_the_cloudevents_sdk() -> None:
    event = CloudEvent(
        source="urn:lienthong:intake",
        type=event_type("dossier.received"),
        subject="000.00.00.H56-261128-0001",
        data={"applicant": "Nguyễn Thị Hồng Nhung"},
        sequence=format_sequence(1),
        agency="000.00.00.H56",
    )
    body = event.to_bytes()
    parsed = from_json(body)
    assert parsed["id"] == event.id
    assert parsed["source"] == "urn:lienthong:intake"
    assert parsed["type"] == "vn.lienthong.dossier.received.v1"
    assert parsed["subject"] == "000.00.00.H56-261128-0001"
    assert parsed["sequence"] == "000000000001"
    assert parsed["agency"] == "000.00.00.H56"
    assert parsed.data == {"applicant": "Nguyễn Thị Hồng Nhung"}
    assert "Nguyễn" in body.decode("utf-8")
    assert CloudEvent.from_bytes(body) == event


def test_wrong_specversion_is_refused() -> None:
    body = json.dumps({"specversion": "0.3", "id": "1", "source": "s", "type": "t"}).encode()
    with pytest.raises(ValueError):
        CloudEvent.from_bytes(body)


def test_an_event_of_an_undeclared_family_cannot_be_registered() -> None:
    """Consumers bind by family (notify: one ``<family>.#`` per family it offers); an event type
    outside the declared families would silently never reach them."""
    with pytest.raises(ValueError, match="FAMILIES"):

        @register("payment.received", service="intake")
        class PaymentReceived(EventData):
            amount: int

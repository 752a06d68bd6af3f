"""The CloudEvents 1.0 envelope (structured JSON mode) and the registry of event types.

The same bytes travel on AMQP, through the in-process broker and in webhook bodies. ``source`` +
``id`` is the deduplication key everywhere; ``sequence`` is zero-padded per aggregate
(``subject``) so that string order is delivery order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import clock

TYPE_PREFIX = "vn.lienthong."
TYPE_VERSION = "v1"
EXCHANGE = "lienthong.events"
DEAD_LETTER_EXCHANGE = "lienthong.dlx"
# Events no integrator may read (the gateway's access records: who called what, from where) go to
# an exchange of their own, so a queue bound to ``#`` on ``lienthong.events`` never sees them and
# an integrator's account cannot bind to it at all; audit binds both.
INTERNAL_EXCHANGE = "lienthong.internal"
SEQUENCE_DIGITS = 12
# A message holds one event in structured mode, or several in the JSON batch format (a JSON array
# of structured events, CloudEvents JSON format §4): internal events travel so.
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json; charset=utf-8"


def event_type(routing_key: str) -> str:
    """``dossier.received`` → ``vn.lienthong.dossier.received.v1``."""
    return f"{TYPE_PREFIX}{routing_key}.{TYPE_VERSION}"


def routing_key_of(type_: str) -> str:
    """``vn.lienthong.dossier.received.v1`` → ``dossier.received``."""
    if not type_.startswith(TYPE_PREFIX):
        raise ValueError(f"not a lienthong event type: {type_!r}")
    return type_[len(TYPE_PREFIX) :].rsplit(".", 1)[0]


def format_sequence(n: int) -> str:
    return str(n).zfill(SEQUENCE_DIGITS)


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope with lienthong's extensions."""

    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    time: datetime = Field(default_factory=lambda: clock.now())
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)
    sequence: str | None = Field(default=None, description="per-aggregate order, zero-padded")
    agency: str | None = Field(default=None, description="OrganId the event belongs to")
    traceparent: str | None = Field(default=None, description="W3C trace context of the change")
    requestid: str | None = Field(default=None, description="X-Request-ID of the API request that caused it")

    @property
    def routing_key(self) -> str:
        return routing_key_of(self.type)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> CloudEvent:
        return cls._checked(cls.model_validate_json(body))

    @classmethod
    def from_dict(cls, item: Any) -> CloudEvent:
        """One event of a batch (already parsed JSON)."""
        if not isinstance(item, dict):
            raise ValueError("an event of a batch is a JSON object")
        return cls._checked(cls.model_validate(item))

    @staticmethod
    def _checked(event: CloudEvent) -> CloudEvent:
        if event.specversion != "1.0":
            raise ValueError(f"unsupported specversion {event.specversion!r}")
        return event


def is_batch(content_type: str | None) -> bool:
    return bool(content_type) and content_type.split(";", 1)[0].strip() == "application/cloudevents-batch+json"


def batch_bytes(events: Sequence[bytes]) -> bytes:
    """The JSON batch of events already in structured mode: their bytes, unchanged, in an array."""
    return b"[" + b",".join(events) + b"]"


def events_of(body: bytes, content_type: str | None) -> list[CloudEvent | Exception]:
    """The events a message carries, in order: one, or a batch's. An entry that is no valid event
    is the error saying why, in its place, so the others can still be applied."""
    if not is_batch(content_type):
        try:
            return [CloudEvent.from_bytes(body)]
        except (ValidationError, ValueError) as exc:
            return [exc]
    try:
        items = json.loads(body)
    except ValueError as exc:
        return [exc]
    if not isinstance(items, list) or not items:
        return [ValueError("a CloudEvents batch is a non-empty JSON array")]
    events: list[CloudEvent | Exception] = []
    for item in items:
        try:
            events.append(CloudEvent.from_dict(item))
        except (ValidationError, ValueError) as exc:
            events.append(exc)
    return events


class Actor(BaseModel):
    """Who caused a fact: a person or client (the token's ``sub``, name and roles) or the system
    itself (``kind="system"``, with the reason it acted, e.g. the event it applied)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["user", "client", "system"]
    sub: str | None = Field(default=None, description="the token's subject; absent for the system")
    name: str | None = None
    roles: list[str] = Field(default_factory=list)
    agency: str | None = Field(default=None, description="OrganId the actor acted for")
    reason: str | None = Field(default=None, description="why the system acted (e.g. the event it applied)")

    @classmethod
    def of(cls, caller: Any) -> Actor:
        """The actor behind a verified :class:`shared.auth.Caller`."""
        kind = "client" if "service" in caller.roles else "user"
        roles = sorted(caller.roles)
        return cls(kind=kind, sub=caller.sub, name=caller.name or None, roles=roles, agency=caller.agency)

    @classmethod
    def system(cls, reason: str) -> Actor:
        return cls(kind="system", reason=reason)


class EventData(BaseModel):
    """Base for the ``data`` of one event type; forbids fields the contract does not name.

    ``actor`` says who caused the fact; every domain event names one (a person, a client, or the
    system with its reason)."""

    model_config = ConfigDict(extra="forbid")

    actor: Actor = Field(description="who caused this fact: a person, a client, or the system and why")


# The first word of every routing key. A consumer that wants "everything but X" binds one
# ``<family>.#`` per family it wants (AMQP topic bindings cannot exclude), so a new family is
# declared here before its first event type can be registered.
FAMILIES: tuple[str, ...] = (
    "access",
    "agency",
    "audit",
    "certificate",
    "document",
    "dossier",
    "procedure",
    "signature",
    "workfile",
)

# routing key → (emitting service, data model); filled by each part's events.py at import.
REGISTRY: dict[str, tuple[str, type[EventData]]] = {}
# Types that leave the suite only in webhook bodies, never on the bus (so no family, no binding).
WEBHOOK_ONLY: dict[str, tuple[str, type[EventData]]] = {}


def register(routing_key: str, *, service: str, bus: bool = True):  # type: ignore[no-untyped-def]
    """Class decorator declaring an event type and the schema of its ``data``; ``bus=False``
    for a type only webhooks carry."""

    def wrap(model: type[EventData]) -> type[EventData]:
        if not bus:
            WEBHOOK_ONLY[routing_key] = (service, model)
            model.__routing_key__ = routing_key  # type: ignore[attr-defined]
            return model
        if routing_key.split(".", 1)[0] not in FAMILIES:
            raise ValueError(f"event {routing_key}: declare its family in shared.events.FAMILIES first")
        if routing_key in REGISTRY and REGISTRY[routing_key][1] is not model:
            raise ValueError(f"event {routing_key} registered twice")
        REGISTRY[routing_key] = (service, model)
        model.__routing_key__ = routing_key  # type: ignore[attr-defined]
        return model

    return wrap


def envelope_json_schema() -> dict[str, Any]:
    schema = CloudEvent.model_json_schema()
    schema["required"] = sorted({"specversion", "id", "source", "type", "time", "data"})
    return schema


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)

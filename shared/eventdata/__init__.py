"""The ``data`` of every event type, one module per producing part, so that the producer and each
consumer use the same model (parts never import each other; they all import this).

A producer builds its model and emits it: ``extra="forbid"``, so it can send only what the
contract (``contracts/events/``, generated from these models) names. A consumer reads with
:func:`read`: the model registered for the event's routing key, with the contract's JSON types
(strict: a string is no integer, a time without offset no instant), ignoring fields it does not
know — a newer producer may add fields, and its consumers keep working. What the contract requires
and the event lacks is refused as a :class:`~shared.inbox.PoisonEvent` (dead-lettered, never
retried, never guessed at).

Importing this package registers every event type (``shared.events.REGISTRY``).
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import ValidationError

from shared.eventdata import audit, document, gateway, intake, notify, signing
from shared.events import REGISTRY, CloudEvent, EventData
from shared.inbox import PoisonEvent

__all__ = ["audit", "document", "gateway", "intake", "notify", "read", "signing"]

Data = TypeVar("Data", bound=EventData)


def read(event: CloudEvent, model: type[Data]) -> Data:
    """``event.data`` as the model its producer registered for the event's routing key, which
    must be ``model`` or one of its subclasses (a handler bound to several keys names their
    common base, e.g. ``DossierStep``, and narrows with ``isinstance``)."""
    try:
        routing_key = event.routing_key
    except ValueError as exc:
        raise PoisonEvent(str(exc)) from exc
    if routing_key not in REGISTRY:
        raise PoisonEvent(f"{event.type}: no such event type")
    registered = REGISTRY[routing_key][1]
    if not issubclass(registered, model):
        # the handler is bound to a key it does not read: a wiring mistake, not the event's fault
        raise TypeError(f"{routing_key} carries {registered.__name__}, not {model.__name__}")
    try:
        # through JSON, so that the contract's types are checked as JSON Schema would check them
        data = registered.model_validate_json(json.dumps(event.data), strict=True, extra="ignore")
    except ValidationError as exc:
        wrong = sorted({".".join(map(str, e["loc"])) or "data" for e in exc.errors()})
        raise PoisonEvent(f"{routing_key} without what its contract names: {', '.join(wrong)}") from exc
    assert isinstance(data, model)
    return data

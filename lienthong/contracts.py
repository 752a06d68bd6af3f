"""``contracts/`` written from the code: OpenAPI per part and for the gateway, AsyncAPI 3.0 for
the events, and a JSON Schema per event type. ``--check`` fails when a file differs."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from lienthong import parts
from shared.events import (
    DEAD_LETTER_EXCHANGE,
    EXCHANGE,
    FAMILIES,
    INTERNAL_EXCHANGE,
    REGISTRY,
    WEBHOOK_ONLY,
    envelope_json_schema,
    event_type,
)
from shared.settings import PARTS

ROOT = Path(__file__).resolve().parent.parent / "contracts"
DEFINITIONS = ROOT.parent / "deploy" / "rabbitmq" / "definitions.json"
# Families kept inside the suite: access records (one per API call, who called what from where).
INTERNAL_FAMILIES = ("access",)
OFFERED_FAMILIES = tuple(f for f in FAMILIES if f not in INTERNAL_FAMILIES)
QUEUE_PREFIX = "integrator"


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def openapi_documents() -> dict[str, dict[str, Any]]:
    return {part: parts.create_app(part).openapi() for part in PARTS}


def gateway_document(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    try:
        assemble = importlib.import_module("gateway.openapi").assemble
    except (ModuleNotFoundError, AttributeError):
        return documents["gateway"]
    from gateway.config import SERVICES

    # the console serves pages, not an API under /api: it is no part of the gateway's document
    return assemble({part: doc for part, doc in documents.items() if part == "gateway" or part in SERVICES})


def event_schema(routing_key: str) -> dict[str, Any]:
    service, model = REGISTRY.get(routing_key) or WEBHOOK_ONLY[routing_key]
    schema = envelope_json_schema()
    data_schema = model.model_json_schema()
    schema["title"] = event_type(routing_key)
    schema["description"] = (model.__doc__ or "").strip()
    schema["properties"]["type"] = {"const": event_type(routing_key)}
    schema["properties"]["source"] = {"const": f"urn:lienthong:{service}"}
    schema["properties"]["data"] = {k: v for k, v in data_schema.items() if k != "$defs"}
    if "$defs" in data_schema:
        schema.setdefault("$defs", {}).update(data_schema["$defs"])
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _message(routing_key: str) -> dict[str, Any]:
    _, model = REGISTRY.get(routing_key) or WEBHOOK_ONLY[routing_key]
    return {
        "name": event_type(routing_key),
        "title": routing_key,
        "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else routing_key,
        "contentType": "application/cloudevents+json",
        "payload": {"$ref": f"events/{routing_key}.schema.json"},
    }


def offered(routing_key: str) -> bool:
    return routing_key.split(".", 1)[0] in OFFERED_FAMILIES


def asyncapi() -> dict[str, Any]:
    """The events an integrator may receive: a channel per routing key it may bind (internal
    families are left out), and the webhook-only types as messages."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for routing_key in sorted(k for k in REGISTRY if offered(k)):
        service, _ = REGISTRY[routing_key]
        name = routing_key.replace(".", "_")
        messages[name] = _message(routing_key)
        channels[name] = {
            "address": routing_key,
            "description": f"routing key `{routing_key}` on the topic exchange `{EXCHANGE}`",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": EXCHANGE, "type": "topic", "durable": True, "autoDelete": False},
                    "bindingVersion": "0.3.0",
                }
            },
        }
        operations[f"{service}_publishes_{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": f"{service} publishes {routing_key}",
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": "0.3.0"}},
        }
    for routing_key in sorted(WEBHOOK_ONLY):
        messages[routing_key.replace(".", "_")] = {
            **_message(routing_key),
            "description": "Sent only in webhook bodies, never on AMQP.",
        }
    families = ", ".join(f"`{f}`" for f in OFFERED_FAMILIES)
    webhook_only = ", ".join(f"`{event_type(k)}`" for k in sorted(WEBHOOK_ONLY))
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "lienthong events",
            "version": "1.0.0",
            "description": (
                "Every fact of lienthong offered to integrators, as a CloudEvents 1.0 JSON envelope "
                f"(structured mode), persistent, on the topic exchange `{EXCHANGE}` with routing key "
                "`<entity>.<action>`. Extensions: `sequence` (zero-padded, per `subject`), `agency` "
                "(OrganId), `traceparent` (W3C trace context), `requestid` (the X-Request-ID of the "
                "API request that caused it); each is in every event's schema. `source`+`id` identifies "
                "an event: deduplicate on it, deliveries are at least once.\n\n"
                f"An integrator's AMQP account may declare, bind, read and delete only queues named "
                f"`{QUEUE_PREFIX}.<its name>.<anything>` (for a temporary queue, such a name declared "
                "exclusive; server-named `amq.gen-…` queues are refused), and bind them to "
                f"`{EXCHANGE}` with keys of the families {families} only: an exact routing key (the "
                "channels below), `<family>.*` or `<family>.#`. `#` and internal families "
                f"({', '.join(f'`{f}`' for f in INTERNAL_FAMILIES)}: the gateway's access records, which travel "
                f"on `{INTERNAL_EXCHANGE}` instead) are refused; it never publishes. "
                f"Messages a consumer of lienthong keeps failing go to `{DEAD_LETTER_EXCHANGE}`.\n\n"
                "Webhooks (`POST /api/notify/subscriptions`) carry the same envelopes, and "
                f"{webhook_only} once per new subscription whatever its event types (see its message)."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "rabbitmq": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "the virtual host is the deployment's (`/` in deploy/compose.yaml)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def integrator_definitions(name: str = "example", vhost: str = "/") -> dict[str, Any]:
    """RabbitMQ definitions for one integrator's account in ``vhost``: exactly what the AsyncAPI
    document promises. Imported with ``rabbitmqctl import_definitions`` (or rabbitmqadmin)."""
    user = f"{QUEUE_PREFIX}-{name}"
    own = "^" + QUEUE_PREFIX + r"\." + name + r"\..+$"
    keys = "^(" + "|".join(OFFERED_FAMILIES) + r")\.[a-z_.*#]+$"
    return {
        "rabbit_version": "3.10.0",
        "users": [
            {"name": user, "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [
            {
                "user": user,
                "vhost": vhost,
                "configure": own,
                "write": own,
                "read": "^(" + EXCHANGE.replace(".", r"\.") + "|" + own[1:-1] + ")$",
            }
        ],
        "topic_permissions": [{"user": user, "vhost": vhost, "exchange": EXCHANGE, "write": "^$", "read": keys}],
        "exchanges": [
            {
                "name": EXCHANGE,
                "vhost": vhost,
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
        ],
        "policies": [
            {
                "vhost": vhost,
                "name": "integrator-queues",
                "pattern": r"^integrator\.",
                "apply-to": "queues",
                "priority": 10,
                "definition": {"max-length-bytes": 1073741824, "overflow": "drop-head", "expires": 604800000},
            }
        ],
    }


def render() -> dict[Path, str]:
    parts.load_all_event_modules()
    files: dict[Path, str] = {}
    documents = openapi_documents()
    for part, document in documents.items():
        # the gateway's file is the one assembled API, its own routes included
        files[ROOT / "openapi" / f"{part}.json"] = _json(gateway_document(documents) if part == "gateway" else document)
    for routing_key in sorted({*REGISTRY, *WEBHOOK_ONLY}):
        files[ROOT / "events" / f"{routing_key}.schema.json"] = _json(event_schema(routing_key))
    files[ROOT / "asyncapi.yaml"] = yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=100)
    return files


def main(*, check: bool) -> int:
    files = render()
    existing = {p for p in ROOT.rglob("*") if p.is_file() and p.suffix in (".json", ".yaml")}
    if check:
        drift = sorted(
            str(p.relative_to(ROOT.parent))
            for p, text in files.items()
            if not p.exists() or p.read_text(encoding="utf-8") != text
        )
        stale = sorted(str(p.relative_to(ROOT.parent)) for p in existing - set(files))
        if drift or stale:
            print("contracts/ differs from the code; run `make contracts` and commit:", file=sys.stderr)
            for name in drift:
                print(f"  changed: {name}", file=sys.stderr)
            for name in stale:
                print(f"  no longer produced: {name}", file=sys.stderr)
            return 1
        print(f"contracts/ matches the code ({len(files)} files)")
        return 0
    for path in existing - set(files):
        path.unlink()
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files under contracts/")
    return 0

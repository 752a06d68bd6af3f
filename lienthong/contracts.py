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
from shared.events import DEAD_LETTER_EXCHANGE, EXCHANGE, REGISTRY, envelope_json_schema, event_type
from shared.settings import PARTS

ROOT = Path(__file__).resolve().parent.parent / "contracts"


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
    service, model = REGISTRY[routing_key]
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


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for routing_key in sorted(REGISTRY):
        service, model = REGISTRY[routing_key]
        name = routing_key.replace(".", "_")
        messages[name] = {
            "name": event_type(routing_key),
            "title": routing_key,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else routing_key,
            "contentType": "application/cloudevents+json",
            "payload": {"$ref": f"events/{routing_key}.schema.json"},
        }
        channels[name] = {
            "address": routing_key,
            "description": f"routing key `{routing_key}` on the topic exchange `{EXCHANGE}`",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": EXCHANGE, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"},
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
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "lienthong events",
            "version": "1.0.0",
            "description": (
                "Every fact of lienthong as a CloudEvents 1.0 JSON envelope (structured mode), "
                f"persistent, on the topic exchange `{EXCHANGE}` with routing key `<entity>.<action>`. "
                "Extensions: `sequence` (zero-padded, per `subject`), `agency` (OrganId), `traceparent`. "
                "`source`+`id` identifies an event: deduplicate on it, deliveries are at least once. "
                "An integrator binds its own queue (name prefix `integrator.`) with patterns such as "
                f"`document.*` or `#`; messages that keep failing go to `{DEAD_LETTER_EXCHANGE}`."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "rabbitmq": {"host": "127.0.0.1:5672", "protocol": "amqp", "protocolVersion": "0-9-1"}
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> dict[Path, str]:
    parts.load_all_event_modules()
    files: dict[Path, str] = {}
    documents = openapi_documents()
    for part, document in documents.items():
        # the gateway's file is the one assembled API, its own routes included
        files[ROOT / "openapi" / f"{part}.json"] = _json(
            gateway_document(documents) if part == "gateway" else document
        )
    for routing_key in sorted(REGISTRY):
        files[ROOT / "events" / f"{routing_key}.schema.json"] = _json(event_schema(routing_key))
    files[ROOT / "asyncapi.yaml"] = yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=100)
    return files


def main(*, check: bool) -> int:
    files = render()
    existing = {p for p in ROOT.rglob("*") if p.is_file() and p.suffix in (".json", ".yaml")}
    if check:
        drift = sorted(str(p.relative_to(ROOT.parent)) for p, text in files.items()
                       if not p.exists() or p.read_text(encoding="utf-8") != text)
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

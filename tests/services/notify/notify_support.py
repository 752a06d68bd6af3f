"""Notify on its own for tests: its app with an in-process broker, tokens from a test key, a
webhook receiver that answers as scripted, and events published the way the parts publish them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from services.notify.app import create_app
from services.notify.config import get_settings
from services.notify.models import Subscription
from shared.bus import OutgoingMessage
from shared.bus.memory import InProcessBroker
from shared.events import CloudEvent, event_type
from tests.gateway.gateway_support import serve

AGENCY = "000.00.00.H56"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_JWK = {**jwt.algorithms.RSAAlgorithm.to_jwk(_KEY.public_key(), as_dict=True), "kid": "test", "alg": "RS256"}

# Tiny delays: a day of retries in well under a second.
FAST = {
    "allow_private_targets": True,
    "callback_schemes": ["http", "https"],
    "delivery_timeout_seconds": 0.4,
    "retry_base_seconds": 0.05,
    "retry_factor": 2.0,
    "retry_max_delay_seconds": 0.3,
    "retry_jitter": 0.2,
    "retry_horizon_seconds": 30.0,
    "worker_poll_seconds": 0.05,
}


async def jwks() -> dict[str, Any]:
    return {"keys": [_JWK]}


def token(sub: str, roles: list[str], agency: str | None = AGENCY) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": sub,
        "name": sub,
        "roles": roles,
        "agency": agency,
        "clearance": 0,
        "iss": "urn:lienthong:identity",
        "aud": "lienthong",
        "iat": now,
        "nbf": now,
        "exp": now + 6 * 3600,  # outlives a slow session: collected at start, used much later
    }
    return {"Authorization": "Bearer " + jwt.encode(claims, _KEY, algorithm="RS256", headers={"kid": "test"})}


INTEGRATOR = token("client:cong-dvc", ["integrator"])


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int | None


@dataclass
class Receiver:
    """A webhook endpoint: ``script(webhook_id, nth_attempt, body)`` says how to answer
    (status, headers, seconds to wait before answering)."""

    script: Callable[[str, int, bytes], tuple[int, dict[str, str], float]] = lambda _id, _n, _b: (200, {}, 0.0)
    requests: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    processed: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        webhook_id = headers.get("webhook-id", "")
        self.attempts[webhook_id] += 1
        status, extra, delay = self.script(webhook_id, self.attempts[webhook_id], body)
        record = Received(headers, body, time.monotonic(), None)
        self.requests.append(record)
        if delay:
            await asyncio.sleep(delay)
        if 200 <= status < 300:
            self.processed[webhook_id] += 1  # what a receiver does once per id
        record.answered = status
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in extra.items()],
            }
        )
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"no"})

    def for_id(self, webhook_id: str) -> list[Received]:
        return [r for r in self.requests if r.headers.get("webhook-id") == webhook_id]


@dataclass
class Notify:
    client: httpx.AsyncClient
    broker: InProcessBroker
    app: Any

    async def publish(
        self, routing_key: str, *, agency: str | None = AGENCY, data: dict[str, Any] | None = None
    ) -> CloudEvent:
        event = CloudEvent(
            source="urn:lienthong:document",
            type=event_type(routing_key),
            subject=f"doc-{uuid.uuid4().hex[:6]}",
            data=data or {"so_ky_hieu": "12/QĐ-UBND"},
            agency=agency,
            sequence="000000000001",
        )
        await self.broker.publish(
            [OutgoingMessage(routing_key=routing_key, body=event.to_bytes(), message_id=event.id)]
        )
        return event

    async def subscribe(
        self, callback: str, patterns: list[str], headers: dict[str, str] = INTEGRATOR, **extra: Any
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/subscriptions", json={"callback_url": callback, "event_types": patterns, **extra}, headers=headers
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def delivery(
        self, subscription_id: int, delivery_id: int, headers: dict[str, str] = INTEGRATOR
    ) -> dict[str, Any]:
        response = await self.client.get(f"/subscriptions/{subscription_id}/deliveries/{delivery_id}", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def deliveries(
        self, subscription_id: int, headers: dict[str, str] = INTEGRATOR, **params: Any
    ) -> list[dict[str, Any]]:
        response = await self.client.get(f"/subscriptions/{subscription_id}/deliveries", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["items"]


@contextlib.asynccontextmanager
async def running_notify(tmp_path: Path, **overrides: Any) -> AsyncIterator[Notify]:
    broker = InProcessBroker()
    await broker.connect()
    settings = get_settings(var_dir=tmp_path, log_json=False, **{**FAST, **overrides})
    app = create_app(settings, broker=broker, key_source=jwks)
    try:
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            runtime = app.state.runtime
            await asyncio.wait_for(runtime.consumers_started.wait(), 10)
            yield Notify(client, broker, app)
    finally:
        await broker.close()


def stored_subscription(event_types: list[str], now: datetime, agency: str = AGENCY) -> Subscription:
    """An active subscription row as the API would store it, for tests that fill the table directly."""
    return Subscription(
        owner="client:x",
        callback_url="https://example.vn/hook",
        event_types=event_types,
        agency=agency,
        description="",
        secret="whsec_AAAA",
        active=True,
        version=1,
        created_at=now,
        updated_at=now,
    )


def cloud_event(body: bytes) -> dict[str, Any]:
    return json.loads(body)

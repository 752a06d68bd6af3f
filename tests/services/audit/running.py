"""The audit part alone for HTTP tests: its app on an in-process broker, tokens from a test key.

Independent of the gateway and the other parts, so a test here fails only for audit's reasons.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from services.audit.app import create_app
from services.audit.config import get_settings
from shared.bus import OutgoingMessage
from shared.bus.memory import InProcessBroker
from shared.events import CloudEvent, event_type

ISSUER, AUDIENCE, KID = "urn:lienthong:identity", "lienthong", "audit-test"
HOME_AGENCY = "000.00.00.H56"


@dataclass
class RunningAudit:
    app: FastAPI
    client: httpx.AsyncClient
    broker: InProcessBroker
    var_dir: Path
    key: rsa.RSAPrivateKey

    def token(self, role: str, *, agency: str | None = HOME_AGENCY, sub: str | None = None) -> dict[str, str]:
        now = int(time.time())
        claims = {"sub": sub or f"{role}-1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 6 * 3600,
                  "roles": [role], "name": role}
        if agency:
            claims["agency"] = agency
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})
        return {"Authorization": f"Bearer {token}"}

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        """Publish and return once the audit consumer has handled every one (in-process confirm)."""
        await self.broker.publish(
            [OutgoingMessage(routing_key=e.routing_key, body=e.to_bytes(), message_id=e.id) for e in events]
        )

    async def publish_raw(self, routing_key: str, body: bytes) -> None:
        await self.broker.publish([OutgoingMessage(routing_key=routing_key, body=body, message_id=str(uuid.uuid4()))])


def event(routing_key: str, *, subject: str, agency: str | None = HOME_AGENCY, actor: str | None = None,
          **data: Any) -> CloudEvent:
    if actor is not None:
        data["actor"] = actor
    return CloudEvent(source="urn:lienthong:test", type=event_type(routing_key), subject=subject, agency=agency,
                      data=data)


@asynccontextmanager
async def running_audit(var_dir: Path, **overrides: Any) -> AsyncIterator[RunningAudit]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)

    async def keys() -> dict[str, Any]:
        return {"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}

    settings = get_settings(
        var_dir=var_dir, amqp_url=None, log_json=False, environment="test",
        database_url="sqlite+aiosqlite:///{var_dir}/{service}.sqlite",
        **{"checkpoint_every_seconds": 0.2, "checkpoint_every_entries": 1000, "selfcheck_seconds": 0.3,
           "monitor_seconds": 0.2, **overrides},
    )
    broker = InProcessBroker(delivery_limit=3)
    await broker.connect()
    app = create_app(settings, broker=broker, key_source=keys)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        await runtime.consumers_started.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://audit") as client:
            yield RunningAudit(app=app, client=client, broker=broker, var_dir=var_dir, key=key)
    await broker.close()

"""The document part on its own, in this event loop: its app with its lifespan (migrations,
in-process broker, consumers, relay) behind httpx, and tokens from a key only the tests hold."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from services.document.app import create_app
from services.document.config import AgencyProfile, get_settings
from services.document.models import outbox
from shared.bus.memory import InProcessBroker
from shared.eventdata.intake import DossierReceived
from shared.events import Actor, CloudEvent

PROVINCE = "000.00.00.H56"
DEPARTMENT = "000.00.17.H56"  # Sở Tư pháp, inside the province's subtree
OTHER = "000.00.00.H26"  # another province: outside
DESK = Actor(kind="user", sub="mot-cua", name="Cán bộ một cửa", roles=["desk_officer"], agency=PROVINCE)


def dossier_received(
    code: str, status: int, received_at: datetime = datetime(2026, 12, 3, 2, tzinfo=UTC)
) -> dict[str, Any]:
    """``dossier.received`` as intake sends it: built with intake's own model, never short of a
    field (document reads it as that model and refuses what lacks one)."""
    return DossierReceived(
        actor=DESK,
        code=code,
        agency=PROVINCE,
        procedure_code="1.001193",
        procedure_version=1,
        status=status,
        channel="online" if status == 1 else "desk",
        received_at=received_at,
        due_at=None,
        owner=None,
    ).model_dump(mode="json")


@dataclass
class DocumentApi:
    client: httpx.AsyncClient
    app: Any
    broker: InProcessBroker
    key: Any

    def token(self, role: str, *, agency: str = PROVINCE, clearance: int = 0, sub: str | None = None) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "sub": sub or role,
            "name": f"Người {role}",
            "roles": [role],
            "agency": agency,
            "clearance": clearance,
            "iss": "urn:lienthong:identity",
            "aud": "lienthong",
            "iat": now,
            "exp": now + 6 * 3600,
        }
        return {"Authorization": "Bearer " + jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "test"})}

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    async def events(self, routing_key: str | None = None) -> list[CloudEvent]:
        """What the part emitted (of one type, or all), in order."""
        query = select(outbox.table.c.body).order_by(outbox.table.c.id)
        if routing_key is not None:
            query = query.where(outbox.table.c.routing_key == routing_key)
        async with self.runtime.db.sessionmaker() as session:
            return [CloudEvent.from_bytes(b) for b in (await session.execute(query)).scalars()]

    async def publish(self, routing_key: str, data: dict[str, Any], *, event_id: str | None = None) -> None:
        """Deliver an event as another part would; the same ``event_id`` twice is a redelivery."""
        from shared.bus import OutgoingMessage
        from shared.events import event_type

        event = CloudEvent(
            source="urn:lienthong:test",
            type=event_type(routing_key),
            subject="t",
            data=data,
            **({"id": event_id} if event_id else {}),
        )
        await self.broker.publish(
            [OutgoingMessage(routing_key=routing_key, body=event.to_bytes(), message_id=event.id)]
        )


@asynccontextmanager
async def document_api(tmp_path: Any, **overrides: Any) -> AsyncIterator[DocumentApi]:
    """The document app with its lifespan; ``overrides`` are settings (e.g. ``demo=True``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="test", alg="ES256")

    async def keys() -> dict[str, Any]:
        return {"keys": [jwk]}

    settings = get_settings(
        **{
            "var_dir": tmp_path,
            "amqp_url": None,
            "database_url": "sqlite+aiosqlite:///{var_dir}/{service}.sqlite",
            "relay_poll_seconds": 0.05,
            "agencies": {
                PROVINCE: AgencyProfile(abbreviation="UBND", name="Ủy ban nhân dân tỉnh Thanh Hóa"),
                DEPARTMENT: AgencyProfile(abbreviation="STP", name="Sở Tư pháp tỉnh Thanh Hóa"),
            },
            "max_file_bytes": 2 * 1024 * 1024,
            **overrides,
        }
    )
    broker = InProcessBroker()
    await broker.connect()

    async def sink(deliveries: list[Any]) -> None:
        for delivery in deliveries:
            await delivery.ack()

    # Other parts (audit, notify) take every event in the suite; here a sink stands for them.
    await broker.consume("test-sink", ["#"], sink, batch=100, prefetch=100)
    app = create_app(settings, broker=broker, key_source=keys)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.consumers_started.wait(), 10)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://document-{uuid.uuid4().hex[:4]}") as client:
            yield DocumentApi(client=client, app=app, broker=broker, key=key)
    await broker.close()


@pytest.fixture
async def api(tmp_path: Any) -> AsyncIterator[DocumentApi]:
    async with document_api(tmp_path) as running:
        yield running


@pytest.fixture(scope="session")
def pdfs() -> dict[str, bytes]:
    from tests.services.document.pdfs import draft_pdf, sign

    draft = draft_pdf()
    leader = sign(draft, field="ChuKyLanhDao")
    sealed = sign(leader, field="ChuKyCoQuan", name="UBND tỉnh Thanh Hóa")
    other = sign(draft, field="Khac", name="Người khác")
    return {"draft": draft, "leader": leader, "sealed": sealed, "other": other}


async def signed_draft(
    api: DocumentApi, pdfs: dict[str, bytes], *, agency: str = PROVINCE, type_key: str = "QĐ", **fields: Any
) -> dict[str, Any]:
    """A draft of ``agency`` carrying the leader's signature (status signed_by_leader)."""
    specialist = api.token("specialist", agency=agency, clearance=3)
    r = await api.client.post(
        "/documents",
        headers=specialist,
        json={"agency": agency, "type_key": type_key, "subject": "Quyết định về việc thử nghiệm", **fields},
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    r = await api.client.post(
        f"/documents/{doc['id']}/content",
        content=pdfs["leader"],
        params={"stage": "signed_by_leader"},
        headers={
            **api.token("leader", agency=agency, clearance=3),
            "Content-Type": "application/pdf",
            "If-Match": r.headers["ETag"],
        },
    )
    assert r.status_code == 201, r.text
    return (await api.client.get(f"/documents/{doc['id']}", headers=specialist)).json()
